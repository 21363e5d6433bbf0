"""The converged (k-mesh) labeller: its two-centre matrices reproduce tblite's own periodic overlap,
the DOS does not depend on the cell that describes the crystal, metals and insulators come out right,
and old data sets keep the labeller they were built with."""

import dataclasses

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from crystaldos.dos import element_dos
from crystaldos.labellers import XTBLabeller
from crystaldos.labellers import bloch
from crystaldos.labellers.xtb import BOHR_PER_ANGSTROM, orbitals_per_atom

FAST = XTBLabeller(method="GFN2-xTB", sampling="kmesh", k_density=20.0)
CONVERGED = XTBLabeller(method="GFN2-xTB", sampling="kmesh", k_density=40.0)


def silicon_conventional() -> Structure:
    return Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.431), ["Si"], [[0, 0, 0]])


def test_dimer_overlap_blocks_reproduce_tblites_periodic_overlap():
    """S(k) from dimer blocks at the k-points of a 3x3x3 supercell has the eigenvalues of tblite's
    Gamma-point overlap of that supercell (which tblite builds by its own lattice sums)."""
    from tblite.interface import Calculator, Result

    primitive = silicon_conventional().get_primitive_structure()
    orbitals = np.array([orbitals_per_atom(14, "GFN2-xTB")] * 2)
    n_orb = int(orbitals.sum())
    matrices = bloch.two_centre_matrices(primitive, "GFN2-xTB", -np.ones(n_orb), np.zeros(n_orb), orbitals, 1e-6)
    axis = np.arange(3) / 3
    kpoints = np.array(np.meshgrid(axis, axis, axis, indexing="ij")).reshape(3, -1).T
    _, sk = matrices.at(kpoints)
    ours = np.sort(np.linalg.eigvalsh(sk).ravel())

    supercell = primitive * (3, 3, 3)
    calc = Calculator(
        "GFN2-xTB",
        np.array(supercell.atomic_numbers),
        supercell.cart_coords * BOHR_PER_ANGSTROM,
        lattice=supercell.lattice.matrix * BOHR_PER_ANGSTROM,
        periodic=np.array([True, True, True]),
    )
    calc.set("verbosity", 0)
    calc.set("save-integrals", 1)
    calc.set("max-iter", 0)
    result = Result()
    with pytest.raises(Exception, match="converged"):  # integrals only
        calc.singlepoint(result)
    theirs = np.sort(np.linalg.eigvalsh(result.get("overlap-matrix")))
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=2e-3)


@pytest.fixture(scope="module")
def silicon_dos():
    conventional = silicon_conventional()
    return CONVERGED.label(conventional.get_primitive_structure()), CONVERGED.label(conventional)


def test_silicon_dos_does_not_depend_on_the_cell(silicon_dos):
    primitive, conventional = silicon_dos
    assert primitive.attrs["sampling"] == "kmesh" and len(primitive.attrs["k_mesh"]) == 3
    mae = float(np.abs(element_dos(primitive).sel(element="Si") - element_dos(conventional).sel(element="Si")).mean())
    assert mae < 0.05, f"primitive vs conventional cell differ by MAE {mae:.3f} states/eV/atom"
    # The Gamma-point labeller differs far more between the same two cells.
    gamma = XTBLabeller(method="GFN2-xTB", sampling="gamma")
    old = np.abs(gamma.label(silicon_conventional().get_primitive_structure()).values.mean(0) - gamma.label(silicon_conventional()).values.mean(0)).mean()
    assert old > 2 * mae


def test_equivalent_silicon_atoms_get_one_dos(silicon_dos):
    """The two Si of the primitive cell (and the eight of the conventional one) are equivalent: one DOS, and the
    spread the labeller averaged away stays below the label noise."""
    for dos in silicon_dos:
        assert 0 <= dos.attrs["equivalent_site_spread"] < 0.03
        assert np.all(dos.values == dos.values[0])


def test_silicon_is_an_insulator_with_an_empty_gap(silicon_dos):
    primitive, _ = silicon_dos
    assert primitive.attrs["band_gap_eV"] > 0.5
    # 4 valence electrons per Si atom; the bottom of the s band (near -12 eV) lies outside the window.
    e = primitive["energy"].values
    occupied = np.trapezoid(primitive.values.mean(axis=0)[e < 0], e[e < 0])
    assert 2.5 < occupied < 4.2


def test_aluminium_is_a_metal_and_its_dos_converges_with_the_mesh():
    aluminium = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.05), ["Al"], [[0, 0, 0]]).get_primitive_structure()
    coarse = FAST.label(aluminium)
    assert coarse.attrs["band_gap_eV"] == 0.0
    assert float(np.interp(0.0, coarse["energy"].values, coarse.values[0])) > 0.1
    fine = dataclasses.replace(FAST, k_density=40.0).label(aluminium)
    # Measured: 0.11 between densities 20 and 40, 0.03 between 40 and 80 (benchmarks/labeller/panel.py).
    assert np.abs(coarse.values - fine.values).mean() < 0.15


def test_helpers_mesh_and_pair_order():
    primitive = silicon_conventional().get_primitive_structure()
    mesh, kpoints = bloch.monkhorst_pack(primitive, 20.0)
    assert kpoints.shape == (int(np.prod(mesh)), 3) and np.all(kpoints[0] == 0)
    assert np.all(mesh == np.ceil(20.0 * np.array(primitive.lattice.reciprocal_lattice_crystallographic.abc)))
    signs = bloch._lexicographically_positive(np.array([[0, 0, 1], [0, 0, -1], [1, -5, 0], [-1, 5, 0], [0, 0, 0]]))
    assert signs.tolist() == [True, False, True, False, False]


