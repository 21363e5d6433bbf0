"""Labellers compute the atom-level DOS of a structure (used to build data and to check generated crystals)."""

from crystaldos.labellers.errors import (
    DisorderedStructureError,
    IllConditionedBasisError,
    LabellingError,
    SCFConvergenceError,
    SymmetryBrokenError,
    TooCloseAtomsError,
    UnsupportedElementError,
)
from crystaldos.labellers.xtb import XTBLabeller, label

__all__ = [
    "XTBLabeller",
    "label",
    "LabellingError",
    "UnsupportedElementError",
    "DisorderedStructureError",
    "TooCloseAtomsError",
    "SCFConvergenceError",
    "SymmetryBrokenError",
    "IllConditionedBasisError",
]
