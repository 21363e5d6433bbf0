"""The one DOS convention of crystaldos, and helpers around it.

Convention (stored with every data set and checkpoint, see :class:`DosGrid`):

* energies in **eV relative to the Fermi level** (E - E_F), on a uniform grid,
  by default -24.98 ... +10 eV with 447 points (spacing 20/255 = 0.078 eV; the embedded data set's grid, which
  reaches the semicore s and p levels that tell elements apart; the format-1 grid was -10 ... +10 eV with 256
  points, the same spacing, and its points are the top 256 of today's);
* every level is broadened with a normalised **Gaussian** of width ``sigma``
  (default 0.2 eV);
* values are **states/eV per atom**, both spin channels summed: the curve of a
  site integrates (over all energies) to twice the number of orbitals that the
  site carries in the projection. The total DOS of a cell is the sum over sites.

An atom-level DOS is an :class:`xarray.DataArray` named ``"dos"`` with dims
``("site", "energy")``, coordinate ``energy`` (eV) and per-site coordinate
``element`` (symbol), and the grid parameters in ``attrs``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import xarray as xr

if TYPE_CHECKING:  # imported lazily: pymatgen and matplotlib are slow to import
    import matplotlib.axes
    from pymatgen.core import Structure
    from pymatgen.electronic_structure.dos import CompleteDos

__all__ = [
    "DosGrid",
    "DOSValidationError",
    "broaden",
    "site_dos",
    "validate_site_dos",
    "total_dos",
    "resample",
    "normalise",
    "mae",
    "wasserstein",
    "identical_sites",
    "from_complete_dos",
    "to_complete_dos",
    "plot_dos",
]


class DOSValidationError(ValueError):
    """An atom-level DOS that breaks the convention (shape, grid, NaN, negative values)."""


@dataclass(frozen=True)
class DosGrid:
    """Uniform energy grid and Gaussian broadening of a DOS.

    The default is the embedded data set's grid (format 2): -24.98 ... +10 eV, 447 points, sigma 0.2 eV. It extends
    the format-1 grid (-10 ... +10 eV, 256 points: ``DosGrid(-10, 10, 256)``) down by 191 points of the same spacing,
    because the window below -10 eV carries the semicore levels (an element is identified from its DOS for 80 % of
    atoms with it, 75 % without: docs/research/labeller.md).

    Attributes:
        e_min: lowest energy of the window, eV relative to E_F.
        e_max: highest energy of the window, eV relative to E_F.
        n_points: number of grid points (inclusive of both ends).
        sigma: standard deviation of the Gaussian broadening, eV.
    """

    e_min: float = -10.0 - 191 * 20.0 / 255
    e_max: float = 10.0
    n_points: int = 256 + 191
    sigma: float = 0.2

    def __post_init__(self) -> None:
        if not (np.isfinite(self.e_min) and np.isfinite(self.e_max) and self.e_max > self.e_min):
            raise ValueError(f"DosGrid needs finite e_min < e_max, got {self.e_min}, {self.e_max}")
        if int(self.n_points) < 2:
            raise ValueError(f"DosGrid needs n_points >= 2, got {self.n_points}")
        if not self.sigma > 0:
            raise ValueError(f"DosGrid needs sigma > 0 eV, got {self.sigma}")

    @property
    def energies(self) -> np.ndarray:
        """Grid energies, shape (n_points,), eV relative to E_F."""
        return np.linspace(self.e_min, self.e_max, int(self.n_points))

    @property
    def spacing(self) -> float:
        """Distance between grid points, eV."""
        return (self.e_max - self.e_min) / (int(self.n_points) - 1)

    def to_attrs(self) -> dict[str, float | int]:
        """The grid as netCDF-friendly attributes (prefixed ``grid_``)."""
        return {f"grid_{k}": v for k, v in asdict(self).items()}

    @classmethod
    def from_attrs(cls, attrs: dict) -> "DosGrid":
        """Inverse of :meth:`to_attrs`; raises ``KeyError`` naming a missing attribute."""
        try:
            return cls(
                e_min=float(attrs["grid_e_min"]),
                e_max=float(attrs["grid_e_max"]),
                n_points=int(attrs["grid_n_points"]),
                sigma=float(attrs["grid_sigma"]),
            )
        except KeyError as err:
            raise KeyError(f"DOS grid attribute {err.args[0]!r} is missing") from None

    def matches(self, other: "DosGrid", rtol: float = 1e-6) -> bool:
        """True if both grids have the same window, size and broadening."""
        return int(self.n_points) == int(other.n_points) and np.allclose(
            [self.e_min, self.e_max, self.sigma], [other.e_min, other.e_max, other.sigma], rtol=rtol
        )


def broaden(levels: np.ndarray, weights: np.ndarray, grid: DosGrid) -> np.ndarray:
    """Gaussian-broaden weighted levels onto the grid.

    Args:
        levels: level energies, shape (n_levels,), eV relative to E_F.
        weights: weight of every level on every site, shape (n_sites, n_levels)
            (or (n_levels,) for one curve), in states.
        grid: target grid and broadening.

    Returns:
        DOS in states/eV, shape (n_sites, n_points) (or (n_points,)).
    """
    levels = np.asarray(levels, dtype=np.float64)
    energies = grid.energies
    # Levels further than 6 sigma outside the window contribute < 1e-8: skip them.
    keep = (levels > energies[0] - 6 * grid.sigma) & (levels < energies[-1] + 6 * grid.sigma)
    z = (energies[None, :] - levels[keep, None]) / grid.sigma
    kernel = np.exp(-0.5 * z**2) / (grid.sigma * np.sqrt(2.0 * np.pi))  # (n_kept, n_points)
    return np.asarray(weights, dtype=np.float64)[..., keep] @ kernel


def site_dos(values: np.ndarray, elements: Sequence[str], grid: DosGrid, **attrs) -> xr.DataArray:
    """Wrap per-site DOS values in the labelled convention.

    Args:
        values: states/eV, shape (n_sites, grid.n_points).
        elements: element symbol of each site, length n_sites.
        grid: the grid the values live on.
        **attrs: extra metadata stored in ``attrs`` (e.g. labeller, band gap).
    """
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2 or values.shape != (len(elements), int(grid.n_points)):
        raise DOSValidationError(
            f"site DOS values must have shape (n_sites={len(elements)}, n_points={grid.n_points}), "
            f"got {values.shape}"
        )
    return xr.DataArray(
        values,
        dims=("site", "energy"),
        coords={"energy": grid.energies, "element": ("site", list(elements))},
        name="dos",
        attrs={**grid.to_attrs(), "units": "states/eV/atom", "energy_units": "eV - E_F", **attrs},
    )


def validate_site_dos(dos: xr.DataArray, n_sites: int | None = None, grid: DosGrid | None = None) -> DosGrid:
    """Check that ``dos`` follows the convention; return its grid.

    Raises:
        DOSValidationError: wrong type or dims, site count differing from ``n_sites``,
            a grid differing from ``grid``, NaN/inf or negative values.
    """
    if not isinstance(dos, xr.DataArray):
        raise DOSValidationError(f"atom-level DOS must be an xarray.DataArray, got {type(dos).__name__}")
    if tuple(dos.dims) != ("site", "energy"):
        raise DOSValidationError(f"atom-level DOS must have dims ('site', 'energy'), got {tuple(dos.dims)}")
    if n_sites is not None and dos.sizes["site"] != n_sites:
        raise DOSValidationError(f"DOS has {dos.sizes['site']} sites but the structure has {n_sites}")
    try:
        own = DosGrid.from_attrs(dos.attrs)
    except KeyError:
        e = np.asarray(dos["energy"].values, dtype=float) if "energy" in dos.coords else None
        if e is None or e.size < 2 or not np.allclose(np.diff(e), e[1] - e[0], rtol=1e-4):
            raise DOSValidationError("DOS has neither grid attributes nor a uniform 'energy' coordinate") from None
        own = DosGrid(float(e[0]), float(e[-1]), int(e.size), grid.sigma if grid else DosGrid.sigma)
    if dos.sizes["energy"] != int(own.n_points):
        raise DOSValidationError(f"DOS has {dos.sizes['energy']} energies but its grid says {own.n_points}")
    if grid is not None and not own.matches(grid):
        raise DOSValidationError(f"DOS grid {own} does not match the expected grid {grid}; use crystaldos.dos.resample")
    values = np.asarray(dos.values)
    if not np.all(np.isfinite(values)):
        bad = sorted(set(np.argwhere(~np.isfinite(values))[:, 0].tolist()))
        raise DOSValidationError(f"DOS has NaN or infinite values on site(s) {bad}")
    if values.min(initial=0.0) < -1e-6:
        bad = sorted(set(np.argwhere(values < -1e-6)[:, 0].tolist()))
        raise DOSValidationError(f"DOS has negative values on site(s) {bad}; a DOS is a density of states >= 0")
    return own


def total_dos(dos: xr.DataArray) -> xr.DataArray:
    """Total DOS of the cell (sum over sites), states/eV per cell, dims ("energy",)."""
    out = dos.sum("site", keep_attrs=True)
    out.attrs["units"] = "states/eV/cell"
    return out.rename("total_dos")


def element_dos(dos: xr.DataArray) -> xr.DataArray:
    """Mean DOS of each element's sites, dims ("element", "energy"), states/eV/atom.

    The quantity that must not depend on the cell describing a crystal (sites of one element
    may differ, but their mean over a primitive, conventional or super cell may not).
    """
    return dos.groupby("element").mean("site")


def resample(dos: xr.DataArray, grid: DosGrid) -> xr.DataArray:
    """Linear interpolation of a DOS onto ``grid`` (zero outside the source window).

    The broadening is not changed; ``grid.sigma`` is recorded as given, so resample
    onto a grid whose sigma is the data's own.
    """
    out = dos.interp(energy=grid.energies, kwargs={"fill_value": 0.0}).clip(min=0.0)
    out.attrs = {**dos.attrs, **grid.to_attrs()}
    return out


def normalise(dos: xr.DataArray, dim: str = "energy") -> xr.DataArray:
    """Scale each curve to unit area over ``dim`` (a probability density over energy, 1/eV)."""
    area = dos.integrate(dim)
    return dos / area.where(area > 0)


def mae(a: xr.DataArray, b: xr.DataArray, dim: str = "energy") -> xr.DataArray:
    """Mean absolute error between two DOS along energy, states/eV (one value per remaining coord)."""
    return abs(a - b).mean(dim)


def wasserstein(a: xr.DataArray, b: xr.DataArray) -> xr.DataArray:
    """Earth mover's distance (eV) between the area-normalised curves, per site.

    Tolerant to small rigid shifts: moving a whole curve by dE costs exactly dE.
    Computed with :func:`scipy.stats.wasserstein_distance` on the energy grid.
    Curves with zero area give NaN.

    Raises:
        ValueError: a curve with negative values (a DOS is never negative; the distance between
            probability densities is undefined for them), naming the curve and its lowest value.
    """
    from scipy.stats import wasserstein_distance

    for name, curve in (("first", a), ("second", b)):
        lowest = float(curve.min())
        if lowest < 0:
            raise ValueError(f"wasserstein: the {name} DOS has negative values (lowest {lowest:.3g} states/eV"
                             f"{_where_lowest(curve)}); a DOS is never negative: clip it at 0 first")
    a, b = xr.broadcast(a, b)
    energies = a["energy"].values
    av = np.asarray(a.transpose(..., "energy").values, dtype=float).reshape(-1, energies.size)
    bv = np.asarray(b.transpose(..., "energy").values, dtype=float).reshape(-1, energies.size)
    out = np.full(av.shape[0], np.nan)
    for i, (u, v) in enumerate(zip(av, bv)):
        if u.sum() > 0 and v.sum() > 0:
            out[i] = wasserstein_distance(energies, energies, u_weights=u, v_weights=v)
    dims = [d for d in a.transpose(..., "energy").dims if d != "energy"]
    shape = [a.sizes[d] for d in dims]
    return xr.DataArray(out.reshape(shape), dims=dims, name="wasserstein_eV")


#: Two sites of one crystal whose DOS differ nowhere by more than this fraction of the crystal's largest value
#: count as identical (:func:`identical_sites`). Measured on 400 format-2 test crystals before symmetrisation:
#: sites of different elements always differ by at least 0.050 of it, symmetry-equivalent sites by 0 in 40 %
#: and by less than 1e-3 in 68 % of the pairs; symmetrised labels (``crystaldos.labellers.symmetry``) are equal.
IDENTICAL_SITES_RTOL = 1e-3


def identical_sites(values: np.ndarray, rtol: float = IDENTICAL_SITES_RTOL) -> np.ndarray:
    """Groups of sites of one crystal with the same DOS, (n_sites,) int: the lowest index of each group.

    Args:
        values: the crystal's site DOS, (n_sites, n_energies).
        rtol: sites i and j are joined when max_E |DOS_i - DOS_j| <= rtol * max DOS (groups are the connected
            components of that relation).
    """
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    scale = max(float(np.abs(values).max(initial=0.0)), 1e-12)
    close = np.abs(values[:, None, :] - values[None, :, :]).max(axis=-1) <= rtol * scale  # (n, n)
    groups = np.arange(n)
    for i in range(n):  # union by smallest index; n is a cell's atom count
        for j in np.flatnonzero(close[i, i + 1:]) + i + 1:
            low, high = sorted((groups[i], groups[j]))
            groups[groups == high] = low
    return groups


def _where_lowest(curve: xr.DataArray) -> str:
    """' at site=3, energy=-1.2 eV'-style location of a curve's lowest value (empty for a bare array)."""
    index = np.unravel_index(int(np.argmin(curve.values)), curve.shape)
    parts = []
    for dim, i in zip(curve.dims, index):
        coord = curve[dim].values[i] if dim in curve.coords else i
        parts.append(f"{dim}={coord:.3g}" if isinstance(coord, float | np.floating) else f"{dim}={coord}")
    return f" at {', '.join(parts)}" if parts else ""