def test_old_data_sets_keep_the_gamma_point_labeller():
    old_attrs = {"labeller_method": "GFN1-xTB", "labeller_min_length": 8.0} | XTBLabeller().grid.to_attrs()
    labeller = XTBLabeller.for_dataset(old_attrs)
    assert labeller.sampling == "gamma" and labeller.retry_scf is False
    new = XTBLabeller(method="GFN2-xTB", sampling="kmesh", k_density=30.0)
    assert XTBLabeller.from_attrs(new.describe()) == new
    with pytest.raises(ValueError, match="sampling"):
        XTBLabeller(sampling="tetrahedra")


def test_textbook_crystals_that_format_1_could_not_label_now_label_and_mgo_has_a_gap():
    """CsCl raised SCFConvergenceError and InP IllConditionedBasisError with the Gamma-point GFN1-xTB
    labeller; MgO came out metallic. (InP's small gap is GFN2-xTB's own: docs/research/labeller.md.)"""
    from crystaldos.labellers.panel import physics_panel

    panel = physics_panel()
    for name in ("CsCl", "InP"):
        dos = FAST.label(panel[name][0].get_primitive_structure())
        assert np.isfinite(dos.values).all() and dos.values.sum() > 0, name
    mgo = FAST.label(panel["MgO"][0].get_primitive_structure())
    assert mgo.attrs["band_gap_eV"] >= 0.5
    # No eigenvalue in the gap: the DOS at E_F is only the tails of the broadened band edges.
    assert float(np.interp(0.0, mgo["energy"].values, mgo.values.mean(axis=0))) < 0.05


def test_labels_from_the_dropped_10000_K_retry_are_refused():
    """The retries are the configured temperature and 5000 K; a stored label whose SCF ran at 10000 K (the retry
    dropped because it moves labels by 2-10x the label noise) is refused by name, others pass."""
    from crystaldos.labellers import SCFConvergenceError

    labeller = XTBLabeller()
    assert [attempt[0] for attempt in labeller.scf_attempts()] == [3000.0, 5000.0]
    for fine in ({"scf_temperature_K": 3000.0}, {"scf_temperature_K": 5000.0}, {}, {"scf_temperature_K": float("nan")}):
        labeller.check_scf_settings(fine)
    with pytest.raises(SCFConvergenceError, match="10000 K"):
        labeller.check_scf_settings({"scf_temperature_K": 10000.0})
    assert XTBLabeller(retry_scf=False).scf_attempts() == [(3000.0, 0.4, 8.0, 250)]


def test_with_multipole_blocks_the_bloch_hamiltonian_is_tblites_at_the_supercell_k_points():
    """At the k-points that fold onto the SCF supercell's Gamma point, H(k) must have tblite's own supercell
    spectrum. Hexagonal BN (D3h sites: GFN2's quadrupole terms do not vanish): without the multipole blocks the
    spectrum is off, with them it is tblite's."""
    from crystaldos.labellers.xtb import EV_PER_HARTREE

    bn = Structure(Lattice.hexagonal(2.504, 6.66), ["B", "B", "N", "N"],
                   [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75], [2 / 3, 1 / 3, 0.25], [1 / 3, 2 / 3, 0.75]])
    labeller = XTBLabeller(method="GFN2-xTB", min_length=5.0, multipole_blocks=True)
    scf = labeller._converged_scf(bn)
    potential, self_energy, _, residual = scf.home_cell_potentials(bn, labeller.method, labeller.overlap_tolerance)
    assert residual * EV_PER_HARTREE > 0.01  # the multipole terms are there
    orbitals = np.array([orbitals_per_atom(int(z), "GFN2-xTB") for z in bn.atomic_numbers])
    two_centre = bloch.two_centre_matrices(bn, "GFN2-xTB", self_energy, potential, orbitals)
    kpoints = bloch.commensurate_kpoints(scf.matrix)
    assert len(kpoints) == round(abs(np.linalg.det(scf.matrix)))
    theirs = np.sort(scf.result.get("orbital-energies") * EV_PER_HARTREE)
    # The occupied states and the first 3 eV above them (the two-centre H0 is good to ~0.02 eV higher up, in GFN1 too).
    window = theirs < theirs[int(scf.result.get("orbital-occupations").sum() / 2)] + 3.0

    def spectrum_error(matrices) -> float:
        ours = np.sort(bloch.solve(*matrices.at(kpoints), labeller.overlap_threshold)[0].ravel())
        return float(np.abs(ours - theirs)[window].max())

    # Measured: 0.0006 eV with the blocks, 0.050 eV without.
    assert spectrum_error(bloch.with_blocks(two_centre, scf.residual_blocks(bn, "GFN2-xTB"))) < 5e-3
    assert spectrum_error(two_centre) > 2e-2
    # The label itself: equivalent sites agree, and a doubled cell (another primitive cell and SCF supercell) gives
    # the same DOS within the label noise.
    dos = labeller.label(bn)
    doubled = bn * (1, 1, 2)
    assert dos.attrs["equivalent_site_spread"] < 0.03
    assert [site.specie.symbol for site in doubled][::2] == [site.specie.symbol for site in bn]
    assert np.abs(labeller.label(doubled).values[::2] - dos.values).mean() < 0.03  # the label noise
