"""Converged crystal DOS from xTB by Bloch sums of two-centre matrices on a k-point mesh.

tblite solves periodic xTB at the Gamma point only, and a Gamma-point supercell
samples the Brillouin zone so coarsely that its DOS is a comb of levels that
moves with the supercell. This module builds the xTB Hamiltonian H(k) and
overlap S(k) of the *crystal's own cell* on any k-mesh instead:

1. The self-consistent charges come from a Gamma-point SCF of a supercell (the
   charges, integrals over the zone, converge far faster than the DOS). In xTB
   the converged Fock matrix is ``F = H0 + 1/2 S o (V_mu + V_nu) (+ multipole terms)``,
   so the per-orbital potential is ``V = diag(F - H0) / diag(S)``; every orbital's
   bulk self-energy is ``diag(H0)`` with its overlap with its own periodic images
   divided out (:func:`image_sums`).
2. ``H0`` and ``S`` are two-centre: the block between atom a in the home cell and
   atom b in cell T depends only on the two elements, their separation and (for
   ``H0``, through the self-energies) the atoms' coordination numbers. Each block
   is read from a tblite calculation of that *dimer* (about 0.3 ms), and
   ``H0`` is rescaled from the dimer's to the bulk self-energies
   (``H0_mu,nu`` is proportional to ``h_mu + h_nu`` in GFN1 and GFN2). Pairs are
   taken out to the distance where the element pair's largest overlap falls
   below a tolerance (diffuse s/p shells of alkali metals and, in GFN1, Al reach
   beyond 12 Å), so nothing folds back as it does in a supercell.
3. ``H(k) = sum_T e^{2 pi i k.T} F(T)``, ``S(k)`` likewise; the generalised
   eigenproblem is solved per k (:func:`solve`: Cholesky, or canonical
   orthogonalisation dropping overlap eigenvalues below ``overlap_threshold``,
   the near-null space of diffuse functions in dense cells), and the states are
   projected on atoms by Mulliken weights ``Re(c* (S c))``.

Units inside: Hartree and Bohr for tblite, eV and Å everywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from crystaldos.geometry import perpendicular_widths
from crystaldos.labellers.tblite_basis import BOHR_PER_ANGSTROM, EV_PER_HARTREE, orbitals_per_atom


def _dimer_matrices(method: str, za: int, zb: int, separation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Overlap and core Hamiltonian (Hartree) of the dimer a at 0, b at ``separation`` (Å), full matrices."""
    from tblite.interface import Calculator, Result

    calc = Calculator(method, np.array([za, zb]), np.array([np.zeros(3), separation]) * BOHR_PER_ANGSTROM)
    calc.set("verbosity", 0)
    calc.set("save-integrals", 1)
    calc.set("max-iter", 0)  # integrals only; tblite then reports "not converged in 0 cycles"
    result = Result()
    try:
        calc.singlepoint(result)
    except Exception:  # noqa: BLE001 - the integrals are in ``result`` either way
        pass
    return result.get("overlap-matrix"), result.get("hamiltonian-matrix")


@lru_cache(maxsize=None)
def pair_cutoff(method: str, za: int, zb: int, tolerance: float) -> float:
    """Distance (Å) beyond which every overlap element of the pair (za, zb) is below ``tolerance``.

    Scanned on the dimer along one axis (the largest element of an s/p/d block along the axis
    bounds the others) in 0.5 Å steps from 1 to 30 Å; cached per pair.
    """
    n_a = orbitals_per_atom(za, method)
    last_significant = 1.0
    for distance in np.arange(1.0, 30.01, 0.5):
        overlap, _ = _dimer_matrices(method, za, zb, np.array([0.3, 0.5, 0.81]) / np.linalg.norm([0.3, 0.5, 0.81]) * distance)
        if np.abs(overlap[:n_a, n_a:]).max() >= tolerance:
            last_significant = float(distance)
    return last_significant + 0.5


