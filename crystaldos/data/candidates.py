"""Candidate crystals for the embedded default data set, from what pymatgen ships.

1. **Prototypes**: the 288 experimental AFLOW prototype crystals in
   ``pymatgen/analysis/prototypes/aflow_prototypes.json.gz`` plus the reference
   structures in ``pymatgen/util/structures``; ordered, <= ``max_sites`` sites,
   elements GFN1-xTB supports.
2. **Substitutions** that keep the parent's chemistry (:func:`substitution_allowed`):
   ionic compounds swap ions for ions of the same oxidation state, ranked by
   pymatgen's data-mined pair probabilities (Hautier et al.); all-metal parents
   swap metals for neighbouring metals; the rest (e.g. Si, C) swap an element for
   its neighbour in the same group.
3. **Volumes** of substituted cells from pymatgen's ``DLSVolumePredictor``
   (bond-length based), else scaled by atomic radii.
4. **Duplicates** removed with ``StructureMatcher``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pymatgen.core import Element, Species, Structure

from crystaldos.labellers.xtb import MAX_Z

#: Elements excluded from candidates: noble gases (no solids at our conditions). The lanthanides
#: are in since the GFN2-xTB labeller (format 2): CeN, GdN and YbN rocksalt label without SCF trouble
#: (gaps 0.7-0.9 eV); GFN1-xTB (format 1) failed on their open 4f shells and they were left out.
EXCLUDED = {"He", "Ne", "Ar", "Kr", "Xe", "Rn"}


@dataclass
class Candidate:
    """A structure waiting to be labelled, with its provenance."""

    id: str
    structure: Structure
    source: str  # "prototype" or "substituted"
    parent: str  # id of the prototype it derives from (itself for prototypes)
    note: str  # prototype tag / substitution applied / volume method
    prototype: str = ""  # AFLOW label of the structure family ("" if unknown)
    origin: str = ""  # where the parent crystal comes from: "pymatgen" or "aflow-encyclopedia"

    def to_dict(self) -> dict:
        return {
            "id": self.id, "structure": self.structure.as_dict(), "source": self.source, "parent": self.parent,
            "note": self.note, "prototype": self.prototype, "origin": self.origin,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Candidate":
        return cls(d["id"], Structure.from_dict(d["structure"]), d["source"], d["parent"], d["note"],
                   d.get("prototype", ""), d.get("origin", ""))


def _usable(structure: Structure, max_sites: int) -> bool:
    return (
        structure.is_ordered
        and len(structure) <= max_sites
        and all(1 <= el.Z <= MAX_Z and el.symbol not in EXCLUDED for el in structure.composition.elements)
    )


def prototype_structures(max_sites: int = 12) -> list[Candidate]:
    """Experimental prototype crystals shipped with pymatgen that the labeller can handle, as given
    (the format-1 build; :func:`real_prototypes` adds the AFLOW Encyclopedia and primitive cells)."""
    from crystaldos.data.sources import pymatgen_prototypes

    return [
        Candidate(p.id, p.structure, "prototype", p.id, f"AFLOW {p.aflow_label} {p.name}".strip(), p.aflow_label, p.source)
        for p in pymatgen_prototypes()
        if _usable(p.structure, max_sites)
    ]


def _charge_preserving_substitutions(structure: Structure, model, top: int) -> list[tuple[dict, float]]:
    """Ionic substitutions that keep every ion's oxidation state (so the child stays charge balanced).

    The parent's oxidation states are SMACT's first neutral, Pauling-consistent assignment that uses
    only common oxidation states (else the first). Each ion E^q may become any element with q among
    its common oxidation states, ranked by the data-mined pair probability p(E'^q | E^q) of Hautier
    et al. (pymatgen ``SubstitutionProbability``); pairs of the best single swaps on two different
    elements follow with the product probability.
    """
    from crystaldos.chemistry import smact_oxidation_states

    composition = structure.composition
    assignments = smact_oxidation_states(composition)
    if not assignments:
        return []
    common = [a for a in assignments if all(q in el.common_oxidation_states for el, q in zip(composition.elements, a))]
    assignment = (common or assignments)[0]
    singles: list[tuple[dict, float]] = []
    for element, charge in zip(composition.elements, assignment):
        for z in range(1, MAX_Z + 1):
            other = Element.from_Z(z)
            if other in composition.elements or other.symbol in EXCLUDED or charge not in other.common_oxidation_states:
                continue
            try:
                probability = float(model.prob(Species(other.symbol, charge), Species(element.symbol, charge)))
            except (KeyError, ValueError):  # an ion outside the data-mined table
                continue
            if probability > 0:
                singles.append(({element.symbol: other.symbol}, probability))
    singles.sort(key=lambda x: -x[1])
    doubles = []
    best = singles[:12]
    for i, (a, pa) in enumerate(best):
        for b, pb in best[i + 1 :]:
            if set(a) != set(b) and set(a.values()).isdisjoint(b.values()):
                doubles.append(({**a, **b}, pa * pb))
    return sorted(singles + doubles, key=lambda x: -x[1])[:top]


def _group_neighbours(element: Element) -> list[Element]:
    """Elements one period above/below in the same group (chemically closest swaps)."""
    out = []
    for other in (Element.from_Z(z) for z in range(1, MAX_Z + 1)):
        if other.group == element.group and abs(other.row - element.row) == 1 and other.symbol not in EXCLUDED:
            if not (other.is_lanthanoid or other.is_actinoid):
                out.append(other)
    return out


def _group_substitutions(structure: Structure) -> list[tuple[dict, float]]:
    elements = structure.composition.elements
    out = []
    for el in elements:
        for new in _group_neighbours(el):
            if new not in elements:
                out.append(({el.symbol: new.symbol}, 1.0))
    return out


def _with_volume(structure: Structure, reference: Structure, predictor) -> tuple[Structure, str]:
    """Rescale ``structure`` to a predicted volume; returns it and the method used."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return predictor.get_predicted_structure(structure), "DLS volume"
    except Exception:
        def radius_volume(s: Structure) -> float:
            return sum((el.atomic_radius or 1.5) ** 3 for el in s.species)

        scaled = structure.copy()
        scaled.scale_lattice(reference.volume * radius_volume(structure) / radius_volume(reference))
        return scaled, "atomic-radius volume"


def real_prototypes(max_sites: int = 20, cache_dir: Path | None = None) -> tuple[list[Candidate], dict[str, int]]:
    """Real crystals from pymatgen and the AFLOW Encyclopedia (``crystaldos.data.sources``), as primitive
    cells with at most ``max_sites`` sites, ordered, labeller elements only, geometrically plausible
    (:func:`crystaldos.chemistry.geometry_problem`), one per AFLOW label and chemistry.

    Returns:
        the prototypes and the count of crystals dropped by each reason.
    """
    from crystaldos.chemistry import geometry_problem
    from crystaldos.data.sources import encyclopedia_prototypes, pymatgen_prototypes

    found = pymatgen_prototypes()
    if cache_dir is not None:
        found += encyclopedia_prototypes(cache_dir)
    dropped: dict[str, int] = {}
    out: list[Candidate] = []
    seen: set[tuple[str, str]] = set()
    for proto in found:
        structure = proto.structure
        reason = None
        if not structure.is_ordered:
            reason = "disordered"
        elif not all(1 <= el.Z <= MAX_Z and el.symbol not in EXCLUDED for el in structure.composition.elements):
            reason = "element outside the labeller"
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                structure = structure.get_primitive_structure()
            if len(structure) > max_sites:
                reason = f"more than {max_sites} sites"
            elif geometry_problem(structure):
                reason = "implausible geometry"
            elif (proto.aflow_label, structure.composition.reduced_formula) in seen and proto.aflow_label:
                reason = "same AFLOW label and formula as an earlier source"
        if reason:
            dropped[reason] = dropped.get(reason, 0) + 1
            continue
        seen.add((proto.aflow_label, structure.composition.reduced_formula))
        note = f"{proto.name} ({proto.reference})".strip()
        out.append(Candidate(proto.id, structure, "prototype", proto.id, note, proto.aflow_label, proto.source))
    return out, dropped


def substitution_allowed(parent: Structure, child: Structure) -> bool:
    """The chemistry rule of the data set: a child of a SMACT-valid parent is SMACT-valid
    (same oxidation-state logic), a child of an all-metal parent is all-metal."""
    from crystaldos.chemistry import is_all_metal, smact_valid

    if is_all_metal(parent.composition) and not is_all_metal(child.composition):
        return False
    if smact_valid(parent) and not smact_valid(child):
        return False
    return True


def _metal_neighbours(element: Element) -> list[Element]:
    """Metals next to a metal in the periodic table: same group one row up/down, same row one group
    left/right (d block: Fe -> Co, Mn; Ru, Os), for intermetallic substitutions."""
    from crystaldos.chemistry import is_metal

    out = list(_group_neighbours(element))
    if element.is_transition_metal:
        for z in (element.Z - 1, element.Z + 1):
            other = Element.from_Z(z)
            if other.is_transition_metal and other.symbol not in EXCLUDED:
                out.append(other)
    return [o for o in out if is_metal(o.symbol)]


def substituted_structures(prototypes: list[Candidate], per_prototype: int = 40, min_distance: float = 0.9) -> list[Candidate]:
    """Chemically sensible substitutions of every prototype (see module docstring).

    Ionic parents take pymatgen's data-mined ionic substitutions, metallic parents metal-for-metal
    neighbours, the rest same-group neighbours; every child must pass :func:`substitution_allowed`
    and :func:`crystaldos.chemistry.geometry_problem` after its volume is predicted.
    """
    from crystaldos.chemistry import geometry_problem, is_all_metal
    from pymatgen.analysis.structure_prediction.volume_predictor import DLSVolumePredictor

    from pymatgen.analysis.structure_prediction.substitution_probability import SubstitutionProbability

    model = SubstitutionProbability()
    volume_predictor = DLSVolumePredictor()
    out: list[Candidate] = []
    from tqdm.auto import tqdm

    for proto in tqdm(prototypes, desc="substitutions", mininterval=30):
        composition = proto.structure.composition
        if is_all_metal(composition):
            substitutions = _metal_substitutions(proto.structure)
        else:
            substitutions = _charge_preserving_substitutions(proto.structure, model, 3 * per_prototype) or _group_substitutions(proto.structure)
        kept = 0
        for k, (mapping, probability) in enumerate(substitutions):
            if kept >= per_prototype:
                break
            new = proto.structure.copy()
            new.replace_species(mapping)
            if not _usable(new, len(new)) or not substitution_allowed(proto.structure, new):
                continue
            new, volume_note = _with_volume(new, proto.structure, volume_predictor)
            if len(new) > 1 and np.min(new.distance_matrix + np.eye(len(new)) * 99) < min_distance:
                continue
            if geometry_problem(new):
                continue
            swaps = ",".join(f"{a}->{b}" for a, b in mapping.items() if a != b)
            note = f"{swaps} (p={probability:.2g}); {volume_note}"
            out.append(Candidate(f"{proto.id}-s{k:02d}", new, "substituted", proto.id, note, proto.prototype, proto.origin))
            kept += 1
    return out


def _metal_substitutions(structure: Structure) -> list[tuple[dict, float]]:
    """Single and double metal-for-metal swaps (all-metal parents stay all-metal)."""
    elements = structure.composition.elements
    singles = [({el.symbol: new.symbol}, 1.0) for el in elements for new in _metal_neighbours(el) if new not in elements]
    doubles = []
    if len(elements) >= 2:
        a, b = elements[:2]
        for new_a in _metal_neighbours(a):
            for new_b in _metal_neighbours(b):
                if len({new_a, new_b}) == 2 and new_a not in elements and new_b not in elements:
                    doubles.append(({a.symbol: new_a.symbol, b.symbol: new_b.symbol}, 0.5))
    return singles + doubles


def deduplicate(candidates: list[Candidate]) -> list[Candidate]:
    """Keep the first of every group of equivalent structures (pymatgen StructureMatcher)."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    matcher = StructureMatcher()
    by_formula: dict[str, list[int]] = {}
    for i, c in enumerate(candidates):
        by_formula.setdefault(c.structure.composition.reduced_formula, []).append(i)
    keep = []
    for indices in by_formula.values():
        kept: list[int] = []
        for i in indices:
            if not any(matcher.fit(candidates[i].structure, candidates[j].structure) for j in kept):
                kept.append(i)
        keep.extend(kept)
    return [candidates[i] for i in sorted(keep)]


def select(candidates: list[Candidate], n: int, seed: int) -> list[Candidate]:
    """All prototypes plus a seeded, prototype-balanced sample of substitutions (n in total)."""
    rng = np.random.default_rng(seed)
    prototypes = [c for c in candidates if c.source == "prototype"]
    by_parent: dict[str, list[Candidate]] = {}
    for c in candidates:
        if c.source != "prototype":
            by_parent.setdefault(c.parent, []).append(c)
    queues = [list(rng.permutation(len(v))) for v in by_parent.values()]
    groups = list(by_parent.values())
    chosen = list(prototypes)
    while len(chosen) < n and any(queues):
        for g in rng.permutation(len(groups)):  # round robin: every prototype contributes evenly
            if queues[g] and len(chosen) < n:
                chosen.append(groups[g][queues[g].pop(0)])
    return chosen


def family_of(candidate: Candidate) -> str:
    """A candidate's prototype family: its AFLOW label, else its parent's id (as
    :meth:`crystaldos.data.dataset.CrystalDOSDataset.prototype_families` reads it back from a data file)."""
    return candidate.prototype or candidate.parent or candidate.id


def order_by_family(candidates: list[Candidate], seed: int) -> list[Candidate]:
    """The candidates in rounds over their prototype families: round r takes the r-th member of every family
    (prototypes before substitutions, the rest seeded), families in a seeded order.

    Every prefix of the result then samples the families evenly: the first ``n_families`` candidates hold
    one crystal of each, so a build stopped early is still a balanced data set.
    """
    rng = np.random.default_rng(seed)
    families: dict[str, list[Candidate]] = {}
    for c in candidates:
        families.setdefault(family_of(c), []).append(c)
    queues = []
    for members in families.values():
        prototypes = [c for c in members if c.source == "prototype"]
        others = [c for c in members if c.source != "prototype"]
        queues.append(prototypes + [others[i] for i in rng.permutation(len(others))])
    order = rng.permutation(len(queues))
    ordered: list[Candidate] = []
    for r in range(max(map(len, queues), default=0)):
        ordered.extend(queues[g][r] for g in order if r < len(queues[g]))
    return ordered


def split_families(candidates: list[Candidate], fractions: dict[str, float], seed: int) -> dict[str, str]:
    """Assign whole prototype families to splits so that each split holds about ``fractions`` of the candidates.

    Families go largest first (ties in a seeded order) to the split furthest below its share, so no family of
    val or test has a member in train. Returns {family: split}.
    """
    rng = np.random.default_rng(seed)
    sizes: dict[str, int] = {}
    for c in candidates:
        sizes[family_of(c)] = sizes.get(family_of(c), 0) + 1
    names = list(sizes)
    tiebreak = dict(zip(names, rng.permutation(len(names))))
    total = sum(sizes.values())
    filled = {split: 0 for split in fractions}
    assignment = {}
    for family in sorted(names, key=lambda f: (-sizes[f], tiebreak[f])):
        split = max(fractions, key=lambda s: fractions[s] * total - filled[s])
        assignment[family] = split
        filled[split] += sizes[family]
    return assignment


def split_of_family(family: str, assignment: dict[str, str], fractions: dict[str, float]) -> str:
    """The split of ``family``: from ``assignment``, or for a family that came after it (a top-up of the candidates)
    a stable draw from its name's hash in the given proportions."""
    if family in assignment:
        return assignment[family]
    import hashlib

    u = int(hashlib.sha256(family.encode()).hexdigest()[:12], 16) / 16**12
    edges = np.cumsum(list(fractions.values()))
    return list(fractions)[int(np.searchsorted(edges, u, side="right").clip(max=len(edges) - 1))]
