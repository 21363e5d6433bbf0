"""Relax crystals to equilibrium with a universal interatomic potential (CHGNet).

Positions and cell are relaxed together (ASE's ``FrechetCellFilter``, FIRE), with CHGNet's
pretrained weights, which ship inside the ``chgnet`` wheel: nothing is downloaded. Install
with the optional extra ``pip install crystaldos[relax]``.

A relaxation that does not converge, that turns the crystal into another one, or that changes
its volume by more than ``max_volume_change`` is refused by :meth:`Relaxer.check` with a
:class:`RelaxationError` naming the cause; the data build leaves such crystals out and counts them.

Example::

    from crystaldos.relax import Relaxer
    result = Relaxer().relax(structure)        # any ordered pymatgen Structure (or ASE Atoms)
    result.structure, result.energy_per_atom   # relaxed crystal, eV/atom
"""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np

from crystaldos.geometry import VOLUME_PER_ATOM_RANGE, implausible_cell_reason

#: ASE optimisers a :class:`Relaxer` can use.
OPTIMIZERS = ("FIRE", "BFGS", "LBFGS")

#: eV/Å³ per GPa.
EV_PER_A3_PER_GPA = 1.0 / 160.21766208


class RelaxationError(ValueError):
    """A crystal whose relaxation is not usable; the message names the cause."""

    cause = "relaxation failed"


class NotConvergedError(RelaxationError):
    """The largest force (or stress) was still above the tolerance after the step cap."""

    cause = "not converged"


class StructureChangedError(RelaxationError):
    """The relaxed crystal no longer matches its start (StructureMatcher): it fell into another structure."""

    cause = "changed structure"


class VolumeChangeError(RelaxationError):
    """The volume changed by more than the bound: the start was too far from any minimum to trust."""

    cause = "volume change"


class ImplausibleCellError(RelaxationError):
    """The crystal's cell is not a physical one to start from (volume per atom outside 2 ... 200 Å³, faces closer
    than 1 Å): the potential's neighbour lists would exhaust the memory."""

    cause = "implausible cell"


class _RunawayCell(Exception):
    """Raised inside the optimiser to stop a relaxation whose cell collapses or swells without end."""


@dataclass
class RelaxResult:
    """One relaxation.

    Attributes:
        structure: the relaxed crystal (pymatgen Structure, same site order as the input).
        initial: the input crystal.
        energy_per_atom: potential energy of the relaxed crystal, eV/atom (CHGNet's, MP-compatible scale).
        steps: optimiser steps taken.
        max_force: largest residual force, eV/Å.
        max_stress: largest residual stress component, GPa.
        volume_change: relative volume change V_relaxed / V_initial - 1.
        converged: whether forces and stress fell below the tolerance within the step cap.
        model: name and version of the potential (e.g. ``"CHGNet 0.3.0"``).
        wall_time_s: seconds.
        stopped: why the relaxation was stopped before the step cap (the cell ran away), else None.
    """

    structure: object
    initial: object
    energy_per_atom: float
    steps: int
    max_force: float
    max_stress: float
    volume_change: float
    converged: bool
    model: str
    wall_time_s: float
    stopped: str | None = None

    def properties(self) -> dict:
        """The scalar results as a flat dict (stored with each crystal of the data set)."""
        return {
            "relax_energy_per_atom_eV": self.energy_per_atom,
            "relax_steps": self.steps,
            "relax_max_force_eV_per_A": self.max_force,
            "relax_max_stress_GPa": self.max_stress,
            "relax_volume_change": self.volume_change,
            "relax_wall_time_s": self.wall_time_s,
        }


@lru_cache(maxsize=1)
def _chgnet():
    """CHGNet's bundled pretrained model (loaded once per process, on the CPU)."""
    try:
        from chgnet.model import CHGNet
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError("relaxing needs CHGNet: pip install 'crystaldos[relax]' (or pip install chgnet)") from err
    return CHGNet.load(verbose=False, use_device="cpu")


def potential_name() -> str:
    """Name and version of the potential's weights, e.g. ``"CHGNet 0.3.0"``."""
    model = _chgnet()
    return f"CHGNet {getattr(model, 'version', None) or 'unknown'}"


