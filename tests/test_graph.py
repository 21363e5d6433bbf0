"""Conversion of records to torch-geometric Data/Batch and back."""

import numpy as np
import pytest
import torch
from pymatgen.analysis.structure_matcher import StructureMatcher
from torch_geometric.data import Batch

import crystaldos
from crystaldos.data import batch_to_structures, collate, data_to_structure, structure_to_data, to_data


@pytest.fixture(scope="module")
def records():
    return crystaldos.load_dataset().split("train")[:5].records


def test_data_shapes(records):
    record = records[0]
    data = to_data(record)
    n, e = len(record.structure), record.dos.sizes["energy"]
    assert data.num_nodes == n
    assert data.atom_types.shape == (n,) and data.atom_types.dtype == torch.long
    assert data.atom_types.tolist() == list(record.structure.atomic_numbers)
    assert data.frac_coords.shape == (n, 3) and float(data.frac_coords.min()) >= 0 and float(data.frac_coords.max()) < 1
    assert data.lattice.shape == (1, 3, 3)
    assert data.dos.shape == (n, e)
    assert data.edge_index.shape == (2, n * n)
    assert data.id == record.id


def test_batch_offsets_and_round_trip(records):
    batch = collate(records)
    assert isinstance(batch, Batch) and batch.num_graphs == len(records)
    n = [len(r.structure) for r in records]
    assert batch.num_atoms.tolist() == n
    assert batch.lattice.shape == (len(records), 3, 3)
    assert batch.dos.shape == (sum(n), records[0].dos.sizes["energy"])
    assert torch.bincount(batch.batch).tolist() == n
    # Edges never cross crystals.
    src, dst = batch.edge_index
    assert torch.equal(batch.batch[src], batch.batch[dst])
    matcher = StructureMatcher()
    for original, back in zip(records, batch_to_structures(batch)):
        assert matcher.fit(original.structure, back)
        np.testing.assert_allclose(back.lattice.matrix, original.structure.lattice.matrix, atol=1e-4)


def test_bad_input_is_rejected(records):
    structure = records[0].structure
    with pytest.raises(ValueError, match="shape"):
        structure_to_data(structure, np.zeros((len(structure) + 1, records[0].dos.sizes["energy"])))
    disordered = structure.copy()
    disordered.replace(0, {"Cu": 0.5, "Au": 0.5})
    with pytest.raises(ValueError, match="ordered"):
        structure_to_data(disordered)
    assert data_to_structure(structure_to_data(structure)).composition == structure.composition
