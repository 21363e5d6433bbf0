"""Composition and geometry screens shared by the data build and the metrics.

* :func:`smact_valid` is the composition test of CDVAE and DiffCSP (``smact_validity`` in their
  code): charge neutrality with SMACT's oxidation states and Pauling's electronegativity test,
  single elements and all-metal compositions (alloys) allowed.
* :func:`geometry_problem` is the data set's plausibility check: no two atoms closer than
  0.6 x the sum of their covalent radii, 4-100 Å^3 per atom.
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from math import gcd

import numpy as np

#: Plausible crystals: closest pair >= this x (sum of covalent radii), volume per atom in this range.
MIN_BOND_FRACTION = 0.6
VOLUME_PER_ATOM_BOUNDS = (4.0, 100.0)  # Å^3


@lru_cache(maxsize=None)
def _smact_element(symbol: str) -> tuple[tuple[int, ...], float | None]:
    """SMACT's oxidation states and Pauling electronegativity of an element."""
    import smact

    element = smact.Element(symbol)
    return tuple(element.oxidation_states or ()), element.pauling_eneg


def smact_oxidation_states(composition) -> list[tuple[int, ...]]:
    """Every assignment of oxidation states (one per element, in ``composition.elements`` order) that is
    charge neutral and passes Pauling's electronegativity test; empty if none.

    Args:
        composition: pymatgen Composition (or anything with ``.elements`` and ``__getitem__``).
    """
    from smact.screening import pauling_test

    symbols = [el.symbol for el in composition.elements]
    counts = [int(round(composition[el])) for el in composition.elements]
    divisor = 0
    for c in counts:
        divisor = gcd(divisor, c)
    counts = [c // max(divisor, 1) for c in counts]
    states = [_smact_element(s)[0] for s in symbols]
    electronegativities = [_smact_element(s)[1] for s in symbols]
    out = []
    for assignment in itertools.product(*states):
        if sum(q * c for q, c in zip(assignment, counts)) != 0:
            continue
        try:
            ok = pauling_test(assignment, electronegativities)
        except TypeError:  # an element without a Pauling electronegativity: CDVAE lets it pass
            ok = True
        if ok:
            out.append(tuple(int(q) for q in assignment))
    return out


def is_metal(symbol: str) -> bool:
    """True for SMACT's metals (the alloy exception of CDVAE's validity test)."""
    import smact

    return symbol in smact.metals


def is_all_metal(composition) -> bool:
    """True when every element is one of SMACT's metals (an alloy or intermetallic)."""
    return all(is_metal(el.symbol) for el in composition.elements)


def smact_valid(composition) -> bool:
    """CDVAE/DiffCSP's composition validity: one element, all metals, or a neutral, Pauling-consistent
    oxidation-state assignment.

    Args:
        composition: pymatgen Composition or Structure (its composition is used).
    """
    composition = getattr(composition, "composition", composition)
    if len(composition.elements) == 1 or is_all_metal(composition):
        return True
    return bool(smact_oxidation_states(composition))


def geometry_problem(structure) -> str | None:
    """Why a crystal is geometrically implausible (None if it is not).

    Checks the volume per atom against :data:`VOLUME_PER_ATOM_BOUNDS` and every pair of atoms
    (periodic images included) against :data:`MIN_BOND_FRACTION` x the sum of their covalent radii.
    """
    volume = structure.volume / len(structure)
    low, high = VOLUME_PER_ATOM_BOUNDS
    if not low <= volume <= high:
        return f"volume {volume:.2f} Å^3/atom outside {low:g}-{high:g}"
    radii = np.array([_covalent_radius(site.specie.symbol) for site in structure])
    centres, neighbours, _, distances = structure.get_neighbor_list(2 * MIN_BOND_FRACTION * radii.max() + 0.01)
    if len(distances):
        ratio = distances / (radii[centres] + radii[neighbours])
        k = int(np.argmin(ratio))
        if ratio[k] < MIN_BOND_FRACTION:
            a, b = structure[int(centres[k])].specie.symbol, structure[int(neighbours[k])].specie.symbol
            return f"{a}-{b} {distances[k]:.2f} Å apart ({ratio[k]:.2f} x the covalent radii sum)"
    return None


@lru_cache(maxsize=None)
def _covalent_radius(symbol: str) -> float:
    """Covalent radius (Å) from pymatgen's tables (Cordero et al. 2008)."""
    from pymatgen.analysis.molecule_structure_comparator import CovalentRadius
    from pymatgen.core.periodic_table import Element

    radius = CovalentRadius.radius.get(symbol)
    return float(radius) if radius is not None else float(Element(symbol).atomic_radius or 1.5)
