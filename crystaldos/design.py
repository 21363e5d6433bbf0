"""Design crystals from a target DOS: generate, screen, relax, recompute the DOS, rank.

A raw sample's DOS means little: its geometry is a guess of the denoiser's, and a DOS moves with the volume.
So each sample is screened (cell and atom distances), relaxed with the universal potential
(:mod:`crystaldos.relax`), its DOS recomputed at the relaxed geometry with the labeller, and the candidates
are ranked by how far that DOS lies from the target. Use it through :meth:`crystaldos.Sampler.design`.
"""

from __future__ import annotations

import atexit
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from crystaldos.geometry import MIN_ATOM_DISTANCE

#: How a candidate's recomputed DOS is compared with the target (see :func:`dos_distance`).
DISTANCES = ("site", "total", "wasserstein")
#: The default ranking distance.
DEFAULT_DISTANCE = "site"


class DesignError(RuntimeError):
    """No sample survived screening, relaxation and labelling (the ``dropped`` reasons say why)."""

    def __init__(self, message: str, dropped: list) -> None:
        super().__init__(message)
        self.dropped = dropped


@dataclass
class DesignCandidate:
    """One designed crystal, relaxed and relabelled.

    Attributes:
        structure: the relaxed crystal (pymatgen Structure; sites in the target DOS's site order).
        dos: its atom-level DOS recomputed by the labeller at the relaxed geometry (dims site, energy).
        distance: how far ``dos`` lies from the target (:func:`dos_distance`; states/eV/atom, or eV for
            ``"wasserstein"``); lower is better.
        energy_per_atom: the potential's energy of the relaxed crystal, eV/atom.
        rank: 0 for the best candidate.
        sample: the raw sample it was relaxed from (:class:`~crystaldos.sampler.SampleResult`).
        relaxation: the :class:`~crystaldos.relax.RelaxResult` (steps, residual force, volume change).
    """

    structure: object
    dos: xr.DataArray
    distance: float
    energy_per_atom: float
    rank: int
    sample: object
    relaxation: object

    @property
    def atoms(self):
        """The relaxed crystal as an ASE ``Atoms``."""
        from crystaldos.structures import as_atoms

        return as_atoms(self.structure)

    def __repr__(self) -> str:
        return (f"DesignCandidate(#{self.rank} {self.structure.composition.reduced_formula}, distance={self.distance:.3f}, "
                f"energy_per_atom={self.energy_per_atom:.3f} eV)")


@dataclass
class Dropped:
    """A sample that did not become a candidate: its index among the samples, the raw crystal, and why."""

    sample_index: int
    structure: object
    stage: str  # "screen", "relax" or "label"
    reason: str


@dataclass
class DesignResult(Sequence):
    """The candidates of one design, ranked best first (index it like a list), and what was dropped.

    Attributes:
        candidates: ranked :class:`DesignCandidate` s.
        dropped: :class:`Dropped` samples with the stage and reason.
        target: the target DOS on the model's grid.
        distance: the name of the ranking distance.
        timings: seconds spent in "sample", "relax and label" and in all.
    """

    candidates: list[DesignCandidate]
    dropped: list[Dropped]
    target: xr.DataArray
    distance: str
    timings: dict = field(default_factory=dict)

    def __getitem__(self, index):
        return self.candidates[index]

    def __len__(self) -> int:
        return len(self.candidates)

    def table(self):
        """One row per candidate: rank, formula, distance, energy per atom, volume change on relaxation (pandas)."""
        import pandas as pd

        return pd.DataFrame([{
            "rank": c.rank, "formula": c.structure.composition.reduced_formula, f"distance ({self.distance})": c.distance,
            "energy_per_atom_eV": c.energy_per_atom, "relax_volume_change_pct": 100 * c.relaxation.volume_change,
            "sample": c.sample.settings.get("sample"),
        } for c in self.candidates]).set_index("rank")

    def __repr__(self) -> str:
        return (f"DesignResult({len(self.candidates)} candidates ranked by {self.distance} distance, "
                f"{len(self.dropped)} dropped, {self.timings.get('total', float('nan')):.1f} s)")


def dos_distance(dos: xr.DataArray, target: xr.DataArray, kind: str = DEFAULT_DISTANCE) -> float:
    """Distance between a candidate's DOS and the target (same sites, same grid).

    ``"site"``: mean over sites of the site-by-site MAE (states/eV/atom; site i of a sample was generated
    for site i of the target); ``"total"``: MAE of the total DOS per atom; ``"wasserstein"``: earth mover's
    distance (eV) between the area-normalised total DOS.
    """
    from crystaldos.metrics import dos_agreement

    if kind not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {kind!r}")
    agreement = dos_agreement(dos, target)
    return {"site": agreement["site_mae"], "total": agreement["total_mae"], "wasserstein": agreement["total_wasserstein"]}[kind]


