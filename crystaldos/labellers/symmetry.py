"""Symmetry-equivalent sites must have the same DOS: measure how far a label is from that, and enforce it.

By symmetry, two sites that a space-group operation maps onto each other have identical atom-level DOS. A
label computed on a finite k-mesh, from a Gamma-point supercell SCF, with GFN2's anisotropic multipole terms
kept only on the orbital diagonal (``crystaldos.labellers.bloch``), breaks that slightly for most crystals
and badly for a few (measured on the first 4,021 format-2 labels: the worst site is within 0.002
states/eV/atom of its orbit's mean for 75 % of the crystals, beyond the label noise of 0.03 for 3.8 %, up to
0.42 in Fe-Ni intermetallics whose equivalent sites hold populations 3-6 electrons apart; docs/research/labeller.md).

:func:`symmetrise_site_dos` averages the DOS over every orbit (the same as sampling the zone with the mesh's
whole star) and reports the spread it removed; a spread beyond the label noise means the label broke the
crystal's symmetry (GFN2's multipole terms left out, or a symmetry-broken SCF), and it is not the crystal's DOS.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

#: Tolerance (Å) for finding equivalent sites (spglib's symprec). Measured on 400 format-2 test crystals: 0.1 finds
#: 6,781 equivalent same-element site pairs, 1e-3 finds 6,691 (the candidates are exact prototypes and substitutions);
#: the tighter one keeps nearly-equivalent sites, whose DOS may genuinely differ, apart.
SYMPREC = 1e-3

#: Largest spread (states/eV/atom, :func:`equivalent_site_spread`) a label may have: the label noise, the MAE
#: between labels of one crystal under SCF settings that should not matter (docs/research/labeller.md).
MAX_EQUIVALENT_SPREAD = 0.03


def equivalent_sites(structure, symprec: float = SYMPREC) -> np.ndarray:
    """Orbit of every site, (n_sites,) int: ``orbits[i] == orbits[j]`` when a space-group operation maps
    site i onto site j (the lowest index of each orbit; spglib's ``equivalent_atoms``).

    A structure spglib cannot analyse (e.g. overlapping atoms) gets every site in its own orbit.
    """
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        dataset = SpacegroupAnalyzer(structure, symprec=symprec).get_symmetry_dataset()
    except Exception:  # spglib raises on degenerate input; no symmetry then
        dataset = None
    if dataset is None:
        return np.arange(len(structure))
    return np.asarray(dataset.equivalent_atoms if hasattr(dataset, "equivalent_atoms") else dataset["equivalent_atoms"])


def _orbit_means(values: np.ndarray, orbits: np.ndarray) -> np.ndarray:
    """Every site's row replaced by the mean over its orbit, (n_sites, n_energies)."""
    out = np.empty_like(values, dtype=np.float64)
    for orbit in np.unique(orbits):
        members = orbits == orbit
        out[members] = values[members].mean(axis=0)
    return out


def equivalent_site_spread(values: np.ndarray, orbits: np.ndarray) -> float:
    """Largest mean absolute difference (states/eV/atom) between a site's DOS and its orbit's mean DOS.

    Args:
        values: site DOS, (n_sites, n_energies).
        orbits: :func:`equivalent_sites` of the structure, (n_sites,).
    """
    values = np.asarray(values, dtype=np.float64)
    return _spread(values, _orbit_means(values, orbits))


def _spread(values: np.ndarray, means: np.ndarray) -> float:
    """Largest per-site MAE between ``values`` and their orbit ``means`` (both (n_sites, n_energies))."""
    return float(np.abs(values - means).mean(axis=1).max(initial=0.0))


def symmetrise_site_dos(dos: xr.DataArray, structure, symprec: float = SYMPREC) -> tuple[xr.DataArray, float]:
    """``dos`` (dims site, energy) with every site's DOS replaced by its orbit's mean, and the spread removed.

    Idempotent: a symmetrised label comes back unchanged with spread 0. The returned DataArray keeps
    ``dos``'s coordinates and attrs and records ``equivalent_site_spread`` (states/eV/atom) and the
    ``symprec`` (Å) in its attrs.
    """
    if dos.sizes["site"] != len(structure):
        raise ValueError(f"DOS has {dos.sizes['site']} sites but the structure has {len(structure)}")
    orbits = equivalent_sites(structure, symprec)
    values = np.asarray(dos.values)
    means = _orbit_means(values, orbits)
    spread = _spread(values.astype(np.float64), means)
    symmetric = dos.copy(data=means.astype(values.dtype))
    symmetric.attrs.update(equivalent_site_spread=spread, symmetry_symprec=symprec)
    return symmetric, spread
