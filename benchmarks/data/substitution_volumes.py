"""Are substituted crystals compressed? Shortest bond over the sum of covalent radii, prototypes vs substitutions.

    python -m benchmarks.data.substitution_volumes --data build/preview_v2_37.nc

Substituted cells get their volume from pymatgen's DLSVolumePredictor (crystaldos.data.candidates). For every
crystal of the data file: the shortest interatomic distance over the sum of the two atoms' covalent radii
(Cordero et al., as pymatgen tabulates them), summarised for the real prototypes and for the substitutions,
plus the single-element crystals whose volume per atom lies furthest from the real crystals of that element.
"""

from __future__ import annotations

import argparse

import numpy as np
from pymatgen.analysis.molecule_structure_comparator import CovalentRadius
from benchmarks.tables import show_table

import crystaldos


def shortest_bond_ratio(structure, reach: float = 4.5) -> float:
    """min over atom pairs (periodic images included, up to ``reach`` Å) of d / (r_cov,a + r_cov,b)."""
    radius = CovalentRadius.radius
    best = np.inf
    for i, neighbours in enumerate(structure.get_all_neighbors(reach)):
        for n in neighbours:
            best = min(best, n.nn_distance / (radius[structure[i].specie.symbol] + radius[n.specie.symbol]))
    return float(best)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="a format-2 data file (default: the embedded data set)")
    args = parser.parse_args()
    dataset = crystaldos.load_dataset(args.data, min_format_version=2)
    ratios: dict[str, list[float]] = {"prototype": [], "substitution": []}
    elemental: dict[str, list[tuple[float, str, str]]] = {}
    for split in ("train", "val", "test"):
        for item in dataset.split(split):
            origin = "prototype" if item.source == "prototype" else "substitution"
            ratios[origin].append(shortest_bond_ratio(item.structure))
            if len(item.structure.composition.elements) == 1:
                volume = item.structure.volume / len(item.structure)
                elemental.setdefault(item.structure.composition.reduced_formula, []).append((volume, item.id, origin))
    rows = []
    for origin, values in ratios.items():
        v = np.array([x for x in values if np.isfinite(x)])
        rows.append({"crystals": origin, "n": len(v), "10th percentile": np.percentile(v, 10), "median": np.median(v),
                     "90th percentile": np.percentile(v, 90), "below 0.85 (%)": 100 * np.mean(v < 0.85)})
    show_table(rows, "shortest bond / sum of covalent radii")
    rows = []
    for element, entries in sorted(elemental.items()):
        real = [v for v, _, origin in entries if origin == "prototype"]
        for volume, structure_id, origin in entries:
            if origin != "prototype" and real:
                rows.append({"element": element, "substitution": structure_id, "volume per atom (Å³)": volume,
                             "real crystals of the element (Å³)": ", ".join(f"{r:.1f}" for r in sorted(real)),
                             "off the nearest (%)": 100 * min((volume / r - 1 for r in real), key=abs)})
    rows.sort(key=lambda r: -abs(r["off the nearest (%)"]))
    show_table(rows[:15], "single-element substitutions furthest from the element's real crystals in the file", floatfmt=".1f")


if __name__ == "__main__":
    main()
