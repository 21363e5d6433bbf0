"""How well does one atom's DOS identify its element? An MLP per energy window, same input size.

    python -m benchmarks.forward_model.element_identification                                  # the embedded data set
    python -m benchmarks.forward_model.element_identification --data data/default-v2/labels   # labelled build chunks

Trains an MLP (2 x 512, seeded) on the per-atom DOS of the train split (or of a seeded 60 % of the
crystals when the data carries no split), scores the element of every atom of the rest, for every
window that fits the data's grid: the usual -10 ... +10 eV, and -25 ... +10 eV, which keeps the
semicore and deep valence levels (e.g. Ga 3d, In 4d, O 2s). Each window is resampled to the same 256
points so that the comparison is at equal cost. Prints overall accuracy and accuracy for elements
with >= 100 training atoms and for rarer ones (how many rarer elements, and their test atoms).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

WINDOWS = {"-10 ... +10 eV": (-10.0, 10.0), "-25 ... +10 eV": (-25.0, 10.0)}


def atoms_of(path: Path | None):
    """(dos (n_atoms, n_energy), energies, element symbols, crystal index, split) from a file or chunk folder."""
    import crystaldos
    from crystaldos.data.store import open_netcdf, xarray_to_records

    if path is not None and path.is_dir():
        records = [r for f in sorted(path.glob("chunk_*.nc")) for r in xarray_to_records(open_netcdf(f))]
    else:
        records = list(crystaldos.load_dataset(path) if path else crystaldos.load_dataset())
    energies = records[0].dos["energy"].values
    dos = np.concatenate([r.dos.values for r in records])
    elements = np.concatenate([[s.specie.symbol for s in r.structure] for r in records])
    crystal = np.concatenate([[i] * len(r.structure) for i, r in enumerate(records)])
    splits = np.array([r.split for r in records])
    if not all(splits):
        rng = np.random.default_rng(0)
        splits = np.where(rng.random(len(records)) < 0.6, "train", "test")
    return dos, energies, elements, crystal, splits[crystal]


def accuracy_in_window(dos, energies, elements, split, window, seed: int = 0, epochs: int = 60) -> dict:
    lo, hi = window
    grid = np.linspace(lo, hi, 256)
    x = np.stack([np.interp(grid, energies, d) for d in dos]).astype(np.float32)
    x = np.log1p(x)  # compress the tall narrow peaks of localised levels
    classes = sorted(set(elements))
    y = np.array([classes.index(e) for e in elements])
    train, test = split == "train", split != "train"
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512), torch.nn.ReLU(), torch.nn.Linear(512, len(classes))
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
    xt, yt = torch.from_numpy(x[train]), torch.from_numpy(y[train])
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for batch in torch.randperm(len(xt), generator=generator).split(256):
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[batch]), yt[batch]).backward()
            optimiser.step()
    with torch.no_grad():
        predicted = model(torch.from_numpy(x[test])).argmax(1).numpy()
    right = predicted == y[test]
    counts = pd.Series(elements[train]).value_counts()
    common = np.isin(elements[test], counts[counts >= 100].index)
    return {
        "atoms (train/test)": f"{train.sum()}/{test.sum()}",
        "accuracy (%)": 100 * right.mean(),
        "elements >= 100 train atoms (%)": 100 * right[common].mean() if common.any() else np.nan,
        "rarer elements (%)": 100 * right[~common].mean() if (~common).any() else np.nan,
        "rarer elements (test atoms)": f"{len(set(elements[test][~common]))} ({(~common).sum()})",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="netCDF file or folder of build chunks")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    dos, energies, elements, _, split = atoms_of(args.data)
    rows = []
    for name, window in WINDOWS.items():
        spacing = energies[1] - energies[0]  # a window edge within one grid step of the grid edge is inside
        if window[0] < energies[0] - spacing or window[1] > energies[-1] + spacing:
            print(f"{name}: outside the data's grid ({energies[0]:.1f} ... {energies[-1]:.1f} eV), skipped")
            continue
        rows.append({"window": name} | accuracy_in_window(dos, energies, elements, split, window, args.seed))
        print(pd.DataFrame(rows[-1:]).to_string(index=False, float_format="%.1f"), flush=True)
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".1f"))


if __name__ == "__main__":
    main()