#: Atoms of a raw sample closer than this (Å) cannot be pulled apart by a relaxation (the labeller's own limit).
MIN_SAMPLE_DISTANCE = MIN_ATOM_DISTANCE


def screen(structure) -> str | None:
    """Why a raw sample is not worth relaxing (None if it is): a cell no code can treat, or atoms on top of each
    other (closer than :data:`MIN_SAMPLE_DISTANCE`).

    Moderately short bonds are left to the relaxation: raw samples from noise have them in most crystals (7 of 8
    samples of a 12-atom MoC target had a pair closer than 0.6 x the covalent radii sum). Compositions are not
    screened with SMACT: on the first 16 val crystals it dropped 13 samples of compounds that are in the data set
    itself (AlB2, ZrCuSiAs, TiCuSiAs: neither ionic nor all-metal).
    """
    from crystaldos.geometry import implausible_cell_reason, too_close_pair

    reason = implausible_cell_reason(structure)
    if reason:
        return f"implausible cell: {reason}"
    return too_close_pair(structure, MIN_SAMPLE_DISTANCE)


#: With the retry (``Sampler.design(..., retry=True)``), a raw sample whose relaxation fails (it does not converge, or
#: its cell runs away) is relaxed once more from its cell expanded until no two atoms are closer than this fraction of
#: their covalent-radius sum, with a step cap of :data:`RETRY_MAX_STEPS`: raw samples have atoms far too close, and
#: CHGNet collapses many such cells (benchmarks/design/relax_survival.py, docs/research/design.md).
EXPAND_TO = 0.9
RETRY_MAX_STEPS = 1000

#: Force tolerance (eV/Å) for relaxing raw samples. On 12 val crystals x 8 samples (with the retry), 0.1 eV/Å kept 75 %
#: of the samples against 61 % at the data build's 0.05, lost none of the 5 that match their target, and took half the
#: time (benchmarks/design/relax_survival.py); its volumes lie within 0.9 % and its energies within 1.1 meV/atom of a
#: tight relaxation (benchmarks/relax/tolerance.py). Those crystals started near their minimum; a raw sample can stop
#: short of it (TlSe, Al2CdS4 on val: 13-17 meV/atom above the 0.05 eV/Å relaxation, DOS distance up by 0.03-0.11),
#: which costs the ranking (docs/research/design.md).
DESIGN_FMAX = 0.1

#: A sample that converged at :data:`DESIGN_FMAX` is relaxed on to this tolerance (eV/Å), for at most
#: :data:`REFINE_MAX_STEPS` more steps, before its DOS is computed: the loose tolerance decides cheaply which samples
#: survive, the tight one puts the survivors at their minimum (docs/research/design.md).
DESIGN_REFINE_FMAX = 0.05
REFINE_MAX_STEPS = 300

#: Step cap for relaxing raw samples. On the same 96 samples, without the retry, the six that relaxed into their target
#: converged in 23-69 steps; a cap of 100 keeps all six and 35 of the 42 that converge, in a fifth of the time
#: (docs/research/design.md, "Cost").
DESIGN_MAX_STEPS = 100

#: Volume per atom (Å³) below which a shrinking raw sample is stopped as collapsing. The densest crystal of the relaxed
#: data set has 5.3 Å³/atom (2,169 crystals; diamond 5.7); a 12-atom MoC target's collapsing samples spent 85 % of
#: the relaxation time on their way from here to the physical floor of 2 Å³/atom (docs/research/design.md, "Cost").
DESIGN_MIN_VOLUME_PER_ATOM = 4.0


def design_relaxer(**settings):
    """The relaxer :meth:`crystaldos.Sampler.design` uses on raw samples: :data:`DESIGN_FMAX`, at most
    :data:`DESIGN_MAX_STEPS` steps, collapsing cells stopped at :data:`DESIGN_MIN_VOLUME_PER_ATOM`, and no rule on
    the volume change or on matching the start (``settings`` override fields of :class:`crystaldos.relax.Relaxer`).

    A raw sample's cell is a guess (from noise, often half or twice the volume) and it may relax into another, better
    crystal: the relaxed one is the candidate, whatever its change.
    """
    from crystaldos.relax import Relaxer

    return Relaxer(**{"fmax": DESIGN_FMAX, "max_steps": DESIGN_MAX_STEPS, "min_volume_per_atom": DESIGN_MIN_VOLUME_PER_ATOM,
                      "match_start": False, "max_volume_change": None, **settings})


