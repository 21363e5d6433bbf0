"""Cell geometry shared by the labeller and the metrics."""

from __future__ import annotations

import numpy as np

#: Cells outside these bounds are not physical crystals an electronic-structure code can treat.
MIN_FACE_DISTANCE = 1.0  # Å
VOLUME_PER_ATOM_RANGE = (2.0, 200.0)  # Å³
#: Atoms closer than this (Å, periodic images included) sit on top of each other: no labeller or relaxation can use them.
MIN_ATOM_DISTANCE = 0.5


def perpendicular_widths(matrix: np.ndarray) -> np.ndarray:
    """Distances between opposite faces of the cell with rows ``matrix`` (3, 3), shape (3,), Å."""
    volume = abs(np.linalg.det(matrix))
    return np.array([volume / np.linalg.norm(np.cross(matrix[(i + 1) % 3], matrix[(i + 2) % 3])) for i in range(3)])


def implausible_cell_reason(structure) -> str | None:
    """Why a cell is not a plausible crystal (None if it is): non-finite, too thin, too dense or too empty.

    Generated lattices can pass CDVAE's validity test yet be needle-thin, which
    makes neighbour searches, Niggli reduction and supercells explode.
    """
    matrix = structure.lattice.matrix
    if not np.all(np.isfinite(matrix)):
        return "non-finite lattice"
    volume_per_atom = abs(float(np.linalg.det(matrix))) / len(structure)
    low, high = VOLUME_PER_ATOM_RANGE
    if not low <= volume_per_atom <= high:
        return f"volume per atom {volume_per_atom:.3g} Å^3 outside {low} ... {high} Å^3"
    width = float(perpendicular_widths(matrix).min())
    if width < MIN_FACE_DISTANCE:
        return f"opposite cell faces only {width:.3g} Å apart (minimum {MIN_FACE_DISTANCE} Å)"
    return None


def too_close_pair(structure, cutoff: float = MIN_ATOM_DISTANCE) -> str | None:
    """The closest pair of sites nearer than ``cutoff`` (Å, periodic images included), said in words
    ("sites 0 and 3 are 0.412 Å apart"), or None when there is none."""
    centres, neighbours, _, distances = structure.get_neighbor_list(cutoff)
    if not len(distances):
        return None
    k = int(np.argmin(distances))
    return f"sites {int(centres[k])} and {int(neighbours[k])} are {distances[k]:.3f} Å apart"
