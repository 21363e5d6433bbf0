"""How far below the per-element mean can an atom's DOS be predicted from a data set of this size? Lookups and oracles.

    python -m benchmarks.forward_model.ceiling [--data FILE] [--fractions 0.25 0.5 1] [--seed 0]

The forward-model target of the models issue is an MAE at t = 0 at least 40 % below the per-element-mean
baseline. This script asks what the training split itself holds, without a network. For every atom of the test
split (states/eV/atom, MAE over atoms and energies), predictions from a seeded random fraction of the training split:

* element mean: the mean DOS of the atom's element (the baseline);
* same elements: the mean DOS of the element's atoms in training crystals made of the same set of elements
  (the element mean where there are none);
* nearest composition and volume: the mean DOS of the element's atoms in the 3 training crystals closest in
  composition (L1 distance of atom fractions) plus |ln| of the volume-per-atom ratio;
* oracle, best rigid shift per crystal: the element mean shifted in energy by the one shift (within ±3 eV) that
  fits the whole test crystal best, the most a perfect Fermi-level predictor could add to the baseline;
* nearest environment (k): the mean DOS of the k training atoms of the same element whose local environment is
  closest: a radial distribution of neighbours per neighbour element (Gaussians every 0.25 Å from 1 to 5 Å, width
  0.25 Å, cosine cutoff at 5.5 Å, periodic images included), compared by Euclidean distance. A lookup that reads
  only the structure, as the forward model does (it does not look at the answer);
* oracle, best training atom: the single training atom of the same element whose DOS is closest to the truth, a
  ceiling on what copying one environment from the training split can reach (it looks at the answer).

A network interpolates and can do better than a lookup; but when the oracle of the best training atom is itself
near 40 %, the target asks the model for environments the training split does not contain.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

import crystaldos
from benchmarks.tables import show_row, show_table

MAX_SHIFT_POINTS = 40  # ±40 grid points, ±3.1 eV on the default grid
RADIAL_CENTRES = np.arange(1.0, 5.01, 0.25)  # Å: from the shortest bonds to the second shell of most cells
RADIAL_WIDTH = 0.25  # Å
ENVIRONMENT_CUTOFF = 5.5  # Å
NEAREST_ENVIRONMENTS = (1, 5)
MAX_Z = 100


def environment_descriptors(structure) -> np.ndarray:
    """Local environment of every site (n_sites, MAX_Z * len(RADIAL_CENTRES)): for each neighbour element, its
    neighbours' distances (Å, periodic images included) smeared on Gaussians and damped by a cosine cutoff."""
    centres, neighbours, _, distances = structure.get_neighbor_list(ENVIRONMENT_CUTOFF)
    numbers = np.array([site.specie.Z for site in structure])
    damping = 0.5 * (np.cos(np.pi * distances / ENVIRONMENT_CUTOFF) + 1.0)
    radial = np.exp(-0.5 * ((distances[:, None] - RADIAL_CENTRES) / RADIAL_WIDTH) ** 2) * damping[:, None]
    descriptor = np.zeros((len(structure), MAX_Z, len(RADIAL_CENTRES)), dtype=np.float32)
    np.add.at(descriptor, (centres, numbers[neighbours]), radial)
    return descriptor.reshape(len(structure), -1)


def nearest_rows(queries: np.ndarray, references: np.ndarray, k: int, chunk: int = 256) -> np.ndarray:
    """Indices (n_queries, k) of the k rows of ``references`` closest to each query (Euclidean)."""
    k = min(k, len(references))
    reference_norms = (references**2).sum(1)
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        block = queries[start:start + chunk]
        squared = reference_norms[None, :] - 2.0 * block @ references.T
        out[start:start + chunk] = np.argpartition(squared, k - 1, axis=1)[:, :k]
    return out


def atom_records(split) -> list[dict]:
    """One dict per atom: element, crystal index, set of elements, composition (Z -> fraction), volume per atom (Å³),
    its DOS (n_energies,) and its environment descriptor (``environment_descriptors``)."""
    records = []
    for index, item in enumerate(split):
        structure = item.structure
        composition = structure.composition.fractional_composition
        fractions = {element.Z: composition[element] for element in composition}
        dos = np.asarray(item.dos.values)
        environments = environment_descriptors(structure)
        for site, site_dos, environment in zip(structure, dos, environments):
            records.append({"crystal": index, "z": site.specie.Z, "elements": frozenset(fractions), "composition": fractions,
                            "volume": structure.volume / len(structure), "dos": site_dos, "environment": environment})
    return records


def composition_distance(a: dict, b: dict) -> float:
    """L1 distance between two compositions given as Z -> atom fraction."""
    return sum(abs(a.get(z, 0.0) - b.get(z, 0.0)) for z in set(a) | set(b))