def expanded(structure, fraction: float = EXPAND_TO):
    """``structure`` scaled up isotropically until its closest pair of atoms is at least ``fraction`` of their
    covalent-radius sum (a copy; unchanged when it already is)."""
    from pymatgen.core.periodic_table import Element

    if len(structure) < 2:
        return structure.copy()
    distances = structure.distance_matrix + np.eye(len(structure)) * 1e6
    radii = np.array([Element(site.specie.symbol).atomic_radius_calculated or Element(site.specie.symbol).atomic_radius
                      for site in structure], dtype=float)
    ratio = float(np.min(distances / (radii[:, None] + radii[None, :])))
    scaled = structure.copy()
    if ratio < fraction:
        scaled.scale_lattice(structure.volume * (fraction / ratio) ** 3)
    return scaled


def relax_sample(relaxer, structure, retry: bool = False, refine_fmax: float | None = None):
    """Relax a raw sample: as it is, and (with ``retry``) if that fails to converge or its cell runs away, once more
    from its expanded cell with a step cap of at least :data:`RETRY_MAX_STEPS` (the retry's error is raised when it
    fails too). With ``refine_fmax`` below the relaxer's tolerance, a converged sample is then relaxed on to it for
    at most :data:`REFINE_MAX_STEPS` steps (kept at the looser tolerance if that does not converge)."""
    from dataclasses import replace

    from crystaldos.relax import NotConvergedError, VolumeChangeError

    try:
        result = relaxer.relax_checked(structure)
    except (NotConvergedError, VolumeChangeError):
        if not retry:
            raise
        longer = replace(relaxer, max_steps=max(relaxer.max_steps, RETRY_MAX_STEPS))
        result = longer.relax_checked(expanded(structure))
    if refine_fmax is None or refine_fmax >= relaxer.fmax:
        return result
    refined = replace(relaxer, fmax=refine_fmax, max_steps=REFINE_MAX_STEPS).relax(result.structure)
    if not refined.converged or refined.stopped:
        return result
    return replace(refined, initial=result.initial, steps=result.steps + refined.steps,
                   volume_change=refined.structure.volume / result.initial.volume - 1.0,
                   wall_time_s=result.wall_time_s + refined.wall_time_s)


def relax_and_label_sample(relaxer, labeller, structure, retry: bool = False, refine_fmax: float | None = None):
    """:func:`relax_sample`, then label the relaxed crystal: ``(RelaxResult, DOS)`` or the error that stopped it
    (a task for executors: one worker does both)."""
    from crystaldos.labellers.errors import LabellingError
    from crystaldos.relax import RelaxationError

    try:
        result = relax_sample(relaxer, structure, retry, refine_fmax)
        return result, labeller.label(result.structure)
    except (RelaxationError, LabellingError) as err:
        return err


_POOLS: dict[int, object] = {}


def shared_pool(jobs: int):
    """A process pool of ``jobs`` workers kept for this session (its workers load the potential once)."""
    if jobs not in _POOLS:
        from crystaldos.labellers.xtb import local_pool

        _POOLS[jobs] = local_pool(jobs)
        atexit.register(_POOLS[jobs].shutdown, cancel_futures=True)
    return _POOLS[jobs]


def warm_up() -> str:
    """Load the potential and import the labeller's library in this process; returns the potential's name.

    The first task of each pool worker, run while the main process samples, so that relaxing starts at once (a cold
    worker spends about 3 s importing and loading before its first relaxation)."""
    import tblite.interface  # noqa: F401  (the labeller's library, imported on first use otherwise)

    from crystaldos.relax import potential_name

    return potential_name()


def warm_pool(jobs: int) -> list:
    """Start the shared pool of ``jobs`` workers (:func:`shared_pool`) and give each a :func:`warm_up` task; returns
    the tasks' futures."""
    pool = shared_pool(jobs)
    return [pool.submit(warm_up) for _ in range(jobs)]