@dataclass(frozen=True)
class Relaxer:
    """Relax positions and cell with CHGNet until the largest force is below ``fmax``.

    Attributes:
        fmax: force tolerance, eV/Å; the cell's stress counts through the filter's virial
            (scaled to eV/Å by ASE's ``FrechetCellFilter``).
        max_steps: step cap of the FIRE optimiser.
        max_volume_change: largest accepted |V_relaxed / V_initial - 1| (None: any, within the physical range
            of volumes per atom, ``crystaldos.geometry.VOLUME_PER_ATOM_RANGE``).
        match_start: refuse a relaxed crystal that no longer matches its start.
        min_volume_per_atom: a cell shrinking below this volume per atom (Å³) and below its start is stopped as
            collapsing; its last steps are the slowest (each atom gains hundreds of neighbours within the potential's
            cut-off). Below ``VOLUME_PER_ATOM_RANGE``'s lower end any cell is stopped.
        relax_cell: relax the cell too (False: positions only).
        optimizer: ASE optimiser by name: ``"FIRE"``, ``"BFGS"`` or ``"LBFGS"``.
    """

    fmax: float = 0.05
    max_steps: int = 300
    max_volume_change: float | None = 0.5
    match_start: bool = True
    min_volume_per_atom: float = VOLUME_PER_ATOM_RANGE[0]
    relax_cell: bool = True
    optimizer: str = "FIRE"
    matcher_settings: dict = field(default_factory=lambda: dict(stol=0.5, angle_tol=10, ltol=0.3))

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")

    def describe(self) -> dict:
        """Settings and potential, as ``relax_*`` attributes of a data file."""
        settings = {f"relax_{k}": v for k, v in asdict(self).items() if k != "matcher_settings"}
        settings["relax_model"] = potential_name()
        return {k: (int(v) if isinstance(v, bool) else v) for k, v in settings.items()}

    def relax(self, structure) -> RelaxResult:
        """Relax ``structure`` (pymatgen Structure or ASE Atoms); see :class:`RelaxResult`.

        Never raises for a poor relaxation: :meth:`check` judges the result.
        """
        from ase import optimize
        from ase.filters import FrechetCellFilter
        from chgnet.model.dynamics import CHGNetCalculator
        from pymatgen.core import Structure
        from pymatgen.io.ase import AseAtomsAdaptor

        from crystaldos.structures import as_structure

        initial = as_structure(structure)
        if not initial.is_ordered:
            raise ValueError(f"{initial.composition.reduced_formula}: disordered sites; order the structure first")
        start = time.perf_counter()
        implausible = implausible_cell_reason(initial)
        if implausible:  # never hand it to the potential (0.1 Å³/atom took 16 GB in its first call)
            return RelaxResult(initial.copy(), initial, float("nan"), 0, float("nan"), float("nan"), 0.0, False,
                               potential_name(), time.perf_counter() - start, stopped=f"implausible cell: {implausible}")
        atoms = AseAtomsAdaptor.get_atoms(initial)
        with contextlib.redirect_stdout(io.StringIO()):  # it prints its device on every construction
            atoms.calc = CHGNetCalculator(model=_chgnet(), use_device="cpu")
        target = FrechetCellFilter(atoms) if self.relax_cell else atoms
        optimizer = getattr(optimize, self.optimizer)(target, logfile=None)
        start_volume = atoms.get_volume()
        collapsed = min(self.min_volume_per_atom, start_volume / len(atoms))
        ratio_bounds = (0.0, np.inf) if self.max_volume_change is None else (
            1.0 / (1.0 + 2 * self.max_volume_change), 1.0 + 2 * self.max_volume_change)

        def guard() -> None:
            # A cell that collapses or swells without end (seen for generated crystals) makes the potential's
            # neighbour lists grow until memory runs out (22 GB for a 12-atom cell); it is stopped long before, when
            # its volume leaves the physical range or twice the accepted change.
            volume = atoms.get_volume()
            per_atom, ratio = volume / len(atoms), volume / start_volume
            low, high = max(collapsed, VOLUME_PER_ATOM_RANGE[0]), VOLUME_PER_ATOM_RANGE[1]
            if not (low <= per_atom <= high and ratio_bounds[0] <= ratio <= ratio_bounds[1]):
                raise _RunawayCell(f"the cell ran away (volume x {ratio:.2f}, {per_atom:.3g} Å³/atom, after {optimizer.nsteps} steps)")

        optimizer.attach(guard, interval=1)
        stopped = None
        try:
            converged = bool(optimizer.run(fmax=self.fmax, steps=self.max_steps))
        except _RunawayCell as runaway:
            converged, stopped = False, str(runaway)
        forces = atoms.get_forces()
        stress = atoms.get_stress(voigt=True) / EV_PER_A3_PER_GPA if self.relax_cell else np.zeros(6)
        # Same sites in the same order, wrapped into the cell, without the calculator's site properties.
        relaxed = Structure(np.array(atoms.cell), initial.species, atoms.get_scaled_positions(wrap=True))
        return RelaxResult(
            structure=relaxed,
            initial=initial,
            energy_per_atom=float(atoms.get_potential_energy()) / len(atoms),
            steps=int(optimizer.nsteps),
            max_force=float(np.linalg.norm(forces, axis=1).max()),
            max_stress=float(np.abs(stress).max()),
            volume_change=float(relaxed.volume / initial.volume - 1.0),
            converged=converged,
            model=potential_name(),
            wall_time_s=time.perf_counter() - start,
            stopped=stopped,
        )

    def check(self, result: RelaxResult) -> None:
        """Raise a :class:`RelaxationError` subclass naming why ``result`` is not a usable equilibrium crystal."""
        formula = result.initial.composition.reduced_formula
        if result.stopped and result.stopped.startswith("implausible cell"):
            raise ImplausibleCellError(f"{formula}: {result.stopped}")
        if result.stopped:
            raise VolumeChangeError(f"{formula}: {result.stopped}")
        if not result.converged:
            raise NotConvergedError(
                f"{formula}: largest force {result.max_force:.3f} eV/Å, largest stress {result.max_stress:.2f} GPa after "
                f"{result.steps} steps (tolerance {self.fmax} eV/Å on atoms and on the cell's stress times volume per atom)")
        if self.max_volume_change is not None and abs(result.volume_change) > self.max_volume_change:
            raise VolumeChangeError(
                f"{formula}: volume changed by {100 * result.volume_change:+.0f} % (bound ±{100 * self.max_volume_change:.0f} %)")
        if self.match_start:
            from pymatgen.analysis.structure_matcher import StructureMatcher

            if not StructureMatcher(**self.matcher_settings).fit(result.initial, result.structure):
                raise StructureChangedError(f"{formula}: the relaxed crystal no longer matches its start")

    def relax_checked(self, structure) -> RelaxResult:
        """:meth:`relax`, then :meth:`check` (raises :class:`RelaxationError`)."""
        result = self.relax(structure)
        self.check(result)
        return result


def relax_and_label(relaxer: Relaxer, labeller, structure, screen=None):
    """Relax ``structure``, check the relaxation, label the relaxed crystal: ``(RelaxResult, DOS)``, or the
    :class:`RelaxationError` / :class:`~crystaldos.labellers.LabellingError` that stopped it (a task for executors:
    one worker does both, so the relaxed crystal never travels between processes). ``screen``, if given, is called
    with the :class:`RelaxResult` before the labelling; a :class:`RelaxationError` it raises skips the labelling.
    A returned error carries ``seconds``, the wall time spent on the crystal before it failed (the build's cost)."""
    import time

    from crystaldos.labellers.errors import LabellingError

    start = time.perf_counter()
    try:
        result = relaxer.relax_checked(structure)
        if screen is not None:
            screen(result)
        return result, labeller.label(result.structure)
    except (RelaxationError, LabellingError) as err:
        err.seconds = time.perf_counter() - start  # kept by pickling (an exception's __dict__ travels with it)
        return err


def relax(structure, **settings) -> RelaxResult:
    """Relax one crystal with a default :class:`Relaxer` (``settings`` override its fields); unchecked."""
    return Relaxer(**settings).relax(structure)
