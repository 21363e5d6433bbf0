"""The CHGNet relaxer: it finds the potential's minimum, refuses relaxations by cause, and takes what users hold."""

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from crystaldos.relax import ImplausibleCellError, NotConvergedError, Relaxer, StructureChangedError, VolumeChangeError


def _silicon(a: float = 5.43) -> Structure:
    return Structure.from_spacegroup("Fd-3m", Lattice.cubic(a), ["Si"], [[0, 0, 0]]).get_primitive_structure()


@pytest.fixture(scope="module")
def silicon_minimum():
    """Si relaxed from its experimental cell: the potential's own minimum."""
    return Relaxer(fmax=0.01).relax_checked(_silicon())


def test_a_strained_crystal_relaxes_back_to_the_potentials_minimum(silicon_minimum):
    strained = _silicon()
    strained.scale_lattice(strained.volume * 1.12)  # 12 % too large, as the volume guesses of substitutions are
    strained.perturb(0.05, min_distance=0.02, seed=0)  # seeded: the same test every run
    result = Relaxer().relax_checked(strained)
    assert result.converged and result.max_force <= 0.05 + 1e-9
    assert abs(result.structure.volume / silicon_minimum.structure.volume - 1) < 0.02
    assert result.volume_change < -0.05  # it did shrink back
    assert result.model.startswith("CHGNet ") and result.steps > 0
    # The relaxed crystal keeps its sites in order, inside the cell, without calculator leftovers.
    assert [s.specie.symbol for s in result.structure] == ["Si", "Si"]
    assert np.all((result.structure.frac_coords >= 0) & (result.structure.frac_coords < 1))
    assert not result.structure.site_properties
    # PBE-like: Si at 5.43 Å moves by a few per cent at most.
    assert abs(silicon_minimum.volume_change) < 0.04
    assert np.isfinite(result.energy_per_atom) and -6 < result.energy_per_atom < -4


@pytest.mark.parametrize("optimizer", ["BFGS", "LBFGS"])
def test_quasi_newton_optimisers_find_the_same_minimum(silicon_minimum, optimizer):
    strained = _silicon()
    strained.scale_lattice(strained.volume * 1.12)
    strained.perturb(0.05, min_distance=0.02, seed=0)  # seeded: the same test every run
    result = Relaxer(optimizer=optimizer).relax_checked(strained)
    assert result.converged and result.max_force <= 0.05 + 1e-9
    assert abs(result.structure.volume / silicon_minimum.structure.volume - 1) < 0.02
    assert Relaxer(optimizer=optimizer).describe()["relax_optimizer"] == optimizer


def test_an_unknown_optimiser_is_refused_by_name():
    with pytest.raises(ValueError, match="optimizer must be one of"):
        Relaxer(optimizer="SGD")


def test_relaxations_are_refused_by_cause():
    strained = _silicon()
    strained.scale_lattice(strained.volume * 1.3)
    with pytest.raises(NotConvergedError, match="after 2 steps"):
        Relaxer(max_steps=2).relax_checked(strained)
    # Beyond twice the bound the relaxation is stopped at once (a cell running away would exhaust the memory).
    with pytest.raises(VolumeChangeError, match=r"the cell ran away \(volume x 0\.\d+"):
        Relaxer(max_volume_change=0.05).relax_checked(strained)
    with pytest.raises(VolumeChangeError, match="bound ±20 %"):
        Relaxer(max_volume_change=0.2).relax_checked(strained)
    # A relaxed crystal that is another crystal than its start: rocksalt NaCl "relaxed" into CsCl's structure.
    result = Relaxer().relax(Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3]))
    result.structure = Structure(Lattice.cubic(3.3), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3])
    result.volume_change = result.structure.volume / result.initial.volume - 1
    with pytest.raises(StructureChangedError, match="no longer matches"):
        Relaxer(max_volume_change=1.0).check(result)
    # A cell no potential should see (0.1 Å³ per atom) is refused before the potential is called.
    with pytest.raises(ImplausibleCellError, match="volume per atom 0.125"):
        Relaxer().relax_checked(Structure(Lattice.cubic(0.5), ["H"], [[0, 0, 0]]))
    assert {NotConvergedError.cause, VolumeChangeError.cause, StructureChangedError.cause} == {
        "not converged", "volume change", "changed structure"}


def test_a_cell_shrinking_below_the_collapse_bound_is_stopped_one_starting_below_it_is_not(silicon_minimum):
    minimum = silicon_minimum.structure.volume / 2  # Å³ per atom
    swollen = _silicon()
    swollen.scale_lattice(silicon_minimum.structure.volume * 1.3)  # it shrinks by a quarter on its way back
    with pytest.raises(VolumeChangeError, match="the cell ran away"):
        Relaxer(min_volume_per_atom=1.15 * minimum, max_volume_change=None).relax_checked(swollen)
    assert Relaxer(max_volume_change=None).relax_checked(swollen).converged  # the default floor is 2 Å³/atom
    squeezed = _silicon()
    squeezed.scale_lattice(silicon_minimum.structure.volume * 0.8)  # starts below the bound and expands
    result = Relaxer(min_volume_per_atom=1.15 * minimum, max_volume_change=None).relax_checked(squeezed)
    assert result.converged and result.volume_change > 0.15


def test_the_relaxer_takes_ase_atoms_and_cif_files(tmp_path):
    from ase.build import bulk
    from pymatgen.io.cif import CifWriter

    from_atoms = Relaxer().relax(bulk("Cu", "fcc", a=3.7))
    assert from_atoms.structure.composition.reduced_formula == "Cu" and abs(from_atoms.volume_change) < 0.1
    path = tmp_path / "si.cif"
    CifWriter(_silicon()).write_file(path)
    assert Relaxer().relax(str(path)).structure.composition.reduced_formula == "Si"
    with pytest.raises(TypeError, match="pymatgen Structure, an ASE Atoms"):
        Relaxer().relax(42)


def test_hull_energies_from_relaxed_energies_and_elemental_references(tmp_path):
    """NaCl lies on the hull of Na, Cl and itself; a polymorph 0.2 eV/atom higher lies 0.2 above it. The references
    are the lowest relaxed simple crystals (Cl: its molecule in a box) and are cached."""
    from crystaldos.data.stability import elemental_references, energies_above_hull

    cache = tmp_path / "references.json"
    references = elemental_references(["Na", "Cl"], Relaxer(), cache, progress=False, trials=("bcc", "dimer"))
    assert references["Cl"]["from"] == "dimer" and references["Na"]["from"] == "bcc"
    assert cache.exists() and elemental_references(["Na", "Cl"], None, cache, progress=False) == references  # no relaxer needed
    nacl = Relaxer().relax(Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3]))
    e = nacl.energy_per_atom
    assert e < (references["Na"]["energy_per_atom"] + references["Cl"]["energy_per_atom"]) / 2 - 1.0  # strongly bound
    hull = energies_above_hull(["NaCl", "NaCl", "Na"], [e, e + 0.2, references["Na"]["energy_per_atom"]], references)
    np.testing.assert_allclose(hull, [0.0, 0.2, 0.0], atol=1e-6)
