"""Atom-projected DOS from GFN1-xTB (through the ``tblite`` package).

Method, per structure:

1. Build a supercell whose perpendicular widths are at least ``min_length`` Å
   (Gamma-point sampling of the supercell = a regular k-mesh of the primitive
   cell), near-cubic (pymatgen's CubicSupercellTransformation), capped at
   ``max_orbitals`` basis functions (the supercell is then smaller).
2. Periodic GFN1-xTB single point (tblite), spin-restricted, Fermi smearing at
   ``electronic_temperature``.
3. Mulliken projection of every eigenvector n onto atoms A:
   ``w_An = sum_{mu in A} C_mu,n (S C)_mu,n`` (sums to 1 over atoms).
4. Fermi level from the occupations: mid-gap when the levels around the
   chemical potential are cleanly filled/empty with a gap > ``gap_threshold``
   eV, else the chemical potential of the smeared occupations.
5. Gaussian broadening of ``2 * w_An`` (both spins) onto the grid, averaged over
   the periodic images of every site: states/eV per atom (see ``crystaldos.dos``).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from typing import Iterable, Literal, Sequence

import numpy as np
import xarray as xr

from crystaldos.dos import DosGrid, broaden, site_dos
from crystaldos.geometry import implausible_cell_reason, perpendicular_widths

BOHR_PER_ANGSTROM = 1.0 / 0.52917721092
EV_PER_HARTREE = 27.211386245988
KELVIN_TO_HARTREE = 3.166811563e-6
MAX_Z = 86  # GFN1-xTB parameters cover H ... Rn


class LabellingError(ValueError):
    """A structure that cannot be labelled; the message names the reason."""


class UnsupportedElementError(LabellingError):
    """An element outside GFN1-xTB's parameterisation (Z = 1 ... 86) or a dummy species."""


class DisorderedStructureError(LabellingError):
    """A site with partial occupancy or mixed species."""


class TooCloseAtomsError(LabellingError):
    """Two atoms (or an atom and a periodic image) closer than the sane minimum."""


class SCFConvergenceError(LabellingError):
    """The self-consistent charge iterations did not converge."""


class IllConditionedBasisError(LabellingError):
    """Nearly linearly dependent basis functions (diffuse orbitals in dense cells) push states
    to unphysical energies, e.g. the whole conduction band to thousands of eV."""


@lru_cache(maxsize=None)
def orbitals_per_atom(z: int, method: str = "GFN1-xTB") -> int:
    """Number of basis functions tblite puts on an atom of atomic number ``z``.

    tblite orders basis functions atom by atom, so this is all that is needed
    to map orbitals to atoms. Read off a one-atom calculation (cached).
    """
    from tblite.interface import Calculator

    calc = Calculator(method, np.array([z]), np.zeros((1, 3)))
    calc.set("verbosity", 0)
    # Open-shell free atoms may need many smeared iterations; only the basis size is read.
    calc.set("max-iter", 500)
    return int(calc.singlepoint().get("norbitals"))


