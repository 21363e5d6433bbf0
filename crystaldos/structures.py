"""Crystals as the field's tools hand them over: pymatgen Structures, ASE Atoms, or files pymatgen reads."""

from __future__ import annotations

import os
from pathlib import Path

ACCEPTED = "a pymatgen Structure, an ASE Atoms object, or the path of a file pymatgen reads (CIF, POSCAR, ...)"


def is_crystal_like(obj) -> bool:
    """Whether :func:`as_structure` would take ``obj`` (without reading any file)."""
    from pymatgen.core import Structure

    return isinstance(obj, (Structure, str, os.PathLike)) or _is_ase_atoms(obj)


def _is_ase_atoms(obj) -> bool:
    try:
        from ase import Atoms
    except ImportError:  # ase is optional; without it nobody can hand us Atoms
        return False
    return isinstance(obj, Atoms)


def as_structure(obj):
    """``obj`` as a pymatgen Structure.

    Args:
        obj: a pymatgen ``Structure`` (returned as is), an ASE ``Atoms`` with a cell (converted with
            pymatgen's ``AseAtomsAdaptor``), or a ``str``/``Path`` of a file pymatgen reads
            (``Structure.from_file``: CIF, POSCAR/CONTCAR, vasprun.xml, ...).

    Raises:
        TypeError: anything else, naming what was given and what is accepted.
        FileNotFoundError: a path that does not exist.
        ValueError: a file pymatgen cannot read as a crystal, or Atoms without a periodic cell.
    """
    from pymatgen.core import Structure

    if isinstance(obj, Structure):
        return obj
    if _is_ase_atoms(obj):
        if not obj.pbc.all() or obj.cell.rank < 3:
            raise ValueError(f"ASE Atoms {obj.get_chemical_formula()} has no periodic 3D cell (pbc={obj.pbc.tolist()}): "
                             "a crystal needs one")
        from pymatgen.io.ase import AseAtomsAdaptor

        return AseAtomsAdaptor.get_structure(obj)
    if isinstance(obj, (str, os.PathLike)):
        path = Path(obj)
        if not path.exists():
            raise FileNotFoundError(f"no crystal file at {str(path)!r} (a string is read as a file path: {ACCEPTED})")
        try:
            return Structure.from_file(path)
        except Exception as err:
            raise ValueError(f"pymatgen could not read a crystal from {str(path)!r}: {err}") from err
    raise TypeError(f"expected {ACCEPTED}; got {type(obj).__module__}.{type(obj).__qualname__}")


def as_atoms(structure):
    """A pymatgen Structure as an ASE ``Atoms`` (for users who asked for Atoms back)."""
    from pymatgen.io.ase import AseAtomsAdaptor

    return AseAtomsAdaptor.get_atoms(structure)
