"""Labellers compute the atom-level DOS of a structure (used to build data and to check generated crystals)."""

from crystaldos.labellers.xtb import (
    DisorderedStructureError,
    IllConditionedBasisError,
    LabellingError,
    SCFConvergenceError,
    SymmetryBrokenError,
    TooCloseAtomsError,
    UnsupportedElementError,
    XTBLabeller,
    label,
)

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
