"""The DOS convention: grid, broadening, normalisation, metrics, pymatgen CompleteDos round trip."""

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.electronic_structure.core import Orbital, Spin
from pymatgen.electronic_structure.dos import CompleteDos, Dos

from crystaldos.dos import (
    DOSValidationError,
    DosGrid,
    broaden,
    from_complete_dos,
    mae,
    normalise,
    plot_dos,
    resample,
    site_dos,
    to_complete_dos,
    total_dos,
    validate_site_dos,
    wasserstein,
)


def test_default_grid_is_the_documented_convention():
    grid = DosGrid()
    assert (round(grid.e_min, 2), grid.e_max, grid.n_points, grid.sigma) == (-24.98, 10.0, 447, 0.2)
    e = grid.energies
    assert e.shape == (447,) and e[-1] == 10.0
    assert np.allclose(np.diff(e), grid.spacing) and grid.spacing == pytest.approx(20 / 255)
    # The format-1 grid's points (-10 ... +10 eV, 256) are the top 256 of today's: old labels compare point by point.
    np.testing.assert_allclose(e[-256:], DosGrid(-10.0, 10.0, 256).energies, atol=1e-12)
    assert DosGrid.from_attrs(grid.to_attrs()) == grid
    import crystaldos

    assert crystaldos.load_dataset().grid == grid  # the embedded data set's grid


@pytest.mark.parametrize("kwargs", [dict(e_min=1.0, e_max=-1.0), dict(n_points=1), dict(sigma=0.0)])
def test_bad_grid_is_rejected(kwargs):
    with pytest.raises(ValueError):
        DosGrid(**kwargs)


def test_gaussian_broadening_is_normalised_centred_and_sigma_wide():
    grid = DosGrid(n_points=2001)
    curve = broaden(np.array([1.3]), np.array([[2.0]]), grid)[0]  # two states at 1.3 eV
    e = grid.energies
    area = np.trapezoid(curve, e)
    mean = np.trapezoid(curve * e, e) / area
    std = np.sqrt(np.trapezoid(curve * (e - mean) ** 2, e) / area)
    assert area == pytest.approx(2.0, rel=1e-4)
    assert mean == pytest.approx(1.3, abs=1e-4)
    assert std == pytest.approx(grid.sigma, rel=1e-3)


def test_levels_far_outside_the_window_do_not_contribute():
    grid = DosGrid()
    assert np.allclose(broaden(np.array([-50.0, 60.0]), np.ones((1, 2)), grid), 0.0)


def _two_site_dos(grid=DosGrid()):
    values = broaden(np.array([-2.0, 1.0]), np.array([[1.0, 0.0], [0.5, 1.5]]), grid)
    return site_dos(values, ["Na", "Cl"], grid)


def test_site_dos_layout_and_total():
    dos = _two_site_dos()
    assert dos.dims == ("site", "energy")
    assert list(dos["element"].values) == ["Na", "Cl"]
    assert dos.attrs["grid_sigma"] == 0.2 and dos.attrs["units"] == "states/eV/atom"
    tot = total_dos(dos)
    assert tot.dims == ("energy",)
    np.testing.assert_allclose(tot.values, dos.values.sum(0), rtol=1e-6)
    assert float(tot.integrate("energy")) == pytest.approx(3.0, rel=1e-3)


def test_validation_names_the_problem():
    dos = _two_site_dos()
    assert validate_site_dos(dos, n_sites=2) == DosGrid()
    with pytest.raises(DOSValidationError, match="3"):
        validate_site_dos(dos, n_sites=3)
    with pytest.raises(DOSValidationError, match="dims"):
        validate_site_dos(dos.transpose("energy", "site"))
    bad = dos.copy()
    bad[1, 10] = np.nan
    with pytest.raises(DOSValidationError, match=r"NaN.*\[1\]"):
        validate_site_dos(bad)
    bad = dos.copy()
    bad[0, 3] = -1.0
    with pytest.raises(DOSValidationError, match="negative"):
        validate_site_dos(bad)
    with pytest.raises(DOSValidationError, match="does not match"):
        validate_site_dos(dos, grid=DosGrid(n_points=128))
    with pytest.raises(DOSValidationError, match="DataArray"):
        validate_site_dos(dos.values)
    with pytest.raises(DOSValidationError, match="shape"):
        site_dos(np.zeros((2, 10)), ["Na", "Cl"], DosGrid())


def test_resample_keeps_the_area():
    dos = _two_site_dos()
    fine = resample(dos, DosGrid(n_points=1024))
    assert fine.sizes["energy"] == 1024 and fine.attrs["grid_n_points"] == 1024
    np.testing.assert_allclose(fine.integrate("energy").values, dos.integrate("energy").values, rtol=1e-3)


