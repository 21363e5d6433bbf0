"""Where to cut by energy above the hull? How far from the set's own hull the known crystals (the prototypes: real,
reported structures) and the substitutions lie, and which crystals lie furthest.

    python -m crystaldos.data.build --work-dir data/default-v3 --stage assemble --chunks 0:21 --out build/preview_v3_22.nc
    python -m benchmarks.relax.hull_cut build/preview_v3_22.nc

The hull is the assembled file's (``e_above_hull_eV``: CHGNet energies of the set and of simple elemental crystals,
before any cut). Prints quantiles per source, the share within candidate cuts, and the furthest crystals with their
volume per atom and volume change on relaxing.
"""

from __future__ import annotations

import argparse

import numpy as np

CUTS = (0.05, 0.1, 0.2, 0.3, 0.5)


def main(argv: list[str] | None = None) -> None:
    import pandas as pd

    from crystaldos.data.store import open_netcdf, xarray_to_records

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="an assembled data file of the equilibrium build")
    parser.add_argument("--show", type=int, default=15, help="furthest crystals to list")
    args = parser.parse_args(argv)
    records = xarray_to_records(open_netcdf(args.data))
    table = pd.DataFrame([{
        "id": r.id, "formula": r.structure.composition.reduced_formula, "source": r.source, "sites": len(r.structure),
        "e_above_hull": r.properties["e_above_hull_eV"], "volume_per_atom": r.structure.volume / len(r.structure),
        "relax_volume_change_pct": 100 * r.properties["relax_volume_change"]} for r in records])
    rows = []
    for source, group in [("all", table), *table.groupby("source")]:
        hull = group["e_above_hull"].to_numpy()
        rows.append({"crystals": source, "n": len(hull), "on the hull %": 100 * np.mean(hull <= 1e-6),
                     **{f"q{q}": np.quantile(hull, q / 100) for q in (50, 90, 95, 99)},
                     **{f"<= {c} %": 100 * np.mean(hull <= c) for c in CUTS}})
    print(f"{args.data}: energy above the set's own hull (eV/atom)\n")
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f"))
    print(f"\nthe {args.show} furthest crystals:\n")
    print(table.sort_values("e_above_hull", ascending=False).head(args.show).to_markdown(index=False, floatfmt=".2f"))


if __name__ == "__main__":
    main()
