"""How much of the lattice could a bond-length table recover? A network-free estimate against "no denoising".

    python -m benchmarks.lattice.bond_prior [--seeds 2] [--steps 100 200 500]

The training split gives a table of nearest-neighbour distances per element pair (median over all atoms whose
nearest neighbour has that element; pairs not seen fall back to the sum of covalent radii times the median
ratio of table to radii). For every test crystal noised to step t (cosine DDPM on L in Å; X is nearly clean
up to t ~ 300), the "no denoising" lattice L_t / sqrt(abar_t) is scaled isotropically so that the median ratio
of each atom's nearest-neighbour distance to the table entry for its pair becomes 1. Printed per t: median
|volume-per-atom error| and share within 5 % of "no denoising", of the bond-table scale, and (for reference)
of the clean lattice scaled the same way (what the table can do at best, with the true shape). If the
bond-table estimate is far better than no denoising, the lattice needs the bond lengths, which a network can
learn from enough crystals or be given as a prior.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from pymatgen.core import Element, Lattice, Structure

import crystaldos
from crystaldos.diffusion import DiffusionConfig, JointDiffusion
from benchmarks.tables import show_row, show_table


def nearest_neighbours(structure: Structure, cutoff: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """(n,) nearest-neighbour distance (Å) of every site and (n,) the index of that neighbour (periodic images)."""
    centres, points, _, distances = structure.get_neighbor_list(cutoff)
    distance = np.full(len(structure), np.inf)
    partner = np.full(len(structure), -1)
    for i, j, d in zip(centres, points, distances):
        if 1e-6 < d < distance[i]:
            distance[i], partner[i] = d, j
    return distance, partner


def pair_key(a: str, b: str) -> tuple[str, str]:
    return tuple(sorted((a, b)))


def bond_table(train) -> tuple[dict, float]:
    """Median nearest-neighbour distance per element pair over ``train`` and the median ratio to covalent radii."""
    found: dict[tuple[str, str], list[float]] = {}
    ratios = []
    for item in train:
        distance, partner = nearest_neighbours(item.structure)
        symbols = [s.specie.symbol for s in item.structure]
        for i, (d, j) in enumerate(zip(distance, partner)):
            if j < 0:
                continue
            found.setdefault(pair_key(symbols[i], symbols[j]), []).append(d)
            ratios.append(d / covalent_sum(symbols[i], symbols[j]))
    return {k: float(np.median(v)) for k, v in found.items()}, float(np.median(ratios))


def covalent_sum(a: str, b: str) -> float:
    from pymatgen.analysis.molecule_structure_comparator import CovalentRadius

    radius = CovalentRadius.radius
    return radius.get(a, Element(a).atomic_radius or 1.5) + radius.get(b, Element(b).atomic_radius or 1.5)


def bond_scale(structure: Structure, table: dict, ratio: float) -> float:
    """Isotropic factor that brings the median (nearest-neighbour distance / table distance) to 1."""
    distance, partner = nearest_neighbours(structure, cutoff=8.0)
    symbols = [s.specie.symbol for s in structure]
    wanted = [table.get(pair_key(symbols[i], symbols[j]), ratio * covalent_sum(symbols[i], symbols[j]))
              for i, j in enumerate(partner) if j >= 0]
    found = [d for d, j in zip(distance, partner) if j >= 0]
    return float(np.median(np.array(wanted) / np.array(found)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 200, 500])
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    ds = crystaldos.load_dataset()
    table, ratio = bond_table(ds.split("train"))
    test = list(ds.split("test"))[: args.limit]
    diffusion = JointDiffusion(DiffusionConfig())
    print(f"{len(table)} element pairs in the table; median NN distance / covalent radii sum {ratio:.3f}")
    rows = []
    best = []
    for item in test:  # the table's own limit: the clean crystal, rescaled from the table alone
        best.append(100 * (bond_scale(item.structure, table, ratio) ** 3 - 1))
    for t_value in args.steps:
        abar = float(diffusion.alpha_bars[t_value])
        sigma = float(diffusion.sigmas[t_value])
        plain, scaled = [], []
        for seed in range(args.seeds):
            generator = torch.Generator().manual_seed(seed)
            for item in test:
                lattice = torch.tensor(item.structure.lattice.matrix, dtype=torch.float32)
                noisy = np.sqrt(abar) * lattice + np.sqrt(1 - abar) * torch.randn(3, 3, generator=generator)
                frac = np.mod(item.structure.frac_coords + sigma * torch.randn(len(item.structure), 3, generator=generator).numpy(), 1.0)
                estimate = Lattice((noisy / np.sqrt(abar)).numpy())
                true_volume = item.structure.volume
                plain.append(100 * (abs(estimate.volume) / true_volume - 1))
                guess = Structure(estimate, item.structure.species, frac)
                scaled.append(100 * (abs(estimate.volume) * bond_scale(guess, table, ratio) ** 3 / true_volume - 1))
        row = {"t": t_value}
        for name, values in (("no denoising", plain), ("bond table", scaled), ("bond table on the clean cell", best)):
            e = np.abs(values)
            row[f"{name}: median |dV| %"] = float(np.median(e))
            row[f"{name}: within 5 % (%)"] = float(100 * np.mean(e <= 5))
        rows.append(row)
        show_row(rows)
    show_table(rows, f"{len(test)} test crystals x {args.seeds} noise draws; isotropic rescale to the training split's bond table")


if __name__ == "__main__":
    main()
