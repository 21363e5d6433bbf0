"""Edit a target DOS the way a designer thinks about one: shift it, open or close a gap, scale a peak.

Every edit acts on each site's DOS alike and returns a new DOS on the same energy grid (dims site, energy;
states/eV per atom; energies in eV relative to the Fermi level). States moved past an end of the energy window
are lost; states that would come in from beyond it are zero (the window holds nothing there).

>>> from crystaldos.dos_edit import DosEdit
>>> wider_gap = DosEdit(gap=0.5).apply(item.dos)           # states above 0 eV up by 0.25 eV, below down by 0.25 eV
>>> DosEdit(peak_factor=2.0, peak_centre=-3.0, peak_width=1.0).apply(item.dos)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import xarray as xr

#: A Gaussian's full width at half maximum over its standard deviation.
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def _moved(values: np.ndarray, energies: np.ndarray, by: float) -> np.ndarray:
    """``values`` (site, energy) moved by ``by`` eV along ``energies``: the value at E is the old value at E - by."""
    return np.stack([np.interp(energies - by, energies, row, left=0.0, right=0.0) for row in values])


def shift(dos: xr.DataArray, by: float) -> xr.DataArray:
    """The DOS moved by ``by`` eV (positive: to higher energies)."""
    energies = dos["energy"].values
    return dos.copy(data=_moved(dos.values, energies, float(by)).astype(dos.dtype))


def change_gap(dos: xr.DataArray, by: float, centre: float = 0.0) -> xr.DataArray:
    """Open (``by`` > 0) or close (``by`` < 0) a gap at ``centre`` eV by ``by`` eV: the states above ``centre`` move up
    by ``by``/2, those below move down by ``by``/2. Closing lets the two sides overlap, and their states add."""
    energies = dos["energy"].values
    above = np.where(energies > centre, dos.values, 0.0)
    below = np.where(energies <= centre, dos.values, 0.0)
    values = _moved(above, energies, by / 2) + _moved(below, energies, -by / 2)
    return dos.copy(data=values.astype(dos.dtype))


def scale_peak(dos: xr.DataArray, factor: float, centre: float, width: float) -> xr.DataArray:
    """Scale the DOS near ``centre`` eV by ``factor``, smoothly: by 1 + (factor - 1)·g(E) with g a Gaussian of full
    width at half maximum ``width`` eV and height 1 (factor 2 doubles the DOS at ``centre``, 0 removes it there)."""
    energies = dos["energy"].values
    sigma = width / FWHM_PER_SIGMA
    weight = 1.0 + (factor - 1.0) * np.exp(-0.5 * ((energies - centre) / sigma) ** 2)
    return dos.copy(data=(dos.values * weight[None, :]).astype(dos.dtype))


@dataclass(frozen=True)
class DosEdit:
    """A set of edits, applied in this order: the gap, the peak, then the shift (gap and peak positions refer to
    the DOS as given).

    Attributes:
        shift: eV, positive moves the whole DOS to higher energies.
        gap: eV; positive opens a gap at ``gap_centre`` (the states above it move up by half, below it down by half),
            negative closes one.
        gap_centre: eV.
        peak_factor: how much the DOS near ``peak_centre`` is scaled (1: unchanged; >= 0).
        peak_centre: eV.
        peak_width: eV, full width at half maximum of the scaled region (> 0).
    """

    shift: float = 0.0
    gap: float = 0.0
    gap_centre: float = 0.0
    peak_factor: float = 1.0
    peak_centre: float = 0.0
    peak_width: float = 1.0

    def __post_init__(self) -> None:
        for name in ("shift", "gap", "gap_centre", "peak_factor", "peak_centre", "peak_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number (eV, or a factor for peak_factor), got {value!r}")
        if self.peak_factor < 0:
            raise ValueError(f"peak_factor must be >= 0 (a DOS cannot be negative), got {self.peak_factor}")
        if self.peak_width <= 0:
            raise ValueError(f"peak_width must be > 0 eV, got {self.peak_width}")

    @property
    def is_identity(self) -> bool:
        """True when the edit changes nothing."""
        return self.shift == 0 and self.gap == 0 and self.peak_factor == 1

    def apply(self, dos: xr.DataArray) -> xr.DataArray:
        """The edited DOS (same dims, coordinates and attributes).

        Raises:
            ValueError: ``dos`` is not an atom-level DOS (dims site, energy), or the edit leaves no states in the
                energy window (e.g. a shift larger than the window).
        """
        if not isinstance(dos, xr.DataArray) or dos.dims != ("site", "energy"):
            raise ValueError(f"an atom-level DOS with dims ('site', 'energy') is needed, got {getattr(dos, 'dims', type(dos))}")
        if self.is_identity:
            return dos.copy()
        edited = change_gap(dos, self.gap, self.gap_centre) if self.gap else dos
        if self.peak_factor != 1:
            edited = scale_peak(edited, self.peak_factor, self.peak_centre, self.peak_width)
        if self.shift:
            edited = shift(edited, self.shift)
        if not np.any(edited.values > 0):
            raise ValueError(f"the edit {self} leaves no states in the energy window "
                             f"{float(dos.energy[0]):.1f} ... {float(dos.energy[-1]):.1f} eV")
        edited.attrs = {**dos.attrs, "edit": repr(self)}
        return edited
