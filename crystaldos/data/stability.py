"""Energy above the convex hull of a set's own phase diagram, with the relaxer's energies.

Each element's reference is the lowest relaxed energy per atom among its simple crystals (fcc, bcc, hcp, simple
cubic, diamond, a diatomic molecule in a box) and any elemental crystal of the set itself. For the molecular
elements (H, N, O, F, Cl, ...) the box of one molecule stands in for the molecular solid (no van der Waals
packing), so their reference may lie a little high and the hull energies of their compounds a little low. The
references are cached in a JSON file so that a build computes them once.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crystaldos.relax import RelaxationError

#: Crystals further above the set's own hull than this (eV/atom) are left out of the data set. On the first 603
#: crystals of the equilibrium build (python -m benchmarks.relax.hull_cut, docs/research/relax.md) 95.5 % of the known
#: crystals (the prototypes) lie within 0.2 eV/atom (93.3 % within MatterGen's 0.1), 87 % of the substitutions; the
#: furthest are broken relaxations (CuPt7 at 5.3 Å³/atom, 3.3 eV/atom above the hull).
MAX_E_ABOVE_HULL = 0.2

#: Lattice constants (Å) for the trial structures, scaled to the element's atomic radius before relaxing.
_TRIALS = ("fcc", "bcc", "hcp", "sc", "dimer", "diamond")


def trial_structures(symbol: str) -> dict[str, object]:
    """Simple elemental crystals of ``symbol`` at volumes from its atomic radius (relaxation finds the minimum)."""
    from pymatgen.core import Element, Lattice, Structure

    radius = float(Element(symbol).atomic_radius or Element(symbol).average_ionic_radius or 1.5)
    d = 2 * radius  # nearest-neighbour distance
    return {
        "fcc": Structure(Lattice.cubic(d * np.sqrt(2)), [symbol] * 4,
                         [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]).get_primitive_structure(),
        "bcc": Structure(Lattice.cubic(2 * d / np.sqrt(3)), [symbol] * 2, [[0, 0, 0], [0.5, 0.5, 0.5]]).get_primitive_structure(),
        "hcp": Structure(Lattice.hexagonal(d, d * 1.633), [symbol] * 2, [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]]),
        "sc": Structure(Lattice.cubic(d), [symbol], [[0, 0, 0]]),
        # A diatomic molecule in a box: the molecular elements' solids are stacks of these.
        "dimer": Structure(Lattice.cubic(max(4.5, 2 * d + 2.5)), [symbol] * 2, [[0, 0, 0], [d / max(4.5, 2 * d + 2.5), 0, 0]]),
        "diamond": Structure(Lattice.cubic(4 * d / np.sqrt(3)), [symbol] * 8,
                             [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5],
                              [0.25, 0.25, 0.25], [0.75, 0.75, 0.25], [0.75, 0.25, 0.75], [0.25, 0.75, 0.75]]
                             ).get_primitive_structure(),
    }


def elemental_references(elements, relaxer, cache: Path | None = None, known: dict[str, float] | None = None,
                         progress: bool = True, trials: tuple[str, ...] = _TRIALS) -> dict[str, dict]:
    """{element: {"energy_per_atom": eV, "from": which crystal}}: the lowest relaxed energy per atom of its trial crystals
    and of ``known`` ({element: eV/atom} of the set's own elemental crystals). Cached in ``cache`` (JSON).
    ``trials``: which of :func:`trial_structures` to relax."""
    from dataclasses import replace

    from tqdm.auto import tqdm

    found = json.loads(cache.read_text()) if cache is not None and cache.exists() else {}
    if set(elements) - set(found):  # trial cells start far from their minimum: any change in the physical range is fine
        relaxer = replace(relaxer, max_volume_change=None, match_start=False)
    for symbol in tqdm(sorted(set(elements) - set(found)), desc="elemental references", disable=not progress):
        best = {"energy_per_atom": np.inf, "from": ""}
        for name, structure in trial_structures(symbol).items():
            if name not in trials:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = relaxer.relax(structure)
            if result.converged and result.energy_per_atom < best["energy_per_atom"]:
                best = {"energy_per_atom": float(result.energy_per_atom), "from": name}
        found[symbol] = best
        if cache is not None:
            cache.write_text(json.dumps(found, indent=1, sort_keys=True))
    out = {s: dict(found[s]) for s in elements}
    for symbol, energy in (known or {}).items():
        if symbol in out and energy < out[symbol]["energy_per_atom"]:
            out[symbol] = {"energy_per_atom": float(energy), "from": "the data set"}
    return out


def lowest_elemental_energies(compositions, energies_per_atom) -> dict[str, float]:
    """{element: eV/atom}: the lowest energy among the set's elemental crystals (``known`` of
    :func:`elemental_references`)."""
    known: dict[str, float] = {}
    for composition, energy in zip(compositions, energies_per_atom):
        if len(composition.elements) == 1:
            symbol = composition.elements[0].symbol
            known[symbol] = min(float(energy), known.get(symbol, np.inf))
    return known


def energies_above_hull(compositions, energies_per_atom, references: dict[str, dict]) -> np.ndarray:
    """Energy above the hull (eV/atom) of each crystal, on the phase diagram of all of them plus the references.

    Args:
        compositions: pymatgen Compositions, (n,).
        energies_per_atom: their relaxed energies, eV/atom, (n,).
        references: :func:`elemental_references`.
    """
    from pymatgen.analysis.phase_diagram import PatchedPhaseDiagram, PDEntry
    from pymatgen.core import Composition

    entries = [PDEntry(Composition(c), float(e) * Composition(c).num_atoms) for c, e in zip(compositions, energies_per_atom)]
    refs = [PDEntry(Composition(s), r["energy_per_atom"]) for s, r in references.items() if np.isfinite(r["energy_per_atom"])]
    # One hull per chemical system (a single hull over 64 elements ran out of time and memory: 6.6 GB, > 15 min).
    diagram = PatchedPhaseDiagram(entries + refs)
    return np.array([diagram.get_e_above_hull(entry, allow_negative=True) for entry in entries])


class AboveHullError(RelaxationError):
    """A relaxed crystal lies further above the set's hull than :data:`MAX_E_ABOVE_HULL`: left out of the data set."""

    cause = "above the hull"