def verify(samples: Sequence, target: xr.DataArray, relaxer, labeller, distance: str = DEFAULT_DISTANCE, jobs: int = 2,
           executor=None, progress: bool = True, on_done: Callable[[int, int], None] | None = None, retry: bool = False,
           refine_fmax: float | None = DESIGN_REFINE_FMAX) -> tuple[list[DesignCandidate], list[Dropped]]:
    """Screen, relax and relabel ``samples`` (SampleResults), rank them by ``distance`` to ``target``.

    Args:
        jobs: worker processes of the local pool (1: in this process); ignored with ``executor``.
        executor: any ``concurrent.futures``-style executor (``submit``), e.g. a ``dask.distributed.Client``.
        on_done: called as ``on_done(done, total)`` as each sample finishes (e.g. a widget's progress bar).
        retry: relax a sample that fails once more from its expanded cell (:func:`relax_sample`; about twice the time).
        refine_fmax: relax a converged sample on to this tolerance before labelling it (None: as it converged).
    """
    from tqdm.auto import tqdm

    from crystaldos.relax import RelaxationError

    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
    dropped: list[Dropped] = []
    kept: list[int] = []
    for i, sample in enumerate(samples):
        reason = screen(sample.structure)
        if reason:
            dropped.append(Dropped(i, sample.structure, "screen", reason))
        else:
            kept.append(i)
    runner = executor or (shared_pool(jobs) if jobs > 1 and len(kept) > 1 else None)
    if runner is None:
        outcomes = (relax_and_label_sample(relaxer, labeller, samples[i].structure, retry, refine_fmax) for i in kept)
    else:
        futures = [runner.submit(relax_and_label_sample, relaxer, labeller, samples[i].structure, retry, refine_fmax)
                   for i in kept]
        outcomes = (f.result() for f in futures)
    candidates = []
    bar = tqdm(total=len(samples), initial=len(samples) - len(kept), desc="relax and label", disable=not progress)
    for done, (i, outcome) in enumerate(zip(kept, outcomes), start=len(samples) - len(kept) + 1):
        bar.update()
        if on_done is not None:
            on_done(done, len(samples))
        if isinstance(outcome, Exception):
            stage = "relax" if isinstance(outcome, RelaxationError) else "label"
            dropped.append(Dropped(i, samples[i].structure, stage, f"{type(outcome).__name__}: {outcome}"))
            continue
        relaxation, dos = outcome
        candidates.append(DesignCandidate(relaxation.structure, dos, np.nan, relaxation.energy_per_atom, -1, samples[i],
                                          relaxation))
    bar.close()
    dropped.sort(key=lambda d: d.sample_index)
    return rank(candidates, target, distance), dropped


def rank(candidates: list[DesignCandidate], target: xr.DataArray, distance: str = DEFAULT_DISTANCE) -> list[DesignCandidate]:
    """``candidates`` ordered by ``distance`` of their DOS to ``target`` (ties: lower energy first), with ``.distance``
    and ``.rank`` set accordingly."""
    for candidate in candidates:
        candidate.distance = dos_distance(candidate.dos, target, distance)
    ordered = sorted(candidates, key=lambda c: (c.distance, c.energy_per_atom))
    for position, candidate in enumerate(ordered):
        candidate.rank = position
    return ordered


def design(sampler, target, *, n_samples: int = 8, seed: int = 0, progress: bool = True, options=None, relaxer=None,
           labeller=None, distance: str = DEFAULT_DISTANCE, jobs: int = 2, executor=None, allow_untrained_sizes: bool = False,
           callback: Callable[[str, int, int], None] | None = None, retry: bool = False, **settings) -> DesignResult:
    """See :meth:`crystaldos.Sampler.design`."""
    from crystaldos.dos_inputs import as_site_dos
    from crystaldos.options import SamplingOptions

    start = time.perf_counter()
    structure = getattr(target, "structure", None)
    dos = getattr(target, "dos", target)  # a data set item (a reconstruction target) gives its DOS
    target_dos = as_site_dos(dos, sampler.grid, structure)
    options = SamplingOptions.build(options, **settings).replace(n_samples=n_samples, seed=seed,
                                                                  t_start=sampler.diffusion.timesteps)
    if relaxer is None:
        relaxer = design_relaxer()
    if labeller is None:
        from crystaldos.data.dataset import load_dataset
        from crystaldos.labellers import XTBLabeller

        labeller = XTBLabeller.for_dataset(load_dataset().attrs)  # the labeller of the models' training data
    if executor is None and jobs > 1 and n_samples > 1:
        warm_pool(jobs)  # the workers load the potential while this process samples
    step_callback = (lambda done, total: callback("sample", done, total)) if callback else None
    samples = sampler.generate(target_dos.sizes["site"], target_dos, options, progress=progress, callback=step_callback,
                               allow_untrained_sizes=allow_untrained_sizes)
    sampled = time.perf_counter()
    on_done = (lambda done, total: callback("relax and label", done, total)) if callback else None
    candidates, dropped = verify(samples, target_dos, relaxer, labeller, distance, jobs, executor, progress, on_done,
                                 retry)
    end = time.perf_counter()
    result = DesignResult(candidates, dropped, target_dos, distance,
                          {"sample": sampled - start, "relax and label": end - sampled, "total": end - start})
    if not candidates:
        reasons = "; ".join(f"sample {d.sample_index}: {d.reason[:80]}" for d in dropped[:4])
        raise DesignError(f"none of the {n_samples} samples survived screening, relaxation and labelling ({reasons}); "
                          "draw more samples or another seed", dropped)
    return result