def image_sums(method: str, z: int, superlattice: np.ndarray, tolerance: float) -> np.ndarray:
    """sum over the supercell's own lattice vectors T != 0 of H0_mu,mu(T) / h_mu for an atom's orbitals.

    In a Gamma-point supercell, the diagonal of H0 is ``h_mu (1 + this sum)``: every orbital also
    meets its own periodic images. With diffuse shells (Mg, Na, Cs ...) the sum reaches 0.1-0.3 in
    an 8 Å supercell, so dividing it out is what makes the bulk self-energies independent of the
    supercell. ``H0_mu,mu(T) / h_mu`` is the dimer's element over its own self-energy (the two
    atoms are alike, so the (h_mu + h_nu) / 2 factor is exactly h_mu).

    Args:
        superlattice: rows are the supercell's lattice vectors, Å.

    Returns:
        (n_orbitals of z,)
    """
    reach = pair_cutoff(method, z, z, tolerance)
    n = np.ceil(reach / perpendicular_widths(superlattice)).astype(int)
    grid = np.array(np.meshgrid(*[np.arange(-k, k + 1) for k in n], indexing="ij")).reshape(3, -1).T
    vectors = grid @ superlattice
    lengths = np.linalg.norm(vectors, axis=1)
    n_orb = orbitals_per_atom(z, method)
    total = np.zeros(n_orb)
    for vector in vectors[(lengths > 1e-6) & (lengths < reach)]:
        _, core = _dimer_matrices(method, z, z, vector)
        total += np.diag(core[:n_orb, n_orb:]) / np.diag(core)[:n_orb]
    return total