@dataclass(frozen=True)
class XTBLabeller:
    """Atom-level DOS of any ordered crystal from periodic GFN1-xTB.

    Attributes:
        grid: energy grid and broadening of the output.
        method: tblite method name.
        min_length: minimum perpendicular width of the Gamma-point supercell, Å.
        max_orbitals: cap on the supercell's basis functions (cost grows as orbitals**3);
            the supercell shrinks below ``min_length`` where needed.
        min_distance: atoms closer than this (Å, periodic images included) are rejected.
        electronic_temperature: Fermi smearing of the occupations, K.
        max_iterations: SCF iteration limit.
        accuracy: tblite's SCF threshold multiplier (1 = tight; larger is looser and faster,
            the DOS after 0.2 eV broadening barely changes).
        gap_threshold: smallest level spacing at E_F (eV) reported as a band gap.
        max_gap: largest believable band gap, eV (LiF, among the widest, has ~14 eV);
            a larger one means an ill-conditioned basis.
    """

    grid: DosGrid = field(default_factory=DosGrid)
    method: str = "GFN1-xTB"
    min_length: float = 8.0
    max_orbitals: int = 360
    min_distance: float = 0.5
    electronic_temperature: float = 300.0
    max_iterations: int = 250
    accuracy: float = 1.0
    gap_threshold: float = 0.1
    max_gap: float = 25.0

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
        centres, neighbours, _, distances = structure.get_neighbor_list(self.min_distance)
        if len(distances):
            k = int(np.argmin(distances))
            raise TooCloseAtomsError(
                f"sites {int(centres[k])} and {int(neighbours[k])} are {distances[k]:.3f} Å apart "
                f"(minimum {self.min_distance} Å)"
            )

    def supercell_matrix(self, structure) -> np.ndarray:
        """Integer matrix M (3, 3) of the Gamma-point supercell (rows: new lattice vectors in old ones).

        The most compact near-cubic supercell with all widths >= ``min_length`` Å
        and at most ``max_orbitals`` basis functions (pymatgen ``CubicSupercellTransformation``);
        if there is none, diagonal repeats, reduced where the cell stays widest
        until the cap holds.
        """
        from pymatgen.transformations.advanced_transformations import CubicSupercellTransformation

        widths = perpendicular_widths(structure.lattice.matrix)
        if widths.min() >= self.min_length:
            return np.eye(3, dtype=int)
        cell_orbitals = sum(orbitals_per_atom(int(z), self.method) for z in structure.atomic_numbers)
        max_cells = max(1, self.max_orbitals // cell_orbitals)
        try:
            transformation = CubicSupercellTransformation(
                min_length=self.min_length, max_atoms=max_cells * len(structure)
            )
            transformation.apply_transformation(structure)
            matrix = np.rint(transformation.transformation_matrix).astype(int)
            if abs(round(np.linalg.det(matrix))) <= max_cells:
                return matrix
        except Exception:  # no cubic-ish supercell within the bounds: fall back to diagonal repeats
            pass
        repeats = np.maximum(1, np.ceil(self.min_length / widths - 1e-6)).astype(int)
        while repeats.prod() > max_cells and repeats.max() > 1:
            candidates = [(widths[i] * (repeats[i] - 1), i) for i in range(3) if repeats[i] > 1]
            repeats[max(candidates)[1]] -= 1
        return np.diag(repeats)

    # ----------------------------------------------------------------- labelling
    def label(self, structure) -> xr.DataArray:
        """Atom-level DOS of ``structure`` (site order kept), dims ("site", "energy").

        ``attrs`` carry the Fermi level (eV, absolute xTB scale), band gap (eV),
        supercell repeats, SCF energy per atom (eV) and wall time (s).

        Raises:
            LabellingError: (subclasses) unsupported element, disorder, atoms too close,
                SCF not converged.
        """
        from pymatgen.util.coord import lattice_points_in_supercell
        from tblite.interface import Calculator

        self.check(structure)
        start = time.perf_counter()
        matrix = self.supercell_matrix(structure)
        # Lattice points of the primitive cell inside the supercell, in supercell fractions.
        images = lattice_points_in_supercell(matrix)
        n_images, n_sites = len(images), len(structure)
        super_lattice = matrix @ structure.lattice.matrix
        # Site-major order: the images of site i are rows i*n_images ... (i+1)*n_images-1.
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
        calc.set("max-iter", self.max_iterations)
        calc.set("accuracy", self.accuracy)
        calc.set("temperature", self.electronic_temperature * KELVIN_TO_HARTREE)
        try:
            result = calc.singlepoint()
        except Exception as err:  # tblite raises TBLiteRuntimeError with the reason
            message = str(err)
            formula = structure.composition.reduced_formula
            if "converge" in message.lower():
                raise SCFConvergenceError(f"{formula}: SCF did not converge in {self.max_iterations} iterations") from err
            if "eigenvalue problem" in message:  # LAPACK sygvd: overlap matrix not positive definite
                raise IllConditionedBasisError(f"{formula}: overlap matrix not positive definite ({message})") from err
            raise LabellingError(f"{formula}: tblite failed: {message}") from err

        levels = result.get("orbital-energies") * EV_PER_HARTREE  # (n_orb,)
        occupations = result.get("orbital-occupations")  # (n_orb,), 0 ... 2
        coefficients = result.get("orbital-coefficients")  # (n_orb, n_orb), columns are states
        overlap = result.get("overlap-matrix")
        mulliken = coefficients * (overlap @ coefficients)  # (orbital, state)
        owner = np.repeat(np.arange(len(numbers)), [orbitals_per_atom(int(z), self.method) for z in numbers])
        if owner.size != levels.size:
            raise LabellingError(f"orbital map has {owner.size} functions, tblite has {levels.size}")
        atom_weights = np.zeros((len(numbers), levels.size))
        np.add.at(atom_weights, owner, mulliken)
        site_weights = atom_weights.reshape(n_sites, n_images, -1).mean(axis=1)  # average over images

        efermi, gap = self._fermi_level(levels, occupations)
        self.check_spectrum(structure, gap)
        values = np.clip(broaden(levels - efermi, 2.0 * site_weights, self.grid), 0.0, None)
        return site_dos(
            values,
            [site.specie.symbol for site in structure],
            self.grid,
            labeller=self.method,
            efermi_eV=float(efermi),
            band_gap_eV=float(gap),
            supercell_matrix=matrix.reshape(-1).tolist(),
            supercell_atoms=len(numbers),
            energy_per_atom_eV=float(result.get("energy")) * EV_PER_HARTREE / len(numbers),
            wall_time_s=time.perf_counter() - start,
        )

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
    ) -> list[xr.DataArray | LabellingError]:
        """Label many structures, in input order, with a tqdm bar and a process pool.

        Args:
            structures: pymatgen Structures.
            n_jobs: worker processes (each runs tblite with one OpenMP thread).
            progress: show a (notebook-aware) progress bar.
            errors: ``"raise"`` stops at the first :class:`LabellingError`;
                ``"return"`` puts the error object in that structure's place.
        """
        from tqdm.auto import tqdm

        results: list = [None] * len(structures)
        bar = tqdm(total=len(structures), desc=f"{self.method} DOS", disable=not progress)
        if n_jobs <= 1:
            outcomes: Iterable = ((i, _label_or_error(self, s)) for i, s in enumerate(structures))
            pool = None
        else:
            import multiprocessing as mp

            pool = ProcessPoolExecutor(n_jobs, mp_context=mp.get_context("spawn"), initializer=_single_thread)
            futures = [pool.submit(_label_or_error, self, s) for s in structures]
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
        return results

    @classmethod
    def from_attrs(cls, attrs: dict) -> "XTBLabeller":
        """The labeller a data set was built with (its ``labeller_*`` and ``grid_*`` attributes).

        Use it to check generated structures against that data set on equal terms.
        """
        names = {f.name: f.type for f in fields(cls) if f.name != "grid"}
        settings = {name: attrs[f"labeller_{name}"] for name in names if f"labeller_{name}" in attrs}
        if "labeller_method" not in attrs:
            raise KeyError("attributes carry no labeller settings (no 'labeller_method')")
        types = {"method": str, "max_orbitals": int, "max_iterations": int}
        settings = {k: types.get(k, float)(v) for k, v in settings.items()}
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
        settings = {k: v for k, v in asdict(self).items() if k != "grid"}
        return {f"labeller_{k}": v for k, v in settings.items()} | self.grid.to_attrs()


def _single_thread() -> None:
    """Pool initialiser: one OpenMP thread per worker (set before tblite loads)."""
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["OMP_STACKSIZE"] = "1G"


def _label_or_error(labeller: XTBLabeller, structure) -> xr.DataArray | LabellingError:
    try:
        return labeller.label(structure)
    except LabellingError as err:
        return err


def label(structure, grid: DosGrid | None = None, **settings) -> xr.DataArray:
    """Atom-level DOS of one structure with a default :class:`XTBLabeller` (see its attributes)."""
    return XTBLabeller(grid=grid or DosGrid(), **settings).label(structure)
