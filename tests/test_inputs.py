"""What users hold goes in: ASE Atoms, crystal files and pymatgen/VASP CompleteDos; a DOS on another grid or in
other units is resampled, refused or warned about, never used silently."""

import warnings

import numpy as np
import pytest
import xarray as xr
from pymatgen.core import Lattice, Structure
from pymatgen.electronic_structure.core import Spin
from pymatgen.electronic_structure.dos import CompleteDos, Dos

import crystaldos
from crystaldos import Sampler
from crystaldos.dos import DOSValidationError, DosGrid, from_complete_dos
from crystaldos.dos_inputs import TRAINED_SITE_MAX, as_site_dos

SAMPLE = dict(t_start=10, steps=2, progress=False)


@pytest.fixture(scope="module")
def sampler():
    return Sampler.from_pretrained(device="cpu")


@pytest.fixture(scope="module")
def item():
    return crystaldos.load_dataset().split("test")[0]


def _complete_dos(structure: Structure, projections: bool = True) -> CompleteDos:
    """A CompleteDos as VASP writes it: an energy mesh in absolute eV with E_F = 5 eV, a Gaussian band on every site."""
    energies = np.linspace(-30.0, 20.0, 2001)
    pdos = {}
    for i, site in enumerate(structure):
        centre = 5.0 - 2.0 - 0.5 * i
        density = 2.0 * np.exp(-0.5 * ((energies - centre) / 0.8) ** 2)
        pdos[site] = {"s": {Spin.up: density / 2, Spin.down: density / 2}}  # pymatgen's orbital keys are Orbital objects
    from pymatgen.electronic_structure.core import Orbital

    pdos = {site: {Orbital.s: d["s"]} for site, d in pdos.items()} if projections else {}
    total = Dos(5.0, energies, {Spin.up: np.ones_like(energies), Spin.down: np.ones_like(energies)})
    return CompleteDos(structure, total, pdos)


def test_crystals_come_as_ase_atoms_or_files_and_results_go_back_as_atoms(sampler, item, tmp_path):
    from ase import Atoms
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.io.cif import CifWriter

    def same_sample(a, b):  # the same crystal, seed and DOS give the same sample
        return a.composition == b.composition and np.allclose(a.lattice.matrix, b.lattice.matrix, atol=1e-6)

    reference = sampler.reconstruct(item.structure, item.dos, **SAMPLE)[0]
    from_atoms = sampler.reconstruct(AseAtomsAdaptor.get_atoms(item.structure), item.dos, **SAMPLE)[0]
    assert same_sample(from_atoms.structure, reference.structure)
    path = tmp_path / "target.cif"
    CifWriter(item.structure).write_file(path)
    item.structure.to(filename=str(tmp_path / "POSCAR"))
    for crystal_file in (str(path), tmp_path / "POSCAR"):  # a file: as pymatgen reads it (a CIF re-orients the cell)
        from_file = sampler.reconstruct(crystal_file, item.dos, **SAMPLE)[0]
        read = sampler.reconstruct(Structure.from_file(crystal_file), item.dos, **SAMPLE)[0]
        assert same_sample(from_file.structure, read.structure)
    atoms = AseAtomsAdaptor.get_atoms(item.structure)
    assert isinstance(from_atoms.atoms, Atoms) and len(from_atoms.atoms) == len(item.structure)
    two = sampler.reconstruct([atoms, str(path)], [item.dos, item.dos], **SAMPLE)
    assert len(two) == 2
    with pytest.raises(TypeError, match=r"pymatgen Structure, an ASE Atoms object, or the path.*got builtins.dict"):
        sampler.reconstruct({"lattice": 1}, item.dos, **SAMPLE)
    with pytest.raises(FileNotFoundError, match="no crystal file at 'Si.cif'"):
        sampler.reconstruct("Si.cif", item.dos, **SAMPLE)
    # The labeller takes them too.
    from crystaldos.labellers import XTBLabeller

    si = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]]).get_primitive_structure()
    labeller = XTBLabeller(grid=DosGrid(n_points=64))
    np.testing.assert_allclose(labeller.label(AseAtomsAdaptor.get_atoms(si)).values, labeller.label(si).values, atol=1e-6)


def test_a_dos_on_another_grid_is_resampled_when_it_covers_the_models_and_refused_when_not(sampler, item):
    grid = sampler.grid
    shifted = item.dos.assign_coords(energy=item.dos["energy"].values + 3.0)  # same length, attributes unchanged
    with pytest.raises(DOSValidationError, match="covers -21.98 ... 13.00 eV but the model needs -24.98 ... 10.00 eV"):
        sampler.reconstruct(item.structure, shifted, **SAMPLE)
    # A wider, finer window (as a user's own calculation would give): resampled, with a warning that says so.
    wide_grid = DosGrid(-30.0, 15.0, 901, grid.sigma)
    wide = from_complete_dos(_complete_dos(item.structure), wide_grid)
    with pytest.warns(UserWarning, match="resampled onto it"):
        results = sampler.reconstruct(item.structure, wide, **SAMPLE)
    direct = from_complete_dos(_complete_dos(item.structure), grid)
    np.testing.assert_allclose(results[0].dos_target.values, direct.values, atol=0.02 * float(direct.max()))
    # On the model's grid: no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        as_site_dos(item.dos, grid)
    # A plain array is read as on the model's grid, and must have its length.
    with pytest.raises(DOSValidationError, match="must be on the model's grid, 447 energies"):
        as_site_dos(np.ones((2, 256)), grid)


def test_a_dos_in_other_units_gets_a_warning_naming_the_expected_units(sampler, item):
    with pytest.warns(UserWarning, match="states/eV per atom, both spins"):
        sampler.reconstruct(item.structure, item.dos * 1e6, **SAMPLE)
    assert float(item.dos.max()) < TRAINED_SITE_MAX  # the data set's own DOS is in range
    with pytest.warns(UserWarning, match="normalised to unit area"):
        as_site_dos(item.dos / float(item.dos.sum()), sampler.grid)


def test_a_complete_dos_is_taken_as_the_target_with_its_site_projections(sampler, item):
    cdos = _complete_dos(item.structure)
    results = sampler.reconstruct(item.structure, cdos, **SAMPLE)
    np.testing.assert_allclose(results[0].dos_target.values, from_complete_dos(cdos, sampler.grid).values, atol=1e-6)
    designed = sampler.generate(len(item.structure), cdos, steps=2, progress=False)
    assert len(designed[0].structure) == len(item.structure)
    with pytest.raises(DOSValidationError, match="no site projections"):
        sampler.reconstruct(item.structure, _complete_dos(item.structure, projections=False), **SAMPLE)
    assert isinstance(as_site_dos(cdos, sampler.grid), xr.DataArray)
