"""A target DOS as users hold it, put on the model's energy grid and checked.

Taken: an xarray DOS (dims ``site``, ``energy``; its ``energy`` coordinate is read as eV relative to E_F
and decides where its values lie, whatever its attributes say), a plain array of shape
(n_sites, n_energies) (read as already on the model's grid), or a pymatgen ``CompleteDos``
(``Vasprun(...).complete_dos``, ``MPRester().get_dos_by_material_id(...)``; converted with
:func:`crystaldos.dos.from_complete_dos`, site projections required).
"""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from crystaldos.dos import DOSValidationError, DosGrid, from_complete_dos, resample, site_dos, validate_site_dos

#: The embedded training split's largest per-site value (states/eV/atom) and per-site integral over the grid
#: (states/atom, both spins), on the equilibrium set: a target beyond them by UNITS_MARGIN is very probably in other units.
#: ``v = np.concatenate([i.dos.values for i in load_dataset().split("train")]); v.max(), v.sum(1).max() * spacing``
TRAINED_SITE_MAX = 19.8
TRAINED_SITE_INTEGRAL = 17.7
#: The smallest largest-site integral a target may have: 99 % of the training sites hold more (0.78 states/atom).
TRAINED_SITE_INTEGRAL_P1 = 0.78
UNITS_MARGIN = 1.5
UNITS = "states/eV per atom, both spins summed, energies in eV relative to the Fermi level"


def is_complete_dos(obj) -> bool:
    from pymatgen.electronic_structure.dos import CompleteDos

    return isinstance(obj, CompleteDos)


def as_site_dos(dos, grid: DosGrid, structure=None, n_sites: int | None = None) -> xr.DataArray:
    """``dos`` as an atom-level DOS on ``grid`` (dims site, energy), checked.

    Args:
        dos: xarray DOS, array-like (n_sites, n_energies) on ``grid``, or a pymatgen ``CompleteDos``.
        grid: the model's grid.
        structure: site order for a ``CompleteDos`` (default its own structure).
        n_sites: the number of sites the DOS must have (None: any).

    Raises:
        DOSValidationError: an xarray DOS whose energies do not cover ``grid``; a ``CompleteDos`` without site
            projections; a wrong shape or site count, NaN or negative values.

    Warns:
        UserWarning: the DOS was resampled onto ``grid``; or its values lie far outside the training data's
        range (another unit?).
    """
    import torch

    if is_complete_dos(dos):
        if not dos.pdos:
            raise DOSValidationError("the CompleteDos has no site projections (pdos is empty): an atom-level DOS needs the "
                                     "DOS projected on every site (VASP: LORBIT >= 10; Materials Project DOS have them)")
        out = from_complete_dos(dos, grid, structure=structure)
    elif isinstance(dos, xr.DataArray):
        out = _onto_grid(dos, grid)
    else:
        values = np.asarray(dos.detach().cpu() if torch.is_tensor(dos) else dos, dtype=np.float32)
        if values.ndim != 2:
            raise DOSValidationError(f"DOS must be 2-D (n_sites, n_energies), got shape {values.shape}")
        if values.shape[1] != int(grid.n_points):
            raise DOSValidationError(
                f"a DOS given as an array must be on the model's grid, {int(grid.n_points)} energies from {grid.e_min:.2f} to "
                f"{grid.e_max:.2f} eV; got {values.shape[1]} energies (give an xarray DOS with its 'energy' coordinate to "
                "have it resampled)")
        out = site_dos(values, ["X"] * values.shape[0], grid)
    validate_site_dos(out, n_sites, grid)
    warn_if_other_units(out)
    return out


def _onto_grid(dos: xr.DataArray, grid: DosGrid) -> xr.DataArray:
    """An xarray DOS on ``grid``: as it is when its energies are the grid's, else resampled (with a warning) when
    they cover it, else refused."""
    if tuple(dos.dims) != ("site", "energy"):
        raise DOSValidationError(f"atom-level DOS must have dims ('site', 'energy'), got {tuple(dos.dims)}")
    if "energy" not in dos.coords:
        return dos  # no coordinate: its grid attributes must be the model's (as_site_dos checks them)
    energies = np.asarray(dos["energy"].values, dtype=float)
    if energies.size == int(grid.n_points) and np.allclose(energies, grid.energies, atol=1e-3 * grid.spacing):
        out = dos.copy()
        out.attrs = {**dos.attrs, **grid.to_attrs()}  # the coordinate decides; attributes follow it
        return out
    if energies.size < 2 or np.any(np.diff(energies) <= 0):
        raise DOSValidationError("the DOS's energy coordinate must be strictly increasing")
    half = 0.5 * grid.spacing
    if energies[0] > grid.e_min + half or energies[-1] < grid.e_max - half:
        raise DOSValidationError(
            f"the DOS covers {energies[0]:.2f} ... {energies[-1]:.2f} eV but the model needs {grid.e_min:.2f} ... "
            f"{grid.e_max:.2f} eV (relative to the Fermi level): compute it on a wider window, or check that its energies "
            "are relative to E_F")
    warnings.warn(
        f"the DOS's energies ({energies[0]:.2f} ... {energies[-1]:.2f} eV, {energies.size} points) are not the model's grid "
        f"({grid.e_min:.2f} ... {grid.e_max:.2f} eV, {int(grid.n_points)} points): resampled onto it by linear interpolation",
        UserWarning, stacklevel=3)
    return resample(dos, grid)


def warn_if_other_units(dos: xr.DataArray) -> None:
    """Warn when ``dos`` lies far outside the training data's range: per-site maxima or integrals beyond
    :data:`UNITS_MARGIN` times the largest seen in training, or every site nearly empty."""
    values = np.asarray(dos.values, dtype=float)
    spacing = float(DosGrid.from_attrs(dos.attrs).spacing)
    peak, integral = float(values.max(initial=0.0)), values.sum(axis=1).max(initial=0.0) * spacing
    if peak > UNITS_MARGIN * TRAINED_SITE_MAX or integral > UNITS_MARGIN * TRAINED_SITE_INTEGRAL:
        warnings.warn(
            f"the DOS reaches {peak:.3g} states/eV and {integral:.3g} states on one site, beyond anything the models were "
            f"trained on (up to {TRAINED_SITE_MAX} and {TRAINED_SITE_INTEGRAL}): is it in {UNITS}? (A total DOS of the "
            "cell, or per formula unit, must be divided among the sites.)", UserWarning, stacklevel=3)
    elif integral < TRAINED_SITE_INTEGRAL_P1:
        warnings.warn(
            f"every site of the DOS holds less than {integral:.3g} states over the model's window; 99 % of the training "
            f"sites hold more than {TRAINED_SITE_INTEGRAL_P1}: is it in {UNITS}? (A DOS normalised to unit area is not.)",
            UserWarning, stacklevel=3)