@dataclass
class HullScreen:
    """Refuses a relaxed crystal (:class:`AboveHullError`) that lies more than ``cut`` eV/atom above the hull of
    ``entries``, the known crystals of its chemical system: ``(composition as a dict, eV/atom)``, the elemental
    references among them. A task for :func:`crystaldos.relax.relax_and_label` (it travels to the worker)."""

    entries: list[tuple[dict[str, float], float]]
    cut: float = MAX_E_ABOVE_HULL

    def energy_above_hull(self, composition, energy_per_atom: float) -> float:
        """eV/atom above the hull of ``entries`` of a crystal of ``composition`` at ``energy_per_atom``."""
        from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
        from pymatgen.core import Composition

        composition = Composition(composition)
        mine = PDEntry(composition, energy_per_atom * composition.num_atoms)
        known = []
        for amounts, energy in self.entries:
            entry_composition = Composition(amounts)
            known.append(PDEntry(entry_composition, energy * entry_composition.num_atoms))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(PhaseDiagram(known + [mine]).get_e_above_hull(mine, allow_negative=True))

    def __call__(self, result) -> None:
        composition = result.structure.composition
        above = self.energy_above_hull(composition, result.energy_per_atom)
        if above > self.cut:
            raise AboveHullError(f"{composition.reduced_formula} lies {above:.3f} eV/atom above the hull of the crystals "
                                 f"labelled before it (cut {self.cut} eV/atom; the set's final hull can only lie lower)")


@dataclass
class PartialHull:
    """The crystals of a set known so far, for screening the next ones before they are labelled.

    Adding crystals to a phase diagram can only lower its hull, so a crystal more than the cut above the hull of part
    of a set lies more than the cut above the hull of the whole set too: the build may skip labelling it, and the
    data set comes out the same (measured on the first 130 chunks of the equilibrium build: 392 of the 439 crystals
    later cut are caught, saving 13 % of the labelling time; docs/research/relax.md). Only crystals that will be in
    the set's final phase diagram may be added (the labelled ones), and ``references`` must not lie below the final
    references (the cached trial-crystal energies of :func:`elemental_references` do not).

    Args:
        references: {element: eV/atom}.
    """

    references: dict[str, float]
    compositions: list[dict[str, float]] = field(default_factory=list)
    energies: list[float] = field(default_factory=list)

    @classmethod
    def from_cache(cls, cache: Path) -> "PartialHull":
        """References from :func:`elemental_references`' cache file (none if it does not exist yet)."""
        found = json.loads(Path(cache).read_text()) if Path(cache).exists() else {}
        return cls({s: float(r["energy_per_atom"]) for s, r in found.items() if np.isfinite(r["energy_per_atom"])})

    def add(self, composition, energy_per_atom: float) -> None:
        """A crystal of the set (pymatgen Composition), its relaxed energy in eV/atom. (An elemental crystal lower
        than its element's reference lowers the hull as an entry of every system holding that element.)"""
        self.compositions.append({el.symbol: float(amount) for el, amount in composition.items()})
        self.energies.append(float(energy_per_atom))

    def screen(self, composition, cut: float = MAX_E_ABOVE_HULL) -> HullScreen | None:
        """The :class:`HullScreen` of a crystal of ``composition``: its chemical system's known crystals; None when
        one of its elements has no reference yet (no hull to measure against)."""
        system = frozenset(el.symbol for el in composition.elements)
        if not system <= set(self.references):
            return None
        entries = [({s: 1.0}, self.references[s]) for s in sorted(system)]
        entries += [(c, e) for c, e in zip(self.compositions, self.energies) if c.keys() <= system]
        return HullScreen(entries, cut)
