"""How much does a crystal's composition and atom-level DOS tell about its volume per atom?

    python -m benchmarks.lattice.volume_from_dos [--data build/preview_v2_37.nc]

A denoiser reconstructing from t_start = 200 has two sources for the cell's scale: the noised cell (the
"no denoising" estimate L_t / sqrt(abar) is off by a median 8-9 % at t = 200, docs/research/lattice.md section 1) and
what the condition says. This script measures the second with ridge regressions of log(volume per atom),
fitted on the training split, the ridge strength chosen on the validation split, scored on the test split:

* composition: the fraction of each element;
* crystal DOS: the mean of the atoms' DOS (every third grid point) and its mean energy and width;
* composition + crystal DOS;
* composition + element x atom-DOS moments: each atom's DOS centre and log width, by element (tight binding
  ties an atom's band width to its bonds: the second moment is the sum of its squared hoppings).

A linear model is a floor, not a ceiling, on what the condition holds; a model that reached well below the
noised cell's error would tell that the network, not the data, limits the lattice.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
from benchmarks.tables import show_row, show_table

import crystaldos

N_ELEMENTS = 100


def composition(item) -> np.ndarray:
    """(100,) fraction of the cell's atoms of each atomic number."""
    z = np.array(item.structure.atomic_numbers)
    out = np.zeros(N_ELEMENTS)
    np.add.at(out, z, 1.0 / len(z))
    return out


def centre_and_width(dos: np.ndarray, energy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean energy and standard deviation (eV) of DOS curves ``dos`` (..., n_energies) on ``energy`` (n_energies,)."""
    weights = dos / np.maximum(dos.sum(-1, keepdims=True), 1e-9)
    centre = (weights * energy).sum(-1)
    width = np.sqrt((weights * (energy - centre[..., None]) ** 2).sum(-1))
    return centre, width


def crystal_dos(item) -> np.ndarray:
    """The atoms' mean DOS (every third point, states/eV/atom) with its mean energy and width (eV)."""
    dos = np.asarray(item.dos.values, float).mean(0)
    centre, width = centre_and_width(dos, np.asarray(item.dos.energy.values))
    return np.concatenate([dos[::3], [centre, width, np.log(width + 1e-3)]])


def element_moments(item) -> np.ndarray:
    """(200,) each atom's DOS centre (eV) and log width, averaged by element over the cell."""
    centres, widths = centre_and_width(np.asarray(item.dos.values, float), np.asarray(item.dos.energy.values))
    z = np.array(item.structure.atomic_numbers)
    one_hot = np.zeros((len(z), N_ELEMENTS))
    one_hot[np.arange(len(z)), z] = 1.0
    return np.concatenate([(one_hot * np.log(widths + 1e-3)[:, None]).mean(0), (one_hot * centres[:, None]).mean(0)])


FEATURES: dict[str, Callable] = {
    "composition": composition,
    "crystal DOS": crystal_dos,
    "composition + crystal DOS": lambda i: np.concatenate([composition(i), crystal_dos(i)]),
    "composition + element x atom-DOS moments": lambda i: np.concatenate([composition(i), element_moments(i)]),
}


def ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> Callable[[np.ndarray], np.ndarray]:
    """Ridge regression on standardised features; returns the predictor."""
    mean, std = x.mean(0), x.std(0) + 1e-9
    xs = (x - mean) / std
    w = np.linalg.solve(xs.T @ xs + alpha * np.eye(x.shape[1]), xs.T @ (y - y.mean()))
    return lambda z: ((z - mean) / std) @ w + y.mean()


def log_volume(item) -> float:
    return float(np.log(item.structure.volume / len(item.structure)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="data file (default: the embedded data set)")
    args = parser.parse_args()
    dataset = crystaldos.load_dataset(args.data)
    splits = {name: list(dataset.split(name)) for name in ("train", "val", "test")}
    targets = {name: np.array([log_volume(i) for i in items]) for name, items in splits.items()}
    rows = []
    for name, features in FEATURES.items():
        x = {split: np.array([features(i) for i in items]) for split, items in splits.items()}
        alpha = min(np.logspace(-2, 4, 13),
                    key=lambda a: np.mean(np.abs(ridge(x["train"], targets["train"], a)(x["val"]) - targets["val"])))
        error = 100 * np.abs(np.exp(ridge(x["train"], targets["train"], alpha)(x["test"]) - targets["test"]) - 1)
        rows.append({"predictors": name, "ridge alpha": alpha, "median |dV| (%)": float(np.median(error)),
                     "within 5 % (%)": 100 * float(np.mean(error <= 5)), "within 10 % (%)": 100 * float(np.mean(error <= 10))})
        show_row(rows)
    show_table(rows, f"volume per atom of the {len(splits['test'])} test crystals from ridge regressions fitted on "
                     f"{len(splits['train'])} training crystals ({dataset.attrs.get('title', args.data)})", floatfmt=".1f")


if __name__ == "__main__":
    main()