def from_complete_dos(
    cdos: "CompleteDos", grid: DosGrid | None = None, structure: "Structure | None" = None, smear: bool = True
) -> xr.DataArray:
    """Atom-level DOS from a pymatgen ``CompleteDos`` (the Materials Project format).

    Every site's DOS (``cdos.get_site_dos(site)``, spins summed) is shifted by
    ``cdos.efermi``, Gaussian-smeared with ``grid.sigma`` on its own energy mesh
    (skip with ``smear=False`` if it is already broadened) and interpolated onto
    ``grid``. Site order is ``structure`` (default ``cdos.structure``).

    Small negative densities, which VASP's tetrahedron method produces, are clipped
    to 0 after smearing; a site whose raw density dips below -10 % of its own
    maximum is rejected as corrupt, as is a site of ``structure`` that has no
    projected DOS in ``cdos`` (the two structures differ).
    """
    grid = grid or DosGrid()
    structure = structure or cdos.structure
    if not structure.is_ordered:
        raise DOSValidationError("from_complete_dos needs an ordered structure (one element per site)")
    energies = np.asarray(cdos.energies, dtype=float) - float(cdos.efermi)
    if energies.size < 2 or np.any(np.diff(energies) <= 0):
        raise DOSValidationError("CompleteDos energies must be strictly increasing")
    rows = []
    for index, site in enumerate(structure):
        if site not in cdos.pdos:
            raise DOSValidationError(
                f"the CompleteDos has no projected DOS for site {index} ({site.species_string} at {np.round(site.frac_coords, 4).tolist()}); "
                "its structure must be the same crystal, site for site"
            )
        dos = cdos.get_site_dos(site)
        dens = np.asarray(dos.get_densities(), dtype=float)  # spins summed
        if dens.size and np.nanmin(dens) < -0.1 * max(float(np.nanmax(dens)), 0.0):
            raise DOSValidationError(f"site {index} ({site.species_string}) has a density of {np.nanmin(dens):.3g} states/eV: "
                                     "strongly negative, not a density of states")
        if smear:
            spacing = float(np.min(np.diff(energies)))
            if grid.sigma < spacing:
                raise DOSValidationError(f"sigma={grid.sigma} eV is finer than the DOS mesh ({spacing:.3g} eV)")
            dens = sum(dos.get_smeared_densities(grid.sigma).values())
        rows.append(np.interp(grid.energies, energies, np.asarray(dens, dtype=float), left=0.0, right=0.0))
    return site_dos(
        np.clip(np.stack(rows), 0.0, None),
        [site.specie.symbol for site in structure],
        grid,
        source="pymatgen CompleteDos",
        efermi_eV=float(cdos.efermi),
    )


