"""CBG and CBG-DPS with the half-clean forward model against the full table's rows, crystal by crystal, t_start = 200.

    python -m benchmarks.guidance.forward_half_paired

Reads build/eval_cbg_half/results.nc and build/eval_dps_half/results.nc, made with
``crystaldos evaluate --models DIR --guidance cbg (or cbg-dps) --t-start 200 --xtb-limit 0 --out build/eval_cbg_half
(or build/eval_dps_half)``, DIR holding the shipped cfg.pt, uncond.pt and forward.pt (the
half-clean run, released in session 25), and compares them with a full table (the same 1,645 test
crystals and seed) by McNemar's exact test (:mod:`crystaldos.paired`). The logs in docs/research/forward_half_test/ compare
with the table of the previous forward model: ``--reference build/full_before.nc`` after
``git show 9a86f7d:docs/evaluation_full/results.nc > build/full_before.nc``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import xarray as xr

from crystaldos.paired import mcnemar_exact

RUNS = {"cbg": Path("build/eval_cbg_half/results.nc"), "cbg-dps": Path("build/eval_dps_half/results.nc")}
T_START = 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default="docs/research/evaluation_full/results.nc", help="the full table to compare with")
    full = xr.open_dataset(parser.parse_args().reference)
    for guidance, path in RUNS.items():
        if not path.exists():
            print(f"{path}: not there (run the evaluate command of the docstring)")
            continue
        new = xr.open_dataset(path)
        if list(new.structure.values) != list(full.structure.values):
            raise SystemExit(f"{path} holds other crystals than the full table")
        matched = new.matched.sel(guidance=guidance, t_start=T_START).values > 0.5
        print(f"{guidance} with the half forward model: match {100 * matched.mean():.1f} %, composition "
              f"{100 * float(new.composition_match.sel(guidance=guidance).mean()):.1f} %, site types "
              f"{100 * float(new.site_type_accuracy.sel(guidance=guidance).mean()):.1f} %")
        for reference in ("none", "cbg", "cfg"):
            other = full.matched.sel(guidance=reference, t_start=T_START).values > 0.5
            r = mcnemar_exact(matched, other)
            print(f"  against {reference} of the full table ({100 * other.mean():.1f} %): both {r['both']}, only the new "
                  f"run {r['only_first']}, only {reference} {r['only_second']}, p = {r['p']:.2g}")


if __name__ == "__main__":
    main()
