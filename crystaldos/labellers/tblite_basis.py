"""tblite's units and basis: constants and the orbital count per atom, shared by the labeller and the Bloch sums."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

BOHR_PER_ANGSTROM = 1.0 / 0.52917721092
EV_PER_HARTREE = 27.211386245988
KELVIN_TO_HARTREE = 3.166811563e-6
MAX_Z = 86  # GFN1-xTB parameters cover H ... Rn


@lru_cache(maxsize=None)
def orbitals_per_atom(z: int, method: str = "GFN1-xTB") -> int:
    """Number of basis functions tblite puts on an atom of atomic number ``z``.

    tblite orders basis functions atom by atom, so this is all that is needed
    to map orbitals to atoms. Read off a one-atom calculation (cached).
    """
    from tblite.interface import Calculator

    calc = Calculator(method, np.array([z]), np.zeros((1, 3)))
    calc.set("verbosity", 0)
    # Open-shell free atoms may need many smeared iterations; only the basis size is read.
    calc.set("max-iter", 500)
    return int(calc.singlepoint().get("norbitals"))
