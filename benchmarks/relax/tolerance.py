"""Which force tolerance and step cap for the data build's relaxations? Relax a seeded sample of the build's
candidates at fmax 0.02 eV/Å (the reference) and at looser tolerances; compare volume and energy with the reference
and count the steps each needs.

    python -m benchmarks.relax.tolerance --n 24 --seed 0
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=Path("data/default-v3"))
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fmax", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    import torch

    from crystaldos.data.build import load_candidates
    from crystaldos.relax import Relaxer

    torch.set_num_threads(1)
    candidates = load_candidates(args.work_dir)
    picks = np.random.default_rng(args.seed).choice(len(candidates), args.n, replace=False)
    rows = []
    for i in picks:
        structure = candidates[i].structure
        start = time.perf_counter()
        reference = Relaxer(fmax=0.02, max_steps=1000, max_volume_change=None, match_start=False).relax(structure)
        row = {"id": candidates[i].id, "ref_converged": reference.converged, "ref_steps": reference.steps,
               "ref_s": time.perf_counter() - start}
        for fmax in args.fmax:
            start = time.perf_counter()
            r = Relaxer(fmax=fmax, max_steps=1000, max_volume_change=None, match_start=False).relax(structure)
            row |= {f"steps_{fmax}": r.steps, f"s_{fmax}": time.perf_counter() - start,
                    f"dV_{fmax}": 100 * abs(r.structure.volume / reference.structure.volume - 1),
                    f"dE_{fmax}": 1000 * abs(r.energy_per_atom - reference.energy_per_atom),
                    f"stress_{fmax}": r.max_stress}
        rows.append(row)
        print(row, flush=True)
    ok = [r for r in rows if r["ref_converged"]]
    print(f"\n{len(ok)} of {len(rows)} candidates converged at 0.02 eV/Å within 1000 steps (median {np.median([r['ref_steps'] for r in ok]):.0f} steps)\n")
    print("| fmax (eV/Å) | median abs dV vs 0.02 (%) | max abs dV (%) | median abs dE (meV/atom) | median steps | 95th pct steps | "
          "median largest stress (GPa) | s per crystal |\n|--:|--:|--:|--:|--:|--:|--:|--:|")
    for fmax in args.fmax:
        get = lambda key: np.array([r[f"{key}_{fmax}"] for r in ok])  # noqa: E731
        print(f"| {fmax} | {np.median(get('dV')):.2f} | {get('dV').max():.2f} | {np.median(get('dE')):.1f} | "
              f"{np.median(get('steps')):.0f} | {np.percentile(get('steps'), 95):.0f} | {np.median(get('stress')):.2f} | "
              f"{get('s').mean():.1f} |")


if __name__ == "__main__":
    main()
