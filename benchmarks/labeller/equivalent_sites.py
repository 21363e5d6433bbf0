"""How far stored labels are from the crystal's symmetry: the DOS spread across symmetry-equivalent sites.

    python -m benchmarks.labeller.equivalent_sites data/default-v2/labels

Reads labelled chunks as the labeller stored them (a folder of ``chunk_*.nc``) or a data file, and for every
crystal with equivalent sites measures the largest MAE (states/eV/atom) between a site's DOS and its orbit's
mean (:func:`crystaldos.labellers.symmetry.equivalent_site_spread`) and the largest difference in occupied
electrons (the DOS integrated up to E_F) within an orbit. By symmetry both are zero for a converged label;
the label noise is 0.03 states/eV/atom (docs/research/labeller.md). Prints the distribution, metals against
insulators, and the worst crystals. An assembled format-2 file is already symmetrised (all spreads 0).

``--relabel ID ...`` relabels those crystals with GFN1-xTB (no multipole terms), GFN2-xTB as stored and GFN2-xTB
with the multipole blocks (``XTBLabeller(multipole_blocks=True)``), none symmetrised, and prints each one's spread:
which of the labeller's approximations broke the symmetry.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from benchmarks.tables import show_row, show_table

from crystaldos.data.store import open_netcdf, xarray_to_records
from crystaldos.dos import DosGrid
from crystaldos.labellers import XTBLabeller
from crystaldos.labellers.symmetry import MAX_EQUIVALENT_SPREAD, equivalent_site_spread, equivalent_sites, symmetrise_site_dos

THRESHOLDS = (0.01, MAX_EQUIVALENT_SPREAD, 0.1)


def population_spread(values: np.ndarray, energies: np.ndarray, orbits: np.ndarray) -> float:
    """Largest difference (electrons) of the occupied population (DOS integrated up to E_F = 0) within an orbit."""
    occupied = values[:, energies <= 0].sum(axis=1) * (energies[1] - energies[0])
    return max((float(np.ptp(occupied[orbits == o])) for o in np.unique(orbits)), default=0.0)


def measure(records) -> list[dict]:
    rows = []
    for record in records:
        orbits = equivalent_sites(record.structure)
        if len(np.unique(orbits)) == len(orbits):
            continue
        values = np.asarray(record.dos.values, dtype=np.float64)
        rows.append({"id": record.id, "formula": record.formula, "sites": len(record.structure),
                     "metal": float(record.properties.get("band_gap_eV", np.nan)) == 0.0,
                     "spread": equivalent_site_spread(values, orbits),
                     "population spread (e)": population_spread(values, np.asarray(record.dos["energy"]), orbits)})
    return rows


def relabel(records, grid: DosGrid) -> None:
    """Each crystal's spread as stored and under three labellers (before their orbit average), with GFN2's multipole
    residual and how far GFN2's relabel is from the stored label (both averaged over orbits)."""
    variants = {"GFN1-xTB": dict(method="GFN1-xTB"), "GFN2-xTB": dict(method="GFN2-xTB"),
                "GFN2-xTB, multipole blocks": dict(method="GFN2-xTB", multipole_blocks=True)}
    rows = []
    for record in records:
        orbits = equivalent_sites(record.structure)
        row = {"id": record.id, "formula": record.formula, "stored": equivalent_site_spread(record.dos.values, orbits)}
        for name, settings in variants.items():
            dos = XTBLabeller(grid=grid, max_equivalent_spread=None, **settings).label(record.structure)
            row[name] = float(dos.attrs["equivalent_site_spread"])
            if name == "GFN2-xTB":
                row["GFN2 multipole residual (eV)"] = float(dos.attrs["multipole_residual_eV"])
                # label() returns the orbit average: compare it with the stored label's.
                stored = symmetrise_site_dos(record.dos, record.structure)[0]
                row["GFN2 relabel vs stored, both averaged (MAE)"] = float(np.abs(dos.values - stored.values).mean())
        rows.append(row)
        show_row(rows, "%.3f")
    show_table(rows, "Spread of equivalent sites' DOS (states/eV/atom) as stored and relabelled:", floatfmt=".3f")


def distribution(rows: list[dict], label: str) -> dict:
    spread = np.array([r["spread"] for r in rows])
    out = {"crystals": label, "n": len(rows)}
    for q in (50, 90, 99):
        out[f"spread p{q}"] = float(np.percentile(spread, q))
    for threshold in THRESHOLDS:
        out[f"> {threshold:g} (%)"] = 100 * float(np.mean(spread > threshold))
    out["population spread > 0.1 e (%)"] = 100 * float(np.mean([r["population spread (e)"] > 0.1 for r in rows]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a folder of labelled chunks (chunk_*.nc) or a data file")
    parser.add_argument("--worst", type=int, default=12, help="list this many crystals with the largest spread")
    parser.add_argument("--relabel", nargs="+", default=None, metavar="ID", help="relabel these crystals three ways")
    args = parser.parse_args()
    files = sorted(args.source.glob("chunk_*.nc")) if args.source.is_dir() else [args.source]
    records = (r for f in files for r in xarray_to_records(open_netcdf(f)))
    if args.relabel:
        relabel([r for r in records if r.id in set(args.relabel)], DosGrid.from_attrs(open_netcdf(files[0]).attrs))
        return
    rows = measure(records)
    if not rows:
        raise SystemExit(f"no crystal with symmetry-equivalent sites in {args.source}")
    metals = [r for r in rows if r["metal"]]
    insulators = [r for r in rows if not r["metal"]]
    table = [distribution(rows, "all"), distribution(metals, "metals (gap 0)"), distribution(insulators, "gap > 0")]
    show_table(table, f"Spread (states/eV/atom) of the DOS across symmetry-equivalent sites, {len(files)} file(s), "
                      f"crystals with equivalent sites only:", floatfmt=".3f")
    worst = sorted(rows, key=lambda r: -r["spread"])[: args.worst]
    show_table(worst, "Largest spreads:", floatfmt=".3f")


if __name__ == "__main__":
    main()