def to_complete_dos(dos: xr.DataArray, structure: "Structure", efermi: float = 0.0) -> "CompleteDos":
    """Export an atom-level DOS as a pymatgen ``CompleteDos`` (one s-like channel per site, spin up).

    Lets pymatgen tools (``DosPlotter``, band-centre analysis) work on crystaldos data.
    """
    from pymatgen.electronic_structure.core import Orbital, Spin
    from pymatgen.electronic_structure.dos import CompleteDos, Dos

    validate_site_dos(dos, n_sites=len(structure))
    energies = dos["energy"].values + efermi
    values = np.asarray(dos.values, dtype=float)
    pdoss = {site: {Orbital.s: {Spin.up: values[i]}} for i, site in enumerate(structure)}
    total = Dos(efermi, energies, {Spin.up: values.sum(0)})
    return CompleteDos(structure, total, pdoss)


def plot_dos(
    dos: xr.DataArray,
    ax: "matplotlib.axes.Axes | None" = None,
    total: bool = True,
    by_element: bool = True,
    label: str | None = None,
    **line_kwargs,
) -> "matplotlib.axes.Axes":
    """Plot an atom-level DOS: the total and/or one curve per element (sites of an element summed).

    Returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    energy = dos["energy"].values
    if total:
        ax.plot(energy, total_dos(dos).values, color=line_kwargs.pop("color", "k"), label=label or "total", **line_kwargs)
    if by_element and "element" in dos.coords:
        for element, part in dos.groupby("element"):
            ax.plot(energy, part.sum("site").values, lw=1, alpha=0.8, label=f"{element}")
    ax.axvline(0.0, color="0.6", lw=0.8, ls="--")
    ax.set_xlabel("E - E$_F$ (eV)")
    ax.set_ylabel("DOS (states/eV)")
    ax.legend(fontsize="small", frameon=False)
    return ax
