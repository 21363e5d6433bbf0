"""The structure-only lookup of benchmarks/forward_model/ceiling.py (the baseline the forward model is compared with):
its environment descriptor describes the crystal, not the cell chosen for it, and tells environments apart."""

import numpy as np
from pymatgen.core import Lattice, Structure

from benchmarks.forward_model.ceiling import environment_descriptors, nearest_rows


def silicon() -> Structure:
    return Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.431), ["Si"], [[0.0, 0.0, 0.0]])


def rocksalt(a: float, cation: str = "Na") -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), [cation, "Cl"], [[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]])


def test_every_cell_of_one_crystal_gives_each_site_the_same_environment():
    conventional = silicon()
    primitive = conventional.get_primitive_structure()
    cells = [primitive, conventional, primitive * (2, 1, 1)]
    assert [len(cell) for cell in cells] == [2, 8, 4]
    reference = environment_descriptors(primitive)[0]
    assert reference.sum() > 0  # four first neighbours at 2.35 Å, twelve second at 3.84 Å, ...
    for cell in cells:
        np.testing.assert_allclose(environment_descriptors(cell), np.tile(reference, (len(cell), 1)), atol=1e-5)


def test_the_environment_tells_neighbour_elements_and_bond_lengths_apart():
    references = np.array([environment_descriptors(rocksalt(a, cation).get_primitive_structure())[0]
                           for a, cation in [(5.64, "Na"), (6.29, "K"), (5.64, "K"), (5.36, "Na")]])
    # Na in NaCl compressed by 1 % in a: its nearest stored environment is NaCl at 5.64 Å, then the other NaCl.
    query = environment_descriptors(rocksalt(5.58).get_primitive_structure())[:1]
    assert nearest_rows(query, references, 1)[0, 0] == 0
    assert set(nearest_rows(query, references, 2)[0]) == {0, 3}
    # The Cl site's environment names its Na neighbours, so Cl in NaCl is not Cl in KCl at the same lattice constant.
    chlorine_nacl = environment_descriptors(rocksalt(5.64).get_primitive_structure())[1]
    chlorine_kcl = environment_descriptors(rocksalt(5.64, "K").get_primitive_structure())[1]
    assert np.abs(chlorine_nacl - chlorine_kcl).sum() > 1.0
