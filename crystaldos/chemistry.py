"""Composition and geometry screens shared by the data build and the metrics.

* :func:`smact_valid` is the composition test of CDVAE and DiffCSP (``smact_validity`` in their
  code): charge neutrality with SMACT's oxidation states and Pauling's electronegativity test,
  single elements and all-metal compositions (alloys) allowed.
* :func:`geometry_problem` is the data set's plausibility check: no two atoms closer than
  0.6 x the sum of their covalent radii, 4-100 Å^3 per atom.
"""

from __future__ import annotations

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


#: CDVAE's and DiffCSP's ``smact_validity`` counts a composition with more oxidation-state combinations than this as
#: invalid without enumerating them (a generated 20-site cell of ten elements has ~1e9; enumerating them took hours).
MAX_OXIDATION_COMBINATIONS = 10**7


def _neutral_pauling_assignments(composition):
    """Charge-neutral, Pauling-consistent oxidation-state assignments, lazily, in ``itertools.product`` order.

    Neutrality is checked for all combinations at once with numpy (at most :data:`MAX_OXIDATION_COMBINATIONS`,
    80 MB), Pauling's test only on the neutral ones, so a caller that wants one stops at the first.
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
    charge = np.zeros(1, dtype=np.int64)
    for element_states, count in zip(states, counts):  # the total charge of every combination, C order
        charge = (charge[:, None] + np.asarray(element_states, dtype=np.int64)[None, :] * count).ravel()
    shape = [len(s) for s in states]
    for flat in np.flatnonzero(charge == 0):
        assignment = tuple(int(states[k][i]) for k, i in enumerate(np.unravel_index(flat, shape)))
        try:
            ok = pauling_test(assignment, electronegativities)
        except TypeError:  # an element without a Pauling electronegativity: CDVAE lets it pass
            ok = True
        if ok:
            yield assignment


def oxidation_combinations(composition) -> int:
    """How many oxidation-state assignments SMACT's screen would have to try (the product over elements)."""
    return int(np.prod([len(_smact_element(el.symbol)[0]) for el in composition.elements], dtype=np.float64))


def smact_oxidation_states(composition) -> list[tuple[int, ...]]:
    """Every assignment of oxidation states (one per element, in ``composition.elements`` order) that is
    charge neutral and passes Pauling's electronegativity test; empty if none.

    Args:
        composition: pymatgen Composition (or anything with ``.elements`` and ``__getitem__``).

    Raises:
        ValueError: more than :data:`MAX_OXIDATION_COMBINATIONS` combinations to try.
    """
    n = oxidation_combinations(composition)
    if n > MAX_OXIDATION_COMBINATIONS:
        raise ValueError(f"{composition}: {n:.3g} oxidation-state combinations, more than the {MAX_OXIDATION_COMBINATIONS:.0e} "
                         "SMACT's screen tries")
    return list(_neutral_pauling_assignments(composition))


def is_metal(symbol: str) -> bool:
    """True for SMACT's metals (the alloy exception of CDVAE's validity test)."""
    import smact

    return symbol in smact.metals


def is_all_metal(composition) -> bool:
    """True when every element is one of SMACT's metals (an alloy or intermetallic)."""
    return all(is_metal(el.symbol) for el in composition.elements)


def smact_valid(composition) -> bool:
    """CDVAE/DiffCSP's composition validity: one element, all metals, or a neutral, Pauling-consistent
    oxidation-state assignment; like theirs, False without trying where there are more than
    :data:`MAX_OXIDATION_COMBINATIONS` assignments.

    Args:
        composition: pymatgen Composition or Structure (its composition is used).
    """
    composition = getattr(composition, "composition", composition)
    if len(composition.elements) == 1 or is_all_metal(composition):
        return True
    if oxidation_combinations(composition) > MAX_OXIDATION_COMBINATIONS:
        return False  # as CDVAE: too many combinations to try counts as invalid
    return next(_neutral_pauling_assignments(composition), None) is not None


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
