"""Where does the forward model beat the per-element mean, and where not? Its t = 0 error on test atoms, by slice.

    python -m benchmarks.forward_model.slices --checkpoint build/models_v3_93/forward.pt --data build/preview_v3_93/data.nc

Each test atom's DOS predicted from the clean crystal (t = 0) and by the per-element mean of the training split,
MAE in states/eV/atom averaged over the atom's energies; then both, and how far the model lies below the baseline,
for atoms grouped by how many atoms of their element the training split holds, by whether their crystal is a metal,
by cell size, and by whether the crystal's chemical system (its set of elements) also occurs in training. Also how
many prototype families the splits hold and how many crystals per family: what more data of the same build adds.
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np


def main(argv: list[str] | None = None) -> None:
    import torch
    from torch_geometric.loader import DataLoader

    import crystaldos
    from crystaldos.checkpoint import build_network, load_checkpoint
    from crystaldos.model import one_hot_types
    from crystaldos.train.report import element_mean_dos, per_element_baseline

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a forward model's model.pt")
    parser.add_argument("--data", default=None, help="data file (default: the embedded set)")
    parser.add_argument("--split", default="test")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    dataset = crystaldos.load_dataset(args.data)
    train, test = dataset.split("train"), dataset.split(args.split)
    model = build_network(load_checkpoint(args.checkpoint, kind="forward")).eval()
    errors = []
    with torch.no_grad():
        for batch in DataLoader(test.to_graphs(), batch_size=64):
            t = torch.zeros(batch.num_graphs, dtype=torch.long)
            predicted = model(one_hot_types(batch.atom_types), batch.frac_coords, batch.lattice, t, batch.edge_index, batch.batch)
            errors.append((predicted - batch.dos).abs().mean(1).numpy())
    model_mae = np.concatenate(errors)
    table = element_mean_dos(train)
    baseline_mae = np.concatenate([np.abs(np.asarray(item.dos.values) - per_element_baseline(item.structure, table)).mean(1)
                                   for item in test])

    def per_atom(value) -> np.ndarray:  # a per-crystal value, repeated for each of its atoms
        return np.concatenate([[value(item)] * len(item.structure) for item in test])

    in_train = Counter(z for item in train for z in item.structure.atomic_numbers)
    element_count = np.array([in_train.get(int(z), 0) for item in test for z in item.structure.atomic_numbers])
    systems = {frozenset(item.structure.composition.as_dict()) for item in train}
    gap = per_atom(lambda item: item.properties.get("band_gap_eV", 0.0))
    sites = per_atom(lambda item: len(item.structure))
    shared_system = per_atom(lambda item: frozenset(item.structure.composition.as_dict()) in systems).astype(bool)
    slices = {"all": np.ones(len(model_mae), bool)}
    for low, high in [(1, 30), (30, 100), (100, 300), (300, None)]:
        slices[f"element: {low}{'+' if high is None else f'-{high - 1}'} atoms in train"] = (
            (element_count >= low) & (element_count < (high or np.inf)))
    slices.update({"metal (gap 0)": gap <= 0, "gap > 0": gap > 0, "1-4 sites": sites <= 4,
                   "5-10 sites": (sites > 4) & (sites <= 10), "11-20 sites": sites > 10,
                   "chemical system also in train": shared_system, "chemical system not in train": ~shared_system})
    print(f"{args.checkpoint} on the {len(test)} {args.split} crystals of {args.data or 'the embedded set'} (t = 0)\n")
    print("| slice | atoms | forward model MAE | per-element mean MAE | below the baseline |\n|:--|--:|--:|--:|--:|")
    for name, mask in slices.items():
        if mask.any():
            below = 1 - model_mae[mask].mean() / baseline_mae[mask].mean()
            print(f"| {name} | {mask.sum()} | {model_mae[mask].mean():.3f} | {baseline_mae[mask].mean():.3f} | {100 * below:+.1f} % |")
    print()
    for name, split in (("train", train), (args.split, test)):
        families = Counter(item.properties.get("prototype") for item in split)
        print(f"{name}: {len(split)} crystals in {len(families)} prototype families, median {int(np.median(list(families.values())))} per family")


if __name__ == "__main__":
    main()
