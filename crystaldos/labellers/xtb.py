"""Atom-projected DOS from GFN2-xTB (or GFN1-xTB) through the ``tblite`` package.

Method of the default, converged labeller (``sampling="kmesh"``; details and measurements in
docs/research/labeller.md):

1. SCF charges from a Gamma-point calculation of a >= ``min_length`` Å supercell of the primitive cell,
   spin-restricted, Fermi smearing at ``electronic_temperature`` (retried with more smearing and damping).
2. Two-centre Hamiltonian and overlap blocks between every pair of atoms (``crystaldos.labellers.bloch``),
   with the SCF potential of step 1.
3. Bloch sums H(k), S(k) on a Gamma-centred mesh of ``k_density`` points per Å⁻¹, generalised eigenproblem per
   k, Mulliken projection ``w_An = sum_{mu in A} C_mu,n (S C)_mu,n`` on atoms.
4. Fermi level from the electron count (mid-gap for insulators), Gaussian broadening of ``2 * w_An`` (both spins)
   onto the grid: states/eV per atom (see ``crystaldos.dos``), averaged over symmetry-equivalent sites.

``sampling="gamma"`` (data format 1) takes the levels of the Gamma-point supercell itself instead of steps 2-3.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from typing import Iterable, Literal, Sequence

import numpy as np
import xarray as xr

from crystaldos.dos import DosGrid, broaden, site_dos
from crystaldos.geometry import MIN_ATOM_DISTANCE, implausible_cell_reason, perpendicular_widths, too_close_pair
from crystaldos.labellers import bloch
from crystaldos.labellers.bloch import image_sums
from crystaldos.labellers.errors import (
    DisorderedStructureError,
    IllConditionedBasisError,
    LabellingError,
    SCFConvergenceError,
    SymmetryBrokenError,
    TooCloseAtomsError,
    UnsupportedElementError,
)
from crystaldos.labellers.symmetry import MAX_EQUIVALENT_SPREAD, symmetrise_site_dos
from crystaldos.labellers.tblite_basis import (  # noqa: F401 (MAX_Z and BOHR_PER_ANGSTROM: imported from here too)
    BOHR_PER_ANGSTROM,
    EV_PER_HARTREE,
    KELVIN_TO_HARTREE,
    MAX_Z,
    orbitals_per_atom,
)


@dataclass(frozen=True)
class XTBLabeller:
    """Atom-level DOS of any ordered crystal from periodic GFN2-xTB (``method``; GFN1-xTB for data format 1).

    Attributes:
        grid: energy grid and broadening of the output.
        method: tblite method name.
        min_length: minimum perpendicular width of the Gamma-point supercell, Å.
        max_orbitals: cap on the supercell's basis functions (cost grows as orbitals**3);
            the supercell shrinks below ``min_length`` where needed.
        min_distance: atoms closer than this (Å, periodic images included) are rejected.
        electronic_temperature: Fermi smearing of the occupations in the SCF, K. With k-mesh
            sampling the SCF only supplies the charges, and 3000 K (0.26 eV) keeps a metal's
            shell populations from depending on which levels of the Gamma-point supercell fall
            below E_F (Cu: primitive vs conventional cell MAE 0.41 at 300 K, 0.04 at 3000 K).
        max_iterations: SCF iteration limit.
        accuracy: tblite's SCF threshold multiplier (1 = tight; larger is looser and faster,
            the DOS after 0.2 eV broadening barely changes).
        gap_threshold: smallest level spacing at E_F (eV) reported as a band gap.
        max_gap: largest believable band gap, eV (LiF, among the widest, has ~14 eV);
            a larger one means an ill-conditioned basis.
        sampling: ``"kmesh"`` (converged: Bloch sums of two-centre matrices on a k-mesh, see
            ``crystaldos.labellers.bloch``) or ``"gamma"`` (the levels of the Gamma-point
            supercell itself: the embedded data set up to format 1).
        k_density: k-mesh density, points per Å^-1 of reciprocal length (as fine as a
            Gamma-point supercell this many Å wide).
        overlap_tolerance: two-centre blocks are kept out to where the element pair's overlap
            falls below this.
        overlap_threshold: overlap eigenvalues below this are dropped at each k (canonical
            orthogonalisation of the near-null space of diffuse functions).
        retry_scf: retry a failed SCF with the :meth:`scf_attempts` settings.
        multipole_blocks: keep GFN2's multipole terms, taken from the SCF supercell as F(T) blocks
            (:meth:`_GammaSCF.residual_blocks`), so that H(k) at the supercell's k-points is tblite's own
            supercell Hamiltonian. False (data format 2) leaves them out: measured error and why in
            docs/research/labeller.md ("Multipole terms").
        max_equivalent_spread: k-mesh labels are averaged over symmetry-equivalent sites; a label whose
            sites differed from their orbit's mean by more than this (states/eV/atom, the label noise) is
            refused with :class:`SymmetryBrokenError`. None: average, never refuse.
    """

    grid: DosGrid = field(default_factory=DosGrid)
    method: str = "GFN2-xTB"
    min_length: float = 8.0
    max_orbitals: int = 360
    min_distance: float = MIN_ATOM_DISTANCE
    electronic_temperature: float = 3000.0
    max_iterations: int = 250
    accuracy: float = 1.0
    gap_threshold: float = 0.1
    max_gap: float = 25.0
    sampling: str = "kmesh"
    k_density: float = 40.0
    overlap_tolerance: float = 1e-4
    overlap_threshold: float = 1e-3
    retry_scf: bool = True
    max_equivalent_spread: float | None = MAX_EQUIVALENT_SPREAD
    multipole_blocks: bool = False

    @classmethod
    def gamma_point(cls, **settings) -> "XTBLabeller":
        """The labeller of data format 1 (the shipped data set until the rebuild): GFN1-xTB levels of a
        Gamma-point supercell at 300 K, no SCF retries. ``settings`` override any field."""
        legacy = dict(method="GFN1-xTB", sampling="gamma", electronic_temperature=300.0, retry_scf=False)
        return cls(**(legacy | settings))

    def __post_init__(self) -> None:
        if self.sampling not in ("kmesh", "gamma"):
            raise ValueError(f"sampling must be 'kmesh' or 'gamma', got {self.sampling!r}")
        if not self.k_density > 0:
            raise ValueError(f"k_density must be > 0 (points per 1/Å), got {self.k_density}")

    # ------------------------------------------------------------------ checks
    def check(self, structure) -> None:
        """Raise a :class:`LabellingError` subclass if ``structure`` cannot be labelled."""
        if len(structure) == 0:
            raise LabellingError("structure has no sites")
        if not structure.is_ordered:
            raise DisorderedStructureError(
                f"{structure.composition.reduced_formula}: disordered sites (partial occupancy); "
                "order the structure first (e.g. OrderDisorderedStructureTransformation)"
            )
        bad = sorted({str(sp) for sp in structure.species if not 1 <= getattr(sp, "Z", 0) <= MAX_Z})
        if bad:
            raise UnsupportedElementError(f"{self.method} has no parameters for {bad} (supported: Z = 1 ... {MAX_Z})")
        if not np.all(np.isfinite(structure.frac_coords)):
            raise LabellingError("non-finite fractional coordinates")
        reason = implausible_cell_reason(structure)
        if reason:
            raise LabellingError(f"{structure.composition.reduced_formula}: implausible cell ({reason})")
        too_close = too_close_pair(structure, self.min_distance)
        if too_close:
            raise TooCloseAtomsError(f"{too_close} (minimum {self.min_distance} Å)")

    def supercell_matrix(self, structure, min_length: float | None = None) -> np.ndarray:
        """Integer matrix M (3, 3) of the Gamma-point supercell (rows: new lattice vectors in old ones).

        The most compact near-cubic supercell with all widths >= ``min_length`` Å
        and at most ``max_orbitals`` basis functions (pymatgen ``CubicSupercellTransformation``);
        if there is none, diagonal repeats, reduced where the cell stays widest
        until the cap holds.
        """
        from pymatgen.transformations.advanced_transformations import CubicSupercellTransformation

        min_length = self.min_length if min_length is None else min_length
        widths = perpendicular_widths(structure.lattice.matrix)
        if widths.min() >= min_length:
            return np.eye(3, dtype=int)
        cell_orbitals = sum(orbitals_per_atom(int(z), self.method) for z in structure.atomic_numbers)
        max_cells = max(1, self.max_orbitals // cell_orbitals)
        try:
            transformation = CubicSupercellTransformation(
                min_length=min_length, max_atoms=max_cells * len(structure)
            )
            transformation.apply_transformation(structure)
            matrix = np.rint(transformation.transformation_matrix).astype(int)
            if abs(round(np.linalg.det(matrix))) <= max_cells:
                return matrix
        except Exception:  # no cubic-ish supercell within the bounds: fall back to diagonal repeats
            pass
        repeats = np.maximum(1, np.ceil(min_length / widths - 1e-6)).astype(int)
        while repeats.prod() > max_cells and repeats.max() > 1:
            candidates = [(widths[i] * (repeats[i] - 1), i) for i in range(3) if repeats[i] > 1]
            repeats[max(candidates)[1]] -= 1
        return np.diag(repeats)

    # ----------------------------------------------------------------- labelling
    def label(self, structure) -> xr.DataArray:
        """Atom-level DOS of ``structure`` (site order kept), dims ("site", "energy").

        ``structure``: a pymatgen Structure, an ASE Atoms, or the path of a crystal file (CIF, POSCAR).

        ``attrs`` carry the Fermi level (eV, absolute xTB scale), band gap (eV), the sampling
        (k-mesh or supercell), the SCF settings that converged, SCF energy per atom (eV) and
        wall time (s).

        Raises:
            LabellingError: (subclasses) unsupported element, disorder, atoms too close,
                SCF not converged under any retry setting, ill-conditioned basis.
        """
        from crystaldos.structures import as_structure

        structure = as_structure(structure)
        self.check(structure)
        start = time.perf_counter()
        if self.sampling == "gamma":
            scf = self._converged_scf(structure)
            values, efermi, gap, extra = self._gamma_dos(structure, scf)
        else:
            # The charges come from the primitive cell, whatever cell describes the crystal: a
            # Gamma-point SCF samples the zone differently in every supercell, and its shell
            # populations (metals above all) would make the DOS depend on the cell choice.
            primitive, site_map = primitive_site_map(structure)
            scf = self._converged_scf(primitive)
            values, efermi, gap, extra = self._kmesh_dos(structure, scf, primitive, site_map)
        self.check_spectrum(structure, gap)
        dos = site_dos(
            np.clip(values, 0.0, None),
            [site.specie.symbol for site in structure],
            self.grid,
            labeller=self.method,
            sampling=self.sampling,
            efermi_eV=float(efermi),
            band_gap_eV=float(gap),
            supercell_matrix=scf.matrix.reshape(-1).tolist(),
            supercell_atoms=len(scf.numbers),
            scf_temperature_K=float(scf.temperature),
            scf_damping=float(scf.damping),
            energy_per_atom_eV=float(scf.result.get("energy")) * EV_PER_HARTREE / len(scf.numbers),
            wall_time_s=time.perf_counter() - start,
            **extra,
        )
        # Format 1 (Gamma-point levels) stays as it was labelled; converged labels obey the crystal's symmetry.
        return dos if self.sampling == "gamma" else self.symmetrise(structure, dos)

    def symmetrise(self, structure, dos: xr.DataArray) -> xr.DataArray:
        """``dos`` averaged over symmetry-equivalent sites (:func:`~crystaldos.labellers.symmetry.symmetrise_site_dos`).

        Raises:
            SymmetryBrokenError: the sites differed from their orbit's mean by more than ``max_equivalent_spread``.
        """
        symmetric, spread = symmetrise_site_dos(dos, structure)
        if self.max_equivalent_spread is not None and spread > self.max_equivalent_spread:
            raise SymmetryBrokenError(
                f"{structure.composition.reduced_formula}: symmetry-equivalent sites' DOS differ from their mean by up to "
                f"{spread:.3f} states/eV/atom (> {self.max_equivalent_spread}, the label noise): the label broke the "
                "crystal's symmetry (GFN2's multipole terms left out, or a symmetry-broken SCF; docs/research/labeller.md), "
                "so it is not the crystal's DOS"
            )
        return symmetric

    def scf_attempts(self) -> list[tuple[float, float, float, int]]:
        """(electronic temperature K, mixer damping, supercell width Å, iterations) tried in turn until the
        SCF converges.

        The first is the configured one with at most 100 iterations (a converging SCF needs far fewer;
        a failing one would waste the rest); the retry smears the occupations more (metals with nearly
        degenerate levels at E_F oscillate between fillings) and damps the charge mixing. Its label stays
        within the label noise of the first attempt's (median MAE 0.02 states/eV/atom on 12 crystals that
        converged at once; ``benchmarks/labeller/scf_retry_consistency.py``). A third attempt (10000 K in a 6 Å
        supercell), which rescued 6 % of the crystals, was dropped on 2026-11-28: its labels differ from
        the first attempt's by a median 0.05 on 10 metals and 0.13 on KCl, up to 0.30, 2-10 times the label
        noise, so they are not the crystal's DOS; the data build drops labels made with it
        (:meth:`check_scf_settings`).
        """
        t, length, n = self.electronic_temperature, self.min_length, self.max_iterations
        if not self.retry_scf:
            return [(t, 0.4, length, n)]
        return [
            (t, 0.4, length, min(n, 100)),
            (max(t, 5000.0), 0.1, length, n),
        ]

    def check_scf_settings(self, properties: dict) -> None:
        """Raise :class:`SCFConvergenceError` if a stored label's SCF (its ``scf_temperature_K`` property) ran at a
        temperature none of :meth:`scf_attempts` uses: a label made by an older labeller with a retry that was
        dropped. Labels that do not record the temperature pass."""
        temperature = properties.get("scf_temperature_K")
        allowed = sorted({attempt[0] for attempt in self.scf_attempts()})
        if temperature is not None and np.isfinite(temperature) and not any(np.isclose(temperature, a) for a in allowed):
            raise SCFConvergenceError(
                f"the SCF converged only at {temperature:.0f} K, a retry the labeller no longer makes (it uses "
                f"{', '.join(f'{a:.0f}' for a in allowed)} K): its label moves by 2-10 times the label noise"
            )

    def _converged_scf(self, structure) -> "_GammaSCF":
        """Gamma-point SCF of the supercell, retried with the :meth:`scf_attempts` settings."""
        formula = structure.composition.reduced_formula
        failures = []
        for temperature, damping, length, iterations in self.scf_attempts():
            try:
                return self._gamma_scf(structure, temperature, damping, length, iterations)
            except Exception as err:  # tblite raises TBLiteRuntimeError with the reason
                failures.append((temperature, damping, length, str(err)))
        messages = [m for *_, m in failures]
        tried = "; ".join(f"T={t:.0f} K, damping {d}, {w:.0f} Å: {m[:60]}" for t, d, w, m in failures)
        if all("eigenvalue problem" in m for m in messages):  # LAPACK sygvd: overlap not positive definite
            raise IllConditionedBasisError(f"{formula}: overlap matrix not positive definite ({tried})")
        if any("converge" in m.lower() for m in messages):
            raise SCFConvergenceError(f"{formula}: SCF did not converge in {self.max_iterations} iterations ({tried})")
        raise LabellingError(f"{formula}: tblite failed ({tried})")

    def supercell_calculator(self, structure, temperature: float, damping: float, length: float, iterations: int):
        """A tblite Calculator of the Gamma-point supercell (>= ``length`` Å wide) of ``structure``, set up as
        the labeller runs it; also the supercell matrix (3, 3), the atomic numbers of its atoms in site-major
        order (the images of site i are rows i*n_images ... (i+1)*n_images-1) and the number of images."""
        from pymatgen.util.coord import lattice_points_in_supercell
        from tblite.interface import Calculator

        matrix = self.supercell_matrix(structure, length)
        # Lattice points of the primitive cell inside the supercell, in supercell fractions.
        images = lattice_points_in_supercell(matrix)
        n_images = len(images)
        super_lattice = matrix @ structure.lattice.matrix
        frac = (structure.frac_coords @ np.linalg.inv(matrix))[:, None, :] + images[None, :, :]
        frac = np.mod(frac.reshape(-1, 3), 1.0)
        numbers = np.repeat(np.array(structure.atomic_numbers), n_images)
        calc = Calculator(
            self.method,
            numbers,
            frac @ super_lattice * BOHR_PER_ANGSTROM,
            lattice=super_lattice * BOHR_PER_ANGSTROM,
            periodic=np.array([True, True, True]),
        )
        calc.set("verbosity", 0)
        calc.set("save-integrals", 1)
        calc.set("max-iter", iterations)
        calc.set("accuracy", self.accuracy)
        calc.set("temperature", temperature * KELVIN_TO_HARTREE)
        if damping != 0.4:  # tblite's default mixer damping
            calc.set("mixer-damping", damping)
        return calc, matrix, numbers, n_images

    def _gamma_scf(self, structure, temperature: float, damping: float, length: float, iterations: int) -> "_GammaSCF":
        calc, matrix, numbers, n_images = self.supercell_calculator(structure, temperature, damping, length, iterations)
        result = calc.singlepoint()
        owner = np.repeat(np.arange(len(numbers)), [orbitals_per_atom(int(z), self.method) for z in numbers])
        if owner.size != result.get("orbital-energies").size:
            raise LabellingError(f"orbital map has {owner.size} functions, tblite has {result.get('orbital-energies').size}")
        return _GammaSCF(result, matrix, numbers, n_images, owner, temperature, damping)

    def _gamma_dos(self, structure, scf: "_GammaSCF") -> tuple[np.ndarray, float, float, dict]:
        """Legacy sampling: Mulliken DOS of the Gamma-point supercell levels, averaged over images."""
        levels = scf.result.get("orbital-energies") * EV_PER_HARTREE  # (n_orb,)
        occupations = scf.result.get("orbital-occupations")  # (n_orb,), 0 ... 2
        coefficients = scf.result.get("orbital-coefficients")  # (n_orb, n_orb), columns are states
        overlap = scf.result.get("overlap-matrix")
        mulliken = coefficients * (overlap @ coefficients)  # (orbital, state)
        atom_weights = np.zeros((len(scf.numbers), levels.size))
        np.add.at(atom_weights, scf.owner, mulliken)
        site_weights = atom_weights.reshape(len(structure), scf.n_images, -1).mean(axis=1)  # average over images
        efermi, gap = self._fermi_level(levels, occupations)
        return broaden(levels - efermi, 2.0 * site_weights, self.grid), efermi, gap, {}

    def bloch_matrices(self, structure, scf: "_GammaSCF", primitive, site_map: np.ndarray):
        """F(T) and S(T) of ``structure`` (:class:`~crystaldos.labellers.bloch.RealSpaceMatrices`, Hartree) with the
        SCF potential of ``primitive`` (``scf``; ``site_map[i]`` is the primitive site of site i), plus GFN2's
        multipole blocks when ``multipole_blocks`` (then ``structure`` must be ``primitive``). Also returns the
        largest potential difference between the SCF supercell's images and the largest multipole term (Hartree).
        """

        prim_potential, prim_self_energy, spread, residual = scf.home_cell_potentials(
            primitive, self.method, self.overlap_tolerance
        )
        prim_orbitals = np.array([orbitals_per_atom(int(z), self.method) for z in primitive.atomic_numbers])
        prim_offsets = np.concatenate([[0], np.cumsum(prim_orbitals)])
        take = np.concatenate([np.arange(prim_offsets[j], prim_offsets[j + 1]) for j in site_map])
        potential, self_energy = prim_potential[take], prim_self_energy[take]
        matrices = bloch.two_centre_matrices(
            structure, self.method, self_energy, potential, prim_orbitals[site_map], tolerance=self.overlap_tolerance
        )
        if self.multipole_blocks:
            if len(structure) != len(primitive):
                raise ValueError("multipole blocks come from the primitive cell's SCF: build the primitive cell's matrices")
            matrices = bloch.with_blocks(matrices, scf.residual_blocks(primitive, self.method))
        return matrices, spread, residual

    def _kmesh_dos(
        self, structure, scf: "_GammaSCF", primitive, site_map: np.ndarray
    ) -> tuple[np.ndarray, float, float, dict]:
        """Converged sampling: Bloch sums of two-centre matrices on a k-mesh (``crystaldos.labellers.bloch``).

        ``scf`` is the Gamma-point SCF of ``primitive``; ``site_map[i]`` is the primitive site of site i.
        """

        if self.multipole_blocks:
            # The multipole blocks are the primitive cell's: label it, and give every site its primitive site's DOS
            # (a converged DOS does not depend on the cell, docs/research/labeller.md).
            cell_site_map, structure = site_map, primitive
            site_map = np.arange(len(primitive))
        matrices, spread, residual = self.bloch_matrices(structure, scf, primitive, site_map)
        mesh, kpoints = bloch.monkhorst_pack(structure, self.k_density)
        n_orb = len(matrices.owner)
        chunk = max(1, int(4e6 // n_orb**2))  # bounds the (n_k, n, n) complex work arrays to ~64 MB each
        energies, weights, dropped = [], [], 0
        for first in range(0, len(kpoints), chunk):
            hk, sk = matrices.at(kpoints[first : first + chunk])
            e, w, d = bloch.solve(hk, sk, self.overlap_threshold)
            energies.append(e)
            weights.append(bloch.site_weights(w, matrices.owner, len(structure)))  # (n_sites, n_k * n_bands)
            dropped += d
        n_k = len(kpoints)
        n_electrons = float(scf.result.get("orbital-occupations").sum()) / scf.n_images * len(structure) / len(primitive)
        efermi, gap = bloch.fermi_level(np.concatenate(energies), n_electrons, self.gap_threshold)
        # Broadened chunk by chunk (bounds the level x grid kernel); each k-point weighs 1 / n_k.
        values = sum(broaden(e.ravel() - efermi, 2.0 * w / n_k, self.grid) for e, w in zip(energies, weights))
        if self.multipole_blocks:
            values = values[cell_site_map]
        extra = {
            "k_mesh": mesh.tolist(),
            "n_translations": int(len(matrices.translations)),
            "dropped_overlap_vectors": int(dropped),
            "multipole_residual_eV": float(residual * EV_PER_HARTREE),
            "image_potential_spread_eV": float(spread * EV_PER_HARTREE),
        }
        return values, efermi, gap, extra

    def check_spectrum(self, structure, band_gap: float) -> None:
        """Raise :class:`IllConditionedBasisError` if the band gap (eV) is beyond ``max_gap``."""
        if band_gap > self.max_gap:
            raise IllConditionedBasisError(
                f"{structure.composition.reduced_formula}: band gap {band_gap:.0f} eV > {self.max_gap} eV: "
                "nearly linearly dependent basis functions pushed the empty states to unphysical energies"
            )

    def _fermi_level(self, levels: np.ndarray, occupations: np.ndarray) -> tuple[float, float]:
        """Fermi level (eV) and band gap (eV, 0 for metals) from levels and occupations."""
        n_electrons = float(occupations.sum())
        kt = max(self.electronic_temperature * KELVIN_TO_HARTREE * EV_PER_HARTREE, 1e-4)
        lo, hi = levels.min() - 1.0, levels.max() + 1.0
        for _ in range(200):  # bisection for the chemical potential of the smeared occupations
            mu = 0.5 * (lo + hi)
            x = np.clip((levels - mu) / kt, -200, 200)
            if (2.0 / (1.0 + np.exp(x))).sum() > n_electrons:
                hi = mu
            else:
                lo = mu
        below, above = levels[levels <= mu], levels[levels > mu]
        if len(below) and len(above):
            homo, lumo = below.max(), above.min()
            filled = occupations[levels <= mu].min() > 2.0 - 1e-2
            empty = occupations[levels > mu].max() < 1e-2
            if filled and empty and lumo - homo > self.gap_threshold:
                return 0.5 * (homo + lumo), float(lumo - homo)
        return float(mu), 0.0

    def label_many(
        self,
        structures: Sequence,
        n_jobs: int = 1,
        progress: bool = True,
        errors: Literal["raise", "return"] = "raise",
        executor=None,
    ) -> list[xr.DataArray | LabellingError]:
        """Label many structures, in input order, with a tqdm bar and a process pool or any executor.

        Args:
            structures: pymatgen Structures.
            n_jobs: worker processes of the local pool (each runs tblite with one OpenMP thread);
                ignored when ``executor`` is given.
            progress: show a (notebook-aware) progress bar.
            errors: ``"raise"`` stops at the first :class:`LabellingError`;
                ``"return"`` puts the error object in that structure's place.
            executor: anything with ``submit(fn, *args)`` returning futures with ``.result()``:
                a ``concurrent.futures`` executor or a ``dask.distributed.Client`` (many machines;
                start its workers with ``OMP_NUM_THREADS=1``). The caller owns and closes it.
        """
        from tqdm.auto import tqdm

        results: list = [None] * len(structures)
        bar = tqdm(total=len(structures), desc=f"{self.method} DOS", disable=not progress)
        pool = None
        if executor is None and n_jobs <= 1:
            futures: list = []
            outcomes: Iterable = ((i, label_or_error(self, s)) for i, s in enumerate(structures))
        else:
            if executor is None:
                pool = local_pool(n_jobs)
            futures = self.submit_many(structures, executor or pool)
            outcomes = ((i, f.result()) for i, f in enumerate(futures))
        try:
            for i, outcome in outcomes:
                if isinstance(outcome, LabellingError) and errors == "raise":
                    raise outcome
                results[i] = outcome
                bar.update()
        finally:
            bar.close()
            if pool is not None:
                pool.shutdown(cancel_futures=True)
            elif executor is not None:
                for future in futures:  # do not leave work running on someone else's executor
                    future.cancel()
        return results

    def submit_many(self, structures: Sequence, executor) -> list:
        """Submit one labelling task per structure to ``executor`` (``submit(fn, *args)``: a
        ``concurrent.futures`` executor or a ``dask.distributed.Client``); each future's result is
        the DOS or the :class:`LabellingError` that structure raised."""
        return [executor.submit(label_or_error, self, s) for s in structures]

    @classmethod
    def from_attrs(cls, attrs: dict) -> "XTBLabeller":
        """The labeller a data set was built with (its ``labeller_*`` and ``grid_*`` attributes).

        Use it to check generated structures against that data set on equal terms.
        """
        names = {f.name: f.type for f in fields(cls) if f.name != "grid"}
        settings = {name: attrs[f"labeller_{name}"] for name in names if f"labeller_{name}" in attrs}
        if "labeller_method" not in attrs:
            raise KeyError("attributes carry no labeller settings (no 'labeller_method')")
        types = {"method": str, "sampling": str, "max_orbitals": int, "max_iterations": int, "retry_scf": bool,
                 "multipole_blocks": bool}
        settings = {k: types.get(k, float)(v) for k, v in settings.items()}
        # Data sets written before the k-mesh labeller carry no 'labeller_sampling' and no retries.
        settings.setdefault("sampling", "gamma")
        settings.setdefault("retry_scf", False)
        return cls(grid=DosGrid.from_attrs(attrs), **settings)

    @classmethod
    def for_dataset(cls, attrs: dict) -> "XTBLabeller":
        """The labeller to recompute DOS comparable with a data set's labels.

        ``from_attrs`` when the attributes record the labeller settings (every data set built by
        crystaldos does); otherwise the default settings on the data set's energy grid (e.g. a
        Materials Project file labelled elsewhere).
        """
        if "labeller_method" in attrs:
            return cls.from_attrs(attrs)
        return cls(grid=DosGrid.from_attrs(attrs))

    def describe(self) -> dict:
        """Labeller settings as flat netCDF-friendly attributes."""
        settings = {k: (int(v) if isinstance(v, bool) else v) for k, v in asdict(self).items() if k != "grid" and v is not None}
        return {f"labeller_{k}": v for k, v in settings.items()} | self.grid.to_attrs()


def primitive_site_map(structure, tolerance: float = 0.01) -> tuple[object, np.ndarray]:
    """The primitive cell of ``structure`` and the primitive site of each of its sites, (n_sites,).

    pymatgen's ``get_primitive_structure`` keeps the Cartesian frame, so site i maps to the
    primitive site of the same element whose position differs from it by a primitive lattice
    vector. If the map is not complete (numerical noise beyond ``tolerance`` Å), the structure
    itself is returned with the identity map.
    """
    primitive = structure.get_primitive_structure(tolerance=tolerance)
    if len(primitive) == len(structure):
        return structure, np.arange(len(structure))
    frac = primitive.lattice.get_fractional_coords(structure.cart_coords)  # (n, 3) in primitive fractions
    delta = frac[:, None, :] - primitive.frac_coords[None, :, :]
    distance = np.linalg.norm((delta - np.rint(delta)) @ primitive.lattice.matrix, axis=-1)  # (n, n_prim)
    same = np.array([[a.specie == b.specie for b in primitive] for a in structure])
    distance = np.where(same, distance, np.inf)
    site_map = distance.argmin(axis=1)
    if distance[np.arange(len(structure)), site_map].max() > 10 * tolerance:
        return structure, np.arange(len(structure))
    return primitive, site_map


@dataclass
class _GammaSCF:
    """A converged Gamma-point supercell calculation and how its atoms map to the cell's sites."""

    result: object  # tblite Result
    matrix: np.ndarray  # (3, 3) supercell matrix
    numbers: np.ndarray  # atomic numbers of the supercell, site-major
    n_images: int
    owner: np.ndarray  # supercell atom of every orbital
    temperature: float
    damping: float

    @cached_property
    def potential_and_residual(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-orbital potential V = diag(F - H0) / diag(S) (n,) and the rest, F - H0 - S o (V + V^T) / 2 (n, n), of
        the supercell (Hartree): the multipole terms of GFN2 (zero in GFN1). Computed once per SCF."""
        overlap = self.result.get("overlap-matrix")
        core = self.result.get("hamiltonian-matrix")
        sc = overlap @ self.result.get("orbital-coefficients")
        fock = (sc * self.result.get("orbital-energies")) @ sc.T  # F = S C diag(eps) C^T S
        potential = np.diag(fock - core) / np.diag(overlap)
        return potential, fock - core - 0.5 * overlap * (potential[:, None] + potential[None, :])

    def residual_blocks(self, structure, method: str) -> dict[tuple[int, int, int], np.ndarray]:
        """The supercell's non-two-centre rest (:attr:`potential_and_residual`) as F(T) blocks of ``structure``'s
        orbitals, one (n_orb, n_orb) array per lattice vector T (Hartree).

        Each supercell pair is assigned to the lattice vector of its minimum image and averaged over the home
        atom's images, so H(k) at the supercell's k-points is tblite's supercell Fock matrix again; the terms
        (dipole and quadrupole integrals times potentials) decay like the overlap, well inside the >= 8 Å cell.
        """
        from pymatgen.util.coord import lattice_points_in_supercell

        _, residual = self.potential_and_residual
        images = lattice_points_in_supercell(self.matrix)  # the order supercell_calculator used
        n, n_sites = self.n_images, len(structure)
        frac = np.mod(((structure.frac_coords @ np.linalg.inv(self.matrix))[:, None, :] + images[None]).reshape(-1, 3), 1.0)
        sizes = np.array([orbitals_per_atom(int(z), method) for z in self.numbers])
        sc_offsets = np.concatenate([[0], np.cumsum(sizes)])
        cell_sizes = sizes[::n]
        cell_offsets = np.concatenate([[0], np.cumsum(cell_sizes)])
        n_orb = int(cell_offsets[-1])
        blocks: dict[tuple[int, int, int], np.ndarray] = {}
        x = structure.frac_coords
        for i in range(n_sites):
            for m in range(n):
                a = i * n + m
                shift = frac - frac[a]
                shift -= np.rint(shift)  # minimum image in the supercell
                cell_shift = shift @ self.matrix  # in the cell's fractional coordinates
                for b in range(len(self.numbers)):
                    j = b // n
                    t = tuple(np.rint(x[i] + cell_shift[b] - x[j]).astype(int).tolist())
                    block = blocks.setdefault(t, np.zeros((n_orb, n_orb)))
                    block[cell_offsets[i]:cell_offsets[i + 1], cell_offsets[j]:cell_offsets[j + 1]] += (
                        residual[sc_offsets[a]:sc_offsets[a + 1], sc_offsets[b]:sc_offsets[b + 1]] / n)
        return blocks

    def home_cell_potentials(
        self, structure, method: str, tolerance: float
    ) -> tuple[np.ndarray, np.ndarray, float, float]:
        """Per-orbital SCF potential V and bulk self-energy h of the cell's orbitals (Hartree).

        Returns V and h averaged over the images, the largest difference between images
        (a symmetry-broken SCF when large) and the largest element of F - H0 - S o (V + V^T)/2
        (GFN2's multipole terms, which the k-mesh DOS leaves out).
        """

        core = self.result.get("hamiltonian-matrix")
        potential, residual = self.potential_and_residual
        superlattice = self.matrix @ structure.lattice.matrix
        core_diagonal = np.diag(core)
        image_overlap = {z: image_sums(method, z, superlattice, tolerance) for z in set(structure.atomic_numbers)}
        # Orbitals are atom-major and atoms site-major: (site, image, orbital-of-atom).
        v_out, h_out, first, spread = [], [], 0, 0.0
        for z in structure.atomic_numbers:
            count = orbitals_per_atom(int(z), method)
            block = slice(first, first + count * self.n_images)
            v_images = potential[block].reshape(self.n_images, count)
            h_images = core_diagonal[block].reshape(self.n_images, count) / (1.0 + image_overlap[z])
            spread = max(spread, float(np.ptp(v_images, axis=0).max()))
            v_out.append(v_images.mean(axis=0))
            h_out.append(h_images.mean(axis=0))
            first += count * self.n_images
        return np.concatenate(v_out), np.concatenate(h_out), spread, float(np.abs(residual).max())


def _single_thread() -> None:
    """Pool initialiser: one thread per worker, for tblite (set before it loads) and for torch (CHGNet).

    Torch is already imported when this runs (unpickling it imports the package), with one thread per core: two
    workers on two cores then ran four threads, and relaxations in the pool took 3-6 times as long.
    """
    import sys

    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["OMP_STACKSIZE"] = "1G"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def local_pool(n_jobs: int) -> ProcessPoolExecutor:
    """A pool of ``n_jobs`` spawned worker processes, each running tblite on one OpenMP thread."""
    import multiprocessing as mp

    return ProcessPoolExecutor(n_jobs, mp_context=mp.get_context("spawn"), initializer=_single_thread)


def label_or_error(labeller: XTBLabeller, structure) -> xr.DataArray | LabellingError:
    """``labeller.label(structure)``, or the :class:`LabellingError` it raised (a task for executors)."""
    try:
        return labeller.label(structure)
    except LabellingError as err:
        return err


def label(structure, grid: DosGrid | None = None, **settings) -> xr.DataArray:
    """Atom-level DOS of one structure with a default :class:`XTBLabeller` (see its attributes)."""
    return XTBLabeller(grid=grid or DosGrid(), **settings).label(structure)
