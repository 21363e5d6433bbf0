"""Would lattice noise scaled by the cell's size help small cells? A network-free estimate.

    python -m benchmarks.lattice.noise_scale [--t 100 200 500] [--n-ref 8] [--draws 400]

DiffCSP (and crystaldos today) noises the lattice matrix in Å with the same absolute noise for every cell, so at a
given step t a 1-atom primitive cell (vectors ~2.7 Å) is relatively three times as noisy as a 20-atom cell (~9 Å).
MatterGen instead scales the lattice noise with the cell's size, std ~ N^(1/3). This script noises each crystal's
lattice at step t both ways, absolute (std sqrt(1 - abar)) and size-scaled (std (N / n_ref)^(1/3) sqrt(1 - abar),
the same as absolute for an n_ref-atom cell), and prints the median |volume-per-atom error| and the share within 5 %
of the "no denoising" estimate L_t / sqrt(abar_t): the error a denoiser without lattice skill leaves. Rows: the six
textbook crystals of the lattice test (lattice_panel) and the test split of the embedded data set. Seeded.
"""

from __future__ import annotations

import argparse

import numpy as np

import crystaldos
from crystaldos.diffusion import JointDiffusion
from crystaldos.labellers.panel import lattice_panel
from benchmarks.tables import show_row, show_table


def no_denoising_volume_errors(lattice: np.ndarray, abar: float, scale: float, draws: int, rng: np.random.Generator) -> np.ndarray:
    """(draws,) |volume error| (%) of L_t / sqrt(abar) for L_t = sqrt(abar) L + scale sqrt(1 - abar) eps."""
    noisy = np.sqrt(abar) * lattice + scale * np.sqrt(1 - abar) * rng.standard_normal((draws, 3, 3))
    return 100 * np.abs(np.abs(np.linalg.det(noisy / np.sqrt(abar))) / abs(np.linalg.det(lattice)) - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--t", type=int, nargs="+", default=[100, 200, 500])
    parser.add_argument("--n-ref", type=float, default=8.0, help="atoms of the cell whose noise stays as today")
    parser.add_argument("--draws", type=int, default=400, help="noise draws per crystal")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    alpha_bars = JointDiffusion().alpha_bars.double().numpy()
    groups = {name: [s] for name, s in lattice_panel().items()}
    groups["test split"] = [item.structure for item in crystaldos.load_dataset().split("test")]
    rows = []
    for t in args.t:
        for name, structures in groups.items():
            row = {"t": t, "crystals": name, "atoms": int(np.median([len(s) for s in structures]))}
            for label, size_scaled in (("absolute", False), ("size-scaled", True)):
                errors = np.concatenate([
                    no_denoising_volume_errors(s.lattice.matrix, alpha_bars[t], (len(s) / args.n_ref) ** (1 / 3) if size_scaled else 1.0,
                                               args.draws, rng)
                    for s in structures
                ])
                row[f"median |dV| {label} (%)"] = float(np.median(errors))
                row[f"within 5 % {label} (%)"] = 100 * float(np.mean(errors <= 5))
            rows.append(row)
            show_row(rows)
    show_table(rows, f"'No denoising' volume error, absolute vs size-scaled lattice noise (n_ref = {args.n_ref:g}), "
                     f"{args.draws} draws per crystal, seed {args.seed}", floatfmt=".1f")


if __name__ == "__main__":
    main()