def shifted(dos: np.ndarray, points: int) -> np.ndarray:
    """``dos`` (..., n_energies) moved by ``points`` grid points along energy (up for positive), zero-filled."""
    out = np.zeros_like(dos)
    if points > 0:
        out[..., points:] = dos[..., :-points]
    elif points < 0:
        out[..., :points] = dos[..., -points:]
    else:
        out[...] = dos
    return out


def predictor_errors(train: list[dict], test: list[dict]) -> dict[str, np.ndarray]:
    """Per-atom MAE (n_test_atoms,) of every predictor of the module docstring."""
    by_element = defaultdict(list)
    for record in train:
        by_element[record["z"]].append(record)
    overall = np.mean([r["dos"] for r in train], axis=0)
    # Each element's training DOS stacked once (n_atoms_of_element, n_energies): every per-atom predictor reads them.
    element_dos = {z: np.array([r["dos"] for r in records]) for z, records in by_element.items()}
    element_mean = {z: stacked.mean(axis=0) for z, stacked in element_dos.items()}
    errors = defaultdict(list)
    for record in test:
        truth, candidates = record["dos"], by_element.get(record["z"], [])
        mean = element_mean.get(record["z"], overall)
        errors["element mean"].append(np.abs(truth - mean).mean())
        if not candidates:
            for name in ("same elements", "nearest composition and volume", "oracle, best training atom"):
                errors[name].append(np.abs(truth - mean).mean())
            continue
        stacked = element_dos[record["z"]]
        same = [c["dos"] for c in candidates if c["elements"] == record["elements"]]
        errors["same elements"].append(np.abs(truth - (np.mean(same, axis=0) if same else mean)).mean())
        distance = np.array([composition_distance(record["composition"], c["composition"]) + abs(np.log(record["volume"] / c["volume"]))
                             for c in candidates])
        errors["nearest composition and volume"].append(np.abs(truth - stacked[np.argsort(distance)[:3]].mean(0)).mean())
        errors["oracle, best training atom"].append(np.abs(stacked - truth).mean(1).min())
    # One shift per test crystal, chosen on all its atoms at once.
    crystals = defaultdict(list)
    for i, record in enumerate(test):
        crystals[record["crystal"]].append(i)
    shift_errors = np.zeros(len(test))
    for atoms in crystals.values():
        truth = np.array([test[i]["dos"] for i in atoms])
        mean = np.array([element_mean.get(test[i]["z"], overall) for i in atoms])
        per_shift = np.array([np.abs(truth - shifted(mean, k)).mean(1) for k in range(-MAX_SHIFT_POINTS, MAX_SHIFT_POINTS + 1)])
        shift_errors[atoms] = per_shift[per_shift.mean(1).argmin()]
    errors["oracle, best rigid shift per crystal"] = list(shift_errors)
    # Nearest environments, one matrix product per element.
    test_by_element = defaultdict(list)
    for i, record in enumerate(test):
        test_by_element[record["z"]].append(i)
    for k in NEAREST_ENVIRONMENTS:
        errors[f"nearest environment (k = {k})"] = list(errors["element mean"])  # kept where no candidate
    for z, atoms in test_by_element.items():
        candidates = by_element.get(z, [])
        if not candidates:
            continue
        references = np.array([c["environment"] for c in candidates])
        queries = np.array([test[i]["environment"] for i in atoms])
        truth = np.array([test[i]["dos"] for i in atoms])
        for k in NEAREST_ENVIRONMENTS:
            predicted = element_dos[z][nearest_rows(queries, references, k)].mean(1)
            for i, error in zip(atoms, np.abs(truth - predicted).mean(1)):
                errors[f"nearest environment (k = {k})"][i] = error
    return {name: np.asarray(values) for name, values in errors.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="data file (default: the embedded data set)")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    dataset = crystaldos.load_dataset(args.data)
    train_items, test = list(dataset.split("train")), atom_records(dataset.split("test"))
    order = np.random.default_rng(args.seed).permutation(len(train_items))
    rows = []
    for fraction in args.fractions:
        subset = [train_items[i] for i in order[: max(1, round(fraction * len(train_items)))]]
        errors = predictor_errors(atom_records(subset), test)
        baseline = errors["element mean"].mean()
        for name, values in errors.items():
            rows.append({"training crystals": len(subset), "predictor": name, "MAE": values.mean(),
                         "below element mean (%)": 100 * (1 - values.mean() / baseline)})
            show_row(rows, "%.3f")
    show_table(rows, f"{len(test)} atoms of the test split; MAE in states/eV/atom", ".3f")


if __name__ == "__main__":
    main()
