"""Crystals as torch-geometric graphs, and back.

One crystal becomes a :class:`torch_geometric.data.Data` with

==============  ===================  ==============================================
attribute        shape                meaning
==============  ===================  ==============================================
``atom_types``   (N,) long            atomic numbers Z
``frac_coords``  (N, 3) float         fractional coordinates in [0, 1)
``lattice``      (1, 3, 3) float      rows are lattice vectors, Å (batches stack to (B, 3, 3))
``dos``          (N, E) float         atom-level DOS, states/eV/atom on the data set's grid
``edge_index``   (2, N*N) long        all ordered pairs within the cell, self pairs included
                                      (a periodic atom sees its own images)
``num_atoms``    (1,) long            N (batches give atoms per crystal)
``id``           str                  record id
==============  ===================  ==============================================

Batches (``Batch.from_data_list``) follow torch-geometric's conventions:
``batch`` maps atoms to crystals and ``edge_index`` is offset per crystal.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from pymatgen.core import Lattice, Structure
from torch_geometric.data import Batch, Data

from crystaldos.data.records import CrystalDOS


def fully_connected_edges(num_atoms: int) -> torch.Tensor:
    """All ordered pairs (i, j) of a cell's atoms, i == j included, shape (2, N*N)."""
    index = torch.arange(num_atoms)
    return torch.stack([index.repeat_interleave(num_atoms), index.repeat(num_atoms)])


def structure_to_data(structure: Structure, dos: np.ndarray | None = None, record_id: str = "") -> Data:
    """Graph of one ordered structure (``dos`` optional, shape (N, E))."""
    if not structure.is_ordered:
        raise ValueError("graph conversion needs an ordered structure (one element per site)")
    n = len(structure)
    # Wrap after the cast: 0.99999999 in float64 rounds to exactly 1.0 in float32.
    frac = torch.remainder(torch.tensor(structure.frac_coords, dtype=torch.float32), 1.0)
    frac = torch.where(frac >= 1.0, frac - 1.0, frac)
    data = Data(
        atom_types=torch.tensor(structure.atomic_numbers, dtype=torch.long),
        frac_coords=frac,
        lattice=torch.tensor(structure.lattice.matrix, dtype=torch.float32).unsqueeze(0),
        edge_index=fully_connected_edges(n),
        num_atoms=torch.tensor([n]),
        num_nodes=n,
        id=record_id,
    )
    if dos is not None:
        dos = torch.as_tensor(np.asarray(dos), dtype=torch.float32)
        if dos.ndim != 2 or dos.shape[0] != n:
            raise ValueError(f"DOS must have shape (n_sites={n}, n_energies), got {tuple(dos.shape)}")
        data.dos = dos
    return data


def to_data(record: CrystalDOS) -> Data:
    """Graph of one :class:`CrystalDOS` record (with its DOS)."""
    return structure_to_data(record.structure, record.dos.values, record.id)


def collate(records: Sequence[CrystalDOS]) -> Batch:
    """One torch-geometric ``Batch`` of records."""
    return Batch.from_data_list([to_data(r) for r in records])


def data_to_structure(data: Data) -> Structure:
    """Inverse of :func:`structure_to_data` for one graph."""
    from pymatgen.core.periodic_table import Element

    species = [Element.from_Z(int(z)) for z in data.atom_types.tolist()]
    lattice = Lattice(data.lattice.reshape(3, 3).detach().cpu().double().numpy())
    return Structure(lattice, species, data.frac_coords.detach().cpu().double().numpy())


def batch_to_structures(batch: Batch) -> list[Structure]:
    """Every crystal of a batch as a pymatgen Structure, in batch order."""
    return [data_to_structure(batch.get_example(i)) for i in range(batch.num_graphs)]
