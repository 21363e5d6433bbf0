"""Ancestral (DDPM) or deterministic (DDIM) reverse steps for the lattice: volume errors and match rates.

    python -m benchmarks.lattice.sampler --limit 64 --samples 2 --t-start 200 1000

CFG (omega = 1) reconstructions of the first ``limit`` test crystals with the shipped models (or ``--models``),
``samples`` per crystal, the same seed for both lattice steps (atom types and coordinates use the same steps
in both). Prints, per t_start and lattice step: median |volume-per-atom error| (%), the share of samples within
5 % of the true volume, and the StructureMatcher match rate (%).
"""

from __future__ import annotations

import argparse

import numpy as np
from benchmarks.tables import show_row, show_table

import crystaldos
from crystaldos import Sampler
from crystaldos.metrics import lattice_errors, match


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--t-start", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", default=None)
    args = parser.parse_args()
    sampler = Sampler.from_pretrained(args.models, device="cpu")
    items = list(crystaldos.load_dataset().split("test")[: args.limit])
    rows = []
    for t_start in args.t_start:
        for step in ("ddpm", "ddim"):
            results = sampler.reconstruct([i.structure for i in items], [i.dos for i in items], guidance="cfg", strength=1.0,
                                          t_start=t_start, n_samples=args.samples, seed=args.seed, progress=False,
                                          lattice_step=step)
            references = [i.structure for i in items for _ in range(args.samples)]
            dv = np.array([lattice_errors(r.structure, ref)["volume_error_pct"] for r, ref in zip(results, references)])
            matched = [match(r.structure, ref)[0] for r, ref in zip(results, references)]
            rows.append({"t_start": t_start, "lattice step": step, "median |dV| (%)": float(np.nanmedian(np.abs(dv))),
                         "within 5 % (%)": float(100 * np.mean(np.abs(dv) <= 5)), "match (%)": float(100 * np.mean(matched))})
            show_row(rows, "%.1f")
    show_table(rows, f"{len(items)} test crystals x {args.samples} samples, CFG omega = 1, seed {args.seed}", ".1f")


if __name__ == "__main__":
    main()
