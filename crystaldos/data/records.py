"""One labelled crystal: a pymatgen Structure and its atom-level DOS."""

from __future__ import annotations

from dataclasses import dataclass, field

import xarray as xr
from pymatgen.core import Structure

from crystaldos.dos import validate_site_dos


@dataclass
class CrystalDOS:
    """A crystal with a DOS curve on every atom.

    Attributes:
        id: unique identifier (e.g. ``"proto-0012"``, ``"sub-0012-007"``, an MP id).
        structure: the ordered crystal (lattice in Å).
        dos: atom-level DOS, dims ("site", "energy"), site order = ``structure`` order.
        source: provenance class, e.g. ``"prototype"`` (experimental AFLOW prototype),
            ``"substituted"`` (derived by ion substitution), ``"materials-project"``.
        split: ``"train"``, ``"test"``, ``"val"`` or ``""`` if unassigned.
        properties: scalar metadata (band gap eV, Fermi level eV, parent id, ...).
    """

    id: str
    structure: Structure
    dos: xr.DataArray
    source: str = ""
    split: str = ""
    properties: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_site_dos(self.dos, n_sites=len(self.structure))
        elements = [site.specie.symbol for site in self.structure]
        if "element" in self.dos.coords and list(self.dos["element"].values) != elements:
            raise ValueError(f"{self.id}: DOS site elements {list(self.dos['element'].values)} != structure {elements}")

    @property
    def formula(self) -> str:
        """Reduced formula of the structure."""
        return self.structure.composition.reduced_formula

    def __repr__(self) -> str:
        return f"CrystalDOS(id={self.id!r}, formula={self.formula!r}, n_sites={len(self.structure)}, split={self.split!r})"