@dataclass
class RealSpaceMatrices:
    """Two-centre matrices of a crystal, one block per lattice vector.

    Attributes:
        translations: integer lattice vectors T (n_T, 3); T = 0 first.
        fock: F(T) between home-cell orbitals and those of cell T, (n_T, n_orb, n_orb), Hartree.
        overlap: S(T), same shape.
        owner: site index of every orbital, (n_orb,).
    """

    translations: np.ndarray
    fock: np.ndarray
    overlap: np.ndarray
    owner: np.ndarray

    def at(self, kpoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """H(k), S(k) at fractional k-points (n_k, 3): complex (n_k, n_orb, n_orb), Hermitian."""
        phases = np.exp(2j * np.pi * kpoints @ self.translations.T)  # (n_k, n_T)
        n = self.fock.shape[1]
        hk = (phases @ self.fock.reshape(len(self.fock), -1)).reshape(-1, n, n)
        sk = (phases @ self.overlap.reshape(len(self.overlap), -1)).reshape(-1, n, n)
        hk = 0.5 * (hk + hk.conj().transpose(0, 2, 1))
        sk = 0.5 * (sk + sk.conj().transpose(0, 2, 1))
        return hk, sk


def two_centre_matrices(
    structure,
    method: str,
    self_energy: np.ndarray,
    potential: np.ndarray,
    orbitals: np.ndarray,
    tolerance: float = 1e-4,
) -> RealSpaceMatrices:
    """F(T) and S(T) of ``structure`` from dimer integrals (see the module docstring).

    Args:
        structure: ordered pymatgen Structure.
        method: tblite method name.
        self_energy: bulk self-energy of every home-cell orbital, (n_orb,), Hartree.
        potential: SCF shift potential of every home-cell orbital, (n_orb,), Hartree.
        orbitals: number of basis functions on each site, (n_sites,).
        tolerance: overlap below which a pair is left out (sets each element pair's range).
    """
    numbers = np.array(structure.atomic_numbers)
    offsets = np.concatenate([[0], np.cumsum(orbitals)])
    n_orb = int(offsets[-1])
    cutoffs = {
        (za, zb): pair_cutoff(method, int(za), int(zb), tolerance)
        for za in set(numbers.tolist())
        for zb in set(numbers.tolist())
    }
    centres, neighbours, images, distances = structure.get_neighbor_list(max(cutoffs.values()))
    keep = np.array(
        [d > 1e-6 and d < cutoffs[numbers[a], numbers[b]] for a, b, d in zip(centres, neighbours, distances)],
        dtype=bool,
    )
    centres, neighbours, images = centres[keep], neighbours[keep], np.rint(images[keep]).astype(int)
    # Each pair once: F(a, b, T) = F(b, a, -T)^T, so keep (a < b) or (a == b and T > 0 lexicographically).
    first = (centres < neighbours) | ((centres == neighbours) & _lexicographically_positive(images))
    index: dict[tuple[int, int, int], int] = {(0, 0, 0): 0}
    for t in map(tuple, images.tolist()):
        index.setdefault(t, len(index))
        index.setdefault(tuple(-x for x in t), len(index))
    fock = np.zeros((len(index), n_orb, n_orb))
    overlap = np.zeros_like(fock)
    fock[0][np.diag_indices(n_orb)] = self_energy + potential
    overlap[0][np.diag_indices(n_orb)] = 1.0
    cart, lattice = structure.cart_coords, structure.lattice.matrix
    for a, b, t in zip(centres[first], neighbours[first], images[first]):
        s_dimer, h_dimer = _dimer_matrices(method, int(numbers[a]), int(numbers[b]), cart[b] + t @ lattice - cart[a])
        na = orbitals[a]
        rows, cols = slice(offsets[a], offsets[a + 1]), slice(offsets[b], offsets[b + 1])
        dimer_self = np.diag(h_dimer)
        dimer_sum = dimer_self[:na, None] + dimer_self[None, na:]
        bulk_sum = self_energy[rows][:, None] + self_energy[cols][None, :]
        # H0 ~ (h_mu + h_nu): move the dimer's self-energies (coordination numbers) to the bulk ones.
        scale = np.divide(bulk_sum, dimer_sum, out=np.ones_like(bulk_sum), where=np.abs(dimer_sum) > 1e-8)
        s_block = s_dimer[:na, na:]
        f_block = h_dimer[:na, na:] * scale + 0.5 * s_block * (potential[rows][:, None] + potential[cols][None, :])
        forward, backward = index[tuple(t.tolist())], index[tuple((-t).tolist())]
        fock[forward][rows, cols] = f_block
        overlap[forward][rows, cols] = s_block
        fock[backward][cols, rows] = f_block.T
        overlap[backward][cols, rows] = s_block.T
    owner = np.repeat(np.arange(len(numbers)), orbitals)
    return RealSpaceMatrices(np.array(list(index)), fock, overlap, owner)


def with_blocks(matrices: RealSpaceMatrices, blocks: dict[tuple[int, int, int], np.ndarray]) -> RealSpaceMatrices:
    """``matrices`` with extra F(T) blocks added (each (n_orb, n_orb), Hartree), new lattice vectors included
    (their overlap is zero). Used for the terms that are not two-centre, e.g. GFN2's multipole terms."""
    index = {tuple(t): k for k, t in enumerate(matrices.translations.tolist())}
    for t in blocks:
        index.setdefault(tuple(t), len(index))
    n_t, n_orb = len(index), matrices.fock.shape[1]
    fock = np.zeros((n_t, n_orb, n_orb))
    overlap = np.zeros_like(fock)
    fock[: len(matrices.fock)], overlap[: len(matrices.overlap)] = matrices.fock, matrices.overlap
    for t, block in blocks.items():
        fock[index[tuple(t)]] += block
    return RealSpaceMatrices(np.array(list(index)), fock, overlap, matrices.owner)


def _lexicographically_positive(images: np.ndarray) -> np.ndarray:
    """True where the integer vector (n, 3) is > 0 in lexicographic order."""
    sign = np.zeros(len(images), dtype=int)
    for axis in (2, 1, 0):
        sign = np.where(images[:, axis] != 0, np.sign(images[:, axis]), sign)
    return sign > 0


def monkhorst_pack(structure, density: float) -> tuple[np.ndarray, np.ndarray]:
    """Gamma-centred k-mesh with n_i = ceil(density * |b_i|) points along each reciprocal vector.

    Args:
        density: points per Å^-1 of reciprocal length (b without 2 pi), i.e. the mesh is as fine
            as a Gamma-point supercell ``density`` Å wide.

    Returns:
        mesh (3,) and fractional k-points (n_k, 3).
    """
    reciprocal = np.array(structure.lattice.reciprocal_lattice_crystallographic.abc)
    mesh = np.maximum(1, np.ceil(density * reciprocal - 1e-9)).astype(int)
    axes = [np.arange(n) / n for n in mesh]
    return mesh, np.array(np.meshgrid(*axes, indexing="ij")).reshape(3, -1).T


def commensurate_kpoints(matrix: np.ndarray) -> np.ndarray:
    """Fractional k-points (det M, 3) of the cell's zone that fold onto the Gamma point of the supercell whose
    lattice vectors are the rows of ``matrix`` @ cell lattice: the k with M k integer, k = M^-1 m mod 1."""
    from pymatgen.util.coord import lattice_points_in_supercell

    return lattice_points_in_supercell(np.asarray(matrix).T)


def solve(hk: np.ndarray, sk: np.ndarray, overlap_threshold: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Generalised eigenproblem per k.

    Cholesky reduction (S = L L^H, about three times cheaper than diagonalising S) when every S(k)
    is safely positive definite; otherwise canonical orthogonalisation, which drops the overlap
    eigenvectors below ``overlap_threshold`` (their states get zero weight and are pushed out of
    every energy window).

    Args:
        hk, sk: (n_k, n, n) Hermitian, Hartree.
        overlap_threshold: smallest overlap eigenvalue kept.

    Returns:
        energies (n_k, n) in eV, Mulliken weights per orbital (n_k, n, n) (orbital, state),
        and the number of dropped overlap eigenvectors (summed over k).
    """
    dropped = 0
    try:
        lower = np.linalg.cholesky(sk)
        # Cholesky succeeds down to tiny eigenvalues; below the threshold use the canonical route.
        if (np.abs(np.diagonal(lower, axis1=1, axis2=2)) ** 2).min() < 10 * overlap_threshold:
            raise np.linalg.LinAlgError("nearly singular overlap")
        transform = np.linalg.inv(lower).conj().transpose(0, 2, 1)  # X = L^-H, X^H S X = 1
        h_orth = transform.conj().transpose(0, 2, 1) @ hk @ transform
    except np.linalg.LinAlgError:
        s_values, s_vectors = np.linalg.eigh(sk)
        keep = s_values > overlap_threshold
        transform = s_vectors / np.sqrt(np.where(keep, s_values, 1.0))[:, None, :] * keep[:, None, :]
        h_orth = transform.conj().transpose(0, 2, 1) @ hk @ transform
        # Dropped directions are zero rows/columns: give them a huge energy so they leave every window.
        h_orth = h_orth + (~keep)[:, :, None] * np.eye(hk.shape[1])[None] * 1e4
        dropped = int((~keep).sum())
    energies, vectors = np.linalg.eigh(h_orth)
    coefficients = transform @ vectors
    weights = np.real(coefficients.conj() * (sk @ coefficients))
    return energies * EV_PER_HARTREE, weights, dropped


def fermi_level(energies: np.ndarray, n_electrons: float, gap_threshold: float = 0.1) -> tuple[float, float]:
    """Fermi level and band gap (eV) from the eigenvalues on the mesh (n_k, n_bands).

    Spin-restricted: every band holds 2 electrons per k-point. An even electron count whose
    highest filled band lies below the lowest empty one everywhere by > ``gap_threshold`` is an
    insulator (E_F mid-gap); otherwise the Fermi level is where the k-averaged count of states
    (Gaussian-smeared by 0.02 eV to stabilise the count) equals ``n_electrons``.
    """
    from scipy.special import erfc

    n_k = len(energies)
    filled = n_electrons / 2.0
    if abs(filled - round(filled)) < 1e-3 and 0 < round(filled) < energies.shape[1]:
        m = int(round(filled))
        vbm, cbm = float(energies[:, m - 1].max()), float(energies[:, m].min())
        if cbm - vbm > gap_threshold:
            return 0.5 * (vbm + cbm), cbm - vbm
    flat = energies.ravel()
    lo, hi = flat.min() - 1.0, flat.max() + 1.0
    for _ in range(100):
        mu = 0.5 * (lo + hi)
        count = 2.0 * 0.5 * erfc((flat - mu) / (0.02 * np.sqrt(2))).sum() / n_k
        lo, hi = (mu, hi) if count < n_electrons else (lo, mu)
    return 0.5 * (lo + hi), 0.0


def site_weights(weights: np.ndarray, owner: np.ndarray, n_sites: int) -> np.ndarray:
    """Mulliken weights summed over each site's orbitals.

    Args:
        weights: (n_k, n_orb, n_bands), from :func:`solve`.
        owner: site of each orbital (n_orb,).

    Returns:
        (n_sites, n_k * n_bands), in the order of ``energies.ravel()``.
    """
    out = np.zeros((n_sites, weights.shape[0], weights.shape[2]))
    np.add.at(out, owner, weights.transpose(1, 0, 2))
    return out.reshape(n_sites, -1)