def test_metrics_zero_for_identical_and_shift_measured_in_ev():
    grid = DosGrid(n_points=1001)
    a = site_dos(broaden(np.array([0.0]), np.ones((1, 1)), grid), ["Si"], grid)
    b = site_dos(broaden(np.array([0.5]), np.ones((1, 1)), grid), ["Si"], grid)
    assert float(mae(a, a).max()) == 0.0
    assert float(mae(a, b)[0]) > 0.01
    assert float(wasserstein(a, a)[0]) == pytest.approx(0.0, abs=1e-9)
    assert float(wasserstein(a, b)[0]) == pytest.approx(0.5, abs=1e-3)
    # Shape-only: scaling a curve does not change the normalised distance.
    assert float(wasserstein(a, 3 * b)[0]) == pytest.approx(0.5, abs=1e-3)
    assert float(normalise(3 * a).integrate("energy")[0]) == pytest.approx(1.0, rel=1e-6)


def _complete_dos(efermi: float) -> tuple[CompleteDos, Structure]:
    """A CompleteDos laid out as VASP/Materials Project give it: fine mesh, two spins, orbital channels."""
    structure = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    energies = np.linspace(-25, 15, 4001) + efermi
    peak = lambda e0, w: np.exp(-0.5 * ((energies - efermi - e0) / 0.05) ** 2) / (0.05 * np.sqrt(2 * np.pi)) * w  # noqa: E731
    pdoss = {
        structure[0]: {Orbital.s: {Spin.up: peak(3.0, 1.0), Spin.down: peak(3.0, 1.0)}},
        structure[1]: {Orbital.s: {Spin.up: peak(-2.0, 0.5), Spin.down: peak(-2.0, 0.5)},
                       Orbital.px: {Spin.up: peak(-1.0, 1.0), Spin.down: peak(-1.0, 1.0)}},
    }
    total = Dos(efermi, energies, {Spin.up: peak(3.0, 1.0) + peak(-2.0, 0.5) + peak(-1.0, 1.0),
                                   Spin.down: peak(3.0, 1.0) + peak(-2.0, 0.5) + peak(-1.0, 1.0)})
    return CompleteDos(structure, total, pdoss), structure


def test_from_complete_dos_shifts_by_efermi_sums_spins_and_orbitals():
    cdos, structure = _complete_dos(efermi=4.2)
    dos = from_complete_dos(cdos)
    assert dos.dims == ("site", "energy") and list(dos["element"].values) == ["Na", "Cl"]
    e = dos["energy"].values
    assert e[np.argmax(dos.values[0])] == pytest.approx(3.0, abs=0.1)  # relative to E_F, not absolute
    # Both spins summed: Na carries 2 states, Cl 2*0.5 + 2*1 = 3 states.
    np.testing.assert_allclose(dos.integrate("energy").values, [2.0, 3.0], rtol=2e-2)
    with pytest.raises(DOSValidationError, match="finer"):
        from_complete_dos(cdos, DosGrid(sigma=0.001))


def test_complete_dos_round_trip():
    cdos, structure = _complete_dos(efermi=-1.0)
    dos = from_complete_dos(cdos)
    back = from_complete_dos(to_complete_dos(dos, structure, efermi=2.5), smear=False)
    np.testing.assert_allclose(back.values, dos.values, atol=1e-5)


def test_plot_dos_draws_total_and_elements():
    import matplotlib

    matplotlib.use("Agg")
    ax = plot_dos(_two_site_dos())
    labels = [line.get_label() for line in ax.get_lines()]
    assert "total" in labels and "Na" in labels and "Cl" in labels


def test_wasserstein_names_a_curve_with_negative_values():
    grid = DosGrid(n_points=201)
    a = site_dos(broaden(np.array([0.0, 1.0]), np.ones((1, 2)), grid), ["Si"], grid)
    dipped = a.copy(data=a.values - 0.02 * (np.abs(a.energy.values + 5) < 0.2))  # a dip where there are no states
    with pytest.raises(ValueError, match=r"second DOS has negative values \(lowest -0.02 states/eV at site=0, energy="):
        wasserstein(a, dipped)


def test_identical_sites_group_equal_curves_only():
    from crystaldos.dos import identical_sites

    e = np.linspace(-5, 5, 64)
    a, b = np.exp(-e**2), np.exp(-(e - 1) ** 2)
    values = np.stack([a, b, a + 1e-5, b, 0.9 * a, a])
    assert identical_sites(values).tolist() == [0, 1, 0, 1, 4, 0]
    assert identical_sites(values, rtol=0.2).tolist() == [0, 1, 0, 1, 0, 0]
    assert identical_sites(values[:1]).tolist() == [0]
