"""Edits of a target DOS (crystaldos.dos_edit): each does what its name says on real atom-level DOS, conserves the
states it only moves, and refuses what makes no sense."""

import numpy as np
import pytest
import xarray as xr

import crystaldos
from crystaldos.dos_edit import DosEdit, change_gap, scale_peak, shift


@pytest.fixture(scope="module")
def item():
    return crystaldos.load_dataset().split("test")[0]


ENERGIES = np.linspace(-10, 10, 801)


def gaussian_dos(centres, energies=ENERGIES, sigma=0.3) -> xr.DataArray:
    values = np.stack([np.exp(-0.5 * ((energies - c) / sigma) ** 2) for c in centres])
    return xr.DataArray(values, dims=("site", "energy"), coords={"energy": energies})


def states(dos: xr.DataArray) -> np.ndarray:
    return np.trapezoid(dos.values, dos["energy"].values, axis=1)


def test_shift_moves_every_site_and_keeps_its_states():
    dos = gaussian_dos([-2.0, 1.0])
    moved = shift(dos, 1.5)
    peaks = dos["energy"].values[moved.values.argmax(axis=1)]
    np.testing.assert_allclose(peaks, [-0.5, 2.5], atol=0.03)
    np.testing.assert_allclose(states(moved), states(dos), rtol=1e-3)


def test_opening_a_gap_empties_it_and_closing_it_again_restores_the_dos():
    flat = xr.DataArray(np.ones((2, 801)), dims=("site", "energy"), coords={"energy": np.linspace(-10, 10, 801)})
    opened = change_gap(flat, 1.0, centre=0.0)
    energies = flat["energy"].values
    inside = np.abs(energies) < 0.45
    assert np.all(opened.values[:, inside] == 0.0)
    assert np.all(opened.values[:, (np.abs(energies) > 0.55) & (np.abs(energies) < 9.4)] == pytest.approx(1.0))
    gapped = gaussian_dos([-1.5, 1.5])  # a 'valence' and a 'conduction' peak
    closed = change_gap(gapped, -1.0, centre=0.0)
    peaks = gapped["energy"].values[closed.values.argmax(axis=1)]
    np.testing.assert_allclose(peaks, [-1.0, 1.0], atol=0.03)
    np.testing.assert_allclose(change_gap(change_gap(gapped, 1.0), -1.0).values, gapped.values, atol=1e-6)


def test_scaling_a_peak_changes_it_and_leaves_far_energies_alone():
    dos = gaussian_dos([-3.0, 2.0])
    scaled = scale_peak(dos, 2.0, centre=-3.0, width=1.0)
    assert scaled.values[0].max() == pytest.approx(2 * dos.values[0].max(), rel=1e-3)
    np.testing.assert_allclose(scaled.values[1], dos.values[1], atol=1e-9)  # the site whose peak is at +2 eV


def test_an_edit_of_a_real_target_keeps_its_coordinates_and_records_itself(item):
    edit = DosEdit(shift=0.5, gap=0.4, gap_centre=0.0, peak_factor=1.5, peak_centre=-4.0, peak_width=2.0)
    edited = edit.apply(item.dos)
    assert edited.dims == item.dos.dims and edited.shape == item.dos.shape
    assert (edited["element"].values == item.dos["element"].values).all()
    assert edited.attrs["edit"] == repr(edit) and not np.allclose(edited.values, item.dos.values)
    assert DosEdit().apply(item.dos).equals(item.dos)
    # The sampler takes an edited DOS as a target as it is.
    from crystaldos.dos import DosGrid
    from crystaldos.dos_inputs import as_site_dos

    as_site_dos(edited, DosGrid.from_attrs(item.dos.attrs), item.structure)


@pytest.mark.parametrize("bad, message", [
    ({"peak_factor": -1.0}, "peak_factor must be >= 0"),
    ({"peak_width": 0.0}, "peak_width must be > 0"),
    ({"shift": float("nan")}, "shift must be a finite number"),
    ({"gap": "wide"}, "gap must be a finite number"),
])
def test_bad_edits_are_refused_by_name(bad, message):
    with pytest.raises(ValueError, match=message):
        DosEdit(**bad)


def test_an_edit_that_empties_the_window_is_refused(item):
    with pytest.raises(ValueError, match="leaves no states in the energy window"):
        DosEdit(shift=100.0).apply(item.dos)
    with pytest.raises(ValueError, match="dims"):
        DosEdit(shift=1.0).apply(item.dos.values)
