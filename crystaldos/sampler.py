"""Sampling: reconstruct crystals from their atom-level DOS, or design new ones, with CFG or CBG.

>>> from crystaldos import Sampler, load_dataset
>>> sampler = Sampler.from_pretrained()
>>> item = load_dataset().split("test")[0]
>>> result = sampler.reconstruct(item.structure, item.dos, guidance="cfg", t_start=200)[0]
>>> result.structure                   # pymatgen Structure

The reverse process is DiffCSP's: the reverse wrapped-normal step for X and
DDPM steps for the lattice and the one-hot atom types, with DiffCSP's Langevin
corrector on X as an option (``step_lr``). The defaults were chosen on the
validation split (:data:`DEFAULT_STEP_LR`, :data:`DEFAULT_LATTICE_STEP`,
:data:`DEFAULT_TIE_TYPES`; docs/research/lattice.md section 13).
``steps`` < ``t_start`` strides the schedule (each jump uses the exact DDPM
posterior and the VE reverse step between the two noise levels).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
import xarray as xr
from pymatgen.core import DummySpecies, Lattice, Structure
from torch_geometric.data import Batch

from crystaldos.checkpoint import PRETRAINED_DIR, build_network, checkpoint_grid, load_checkpoint
from crystaldos.data.graph import fully_connected_edges, structure_to_data
from crystaldos.device import resolve_device
from crystaldos.diffusion import DiffusionConfig, JointDiffusion
from crystaldos.diffusion.schedules import reverse_schedule
from crystaldos.dos import DosGrid, identical_sites, site_dos
from crystaldos.dos_inputs import as_site_dos, is_complete_dos
from crystaldos.guidance import CrystalState, Graph, Likelihood, cbg_output, cfg_output, denoise, dps_output
from crystaldos.structures import ACCEPTED as ACCEPTED_CRYSTALS
from crystaldos.structures import as_atoms, as_structure, is_crystal_like
from crystaldos.model import one_hot_types, types_to_atomic_numbers

# The options and their defaults live in crystaldos.options (one place); these names stay importable from here.
from crystaldos.options import (  # noqa: E402,F401
    AUTO_DDIM_MAX_T_START,
    DEFAULT_LATTICE_STEP,
    DEFAULT_STEP_LR,
    DEFAULT_TIE_TYPES,
    GUIDANCES,
    HYBRID_DDIM_MAX_T,
    LATTICE_STEPS,
    SamplingOptions,
)


def resolve_lattice_step(lattice_step: str, t_start: int) -> str:
    """The lattice step ``"ddpm"``, ``"ddim"`` or ``"hybrid"`` that ``lattice_step`` (one of :data:`LATTICE_STEPS`) means
    at ``t_start``."""
    return SamplingOptions(lattice_step=lattice_step, t_start=t_start).resolved_lattice_step()


def lattice_step_at(lattice_step: str, t_now: int) -> str:
    """The step ``"ddpm"`` or ``"ddim"`` a resolved ``lattice_step`` takes from noise level ``t_now``."""
    if lattice_step == "hybrid":
        return "ddim" if t_now <= HYBRID_DDIM_MAX_T else "ddpm"
    return lattice_step


@dataclass
class SampleResult:
    """One generated crystal and how it was made.

    Attributes:
        structure: the generated crystal (pymatgen Structure).
        dos_target: the atom-level DOS it was asked for (dims site, energy).
        dos_pred: the forward model's DOS of the generated crystal at t = 0 (same dims).
        trajectory: Structures along the reverse process (``keep_trajectory=True``),
            from t_start down to the final crystal; None otherwise.
        reference: the structure passed to ``reconstruct`` (None for ``generate``).
        settings: guidance, strength, t_start, steps, seed, sample index.
    """

    structure: Structure
    dos_target: xr.DataArray
    dos_pred: xr.DataArray
    trajectory: list[Structure] | None = None
    reference: Structure | None = None
    settings: dict = field(default_factory=dict)

    @property
    def guidance(self) -> str:
        return self.settings["guidance"]

    @property
    def atoms(self):
        """The generated crystal as an ASE ``Atoms``."""
        return as_atoms(self.structure)

    def __repr__(self) -> str:
        s = self.settings
        return f"SampleResult({self.structure.composition.reduced_formula}, guidance={s['guidance']}, strength={s['strength']}, t_start={s['t_start']})"


def _structure_from_tensors(types: torch.Tensor, frac: torch.Tensor, lattice: torch.Tensor) -> Structure:
    numbers = types_to_atomic_numbers(types).tolist()
    return Structure(Lattice(lattice.detach().cpu().double().numpy()), numbers, torch.remainder(frac, 1.0).detach().cpu().double().numpy())


def _is_array(dos) -> bool:
    return isinstance(dos, (xr.DataArray, np.ndarray)) or torch.is_tensor(dos)


def _dos_list(dos) -> list:
    """One DOS or several -> a list of DOS.

    One DOS: a DataArray (site, energy), or any array-like of shape (n_sites, n_energies), nested lists
    included (``dos.values.tolist()``). Several: a sequence of those, or one array of shape
    (n_crystals, n_sites, n_energies).
    """
    if isinstance(dos, xr.DataArray) or is_complete_dos(dos):
        return [dos]
    if _is_array(dos):
        return list(dos) if dos.ndim == 3 else [dos]
    if isinstance(dos, (str, bytes)) or not hasattr(dos, "__iter__"):
        raise TypeError(f"a DOS must be an xarray.DataArray, an array of shape (n_sites, n_energies) or a pymatgen CompleteDos, "
                        f"got {type(dos).__name__}")
    items = list(dos)
    if items and not any(_is_array(d) for d in items):  # nested lists of numbers
        try:
            values = np.asarray(items, dtype=np.float32)
        except (TypeError, ValueError) as err:
            raise ValueError("a DOS given as nested lists must be a rectangular array of numbers of shape "
                             f"(n_sites, n_energies); got ragged or non-numeric lists ({err})") from None
        if values.ndim not in (2, 3):
            raise ValueError(f"a DOS must have shape (n_sites, n_energies) (or (n_crystals, n_sites, n_energies) for "
                             f"several), got nested lists of shape {values.shape}")
        return [values] if values.ndim == 2 else list(values)
    return items


def _structure_list(structure) -> list[Structure]:
    """One crystal or several (Structure, ASE Atoms or file path each) -> a list of Structures."""
    if is_crystal_like(structure):
        return [as_structure(structure)]
    if isinstance(structure, (Sequence, np.ndarray)) and not isinstance(structure, (bytes, Mapping)):
        return [as_structure(s) for s in structure]
    raise TypeError(f"expected {ACCEPTED_CRYSTALS}, or a list of them; got {type(structure).__module__}.{type(structure).__qualname__}")


def _count_mismatch(what: str, n: int, doses: list) -> ValueError:
    shapes = ", ".join(str(tuple(np.shape(d))) for d in doses[:4]) + (", ..." if len(doses) > 4 else "")
    return ValueError(f"{n} {what} but {len(doses)} DOS (shapes {shapes}): give one DOS of shape (n_sites, n_energies) per "
                      f"crystal, e.g. an xarray.DataArray with dims ('site', 'energy') or a 2-D array")


def _training_sites(train: dict | None) -> tuple[int, int] | None:
    """The atom-count range of a checkpoint's training split (see ``Sampler.training_sites``)."""
    data = (train or {}).get("data", {})
    if "n_sites_range" in data:
        low, high = data["n_sites_range"]
        return int(low), int(high)
    from crystaldos.data.dataset import load_dataset

    default = load_dataset()
    if data.get("title") != default.attrs.get("title") or data.get("n_train") != len(default.split("train")):
        return None
    sizes = [len(item.structure) for item in default.split("train")]
    return min(sizes), max(sizes)


class Sampler:
    """The three trained networks (CFG denoiser, unconditional denoiser, DOS forward model) and the sampling loop."""

    def __init__(self, cfg_model, uncond_model, forward_model, diffusion: JointDiffusion, grid: DosGrid, calibration: dict, device=None) -> None:
        self.device = resolve_device(device)
        self.cfg_model = cfg_model.to(self.device).eval()
        self.uncond_model = uncond_model.to(self.device).eval() if uncond_model is not None else None
        self.forward_model = forward_model.to(self.device).eval()
        self.diffusion = diffusion.to(self.device)
        self.grid = grid
        self.likelihood = Likelihood(self.forward_model, calibration)
        # Why CBG must refuse, when the forward model was trained under other noise settings (from_checkpoints).
        self.forward_mismatch: str | None = None

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, device: str | None = None,
                        require_uncond: bool = True) -> "Sampler":
        """Load ``cfg.pt``, ``uncond.pt`` and ``forward.pt`` from ``path`` (default: the shipped models).
        ``require_uncond=False`` accepts a folder without ``uncond.pt`` (e.g. training runs' releases): the sampler
        then serves CFG, and CBG or unguided sampling with ``unconditional="cfg-null"``.

        Raises:
            CheckpointError: a missing, corrupt or mismatched checkpoint, naming the file.
        """
        folder = Path(path) if path is not None else PRETRAINED_DIR
        uncond = folder / "uncond.pt"
        if not require_uncond and not uncond.exists():
            uncond = None
        return cls.from_checkpoints(folder / "cfg.pt", folder / "forward.pt", uncond, device=device)

    @classmethod
    def from_checkpoints(cls, cfg: str | Path, forward: str | Path, uncond: str | Path | None = None,
                         device: str | None = None) -> "Sampler":
        """Build a sampler from individual checkpoint files, e.g. the ``model.pt`` of training runs.

        Args:
            cfg: the CFG denoiser's checkpoint.
            forward: the forward model's checkpoint (its DOS grid must be the CFG model's).
            uncond: the unconditional denoiser's; None gives a sampler without one (CFG, or CBG and
                unguided sampling with ``unconditional="cfg-null"``; "separate" then raises).

        Raises:
            CheckpointError: a missing, corrupt or mismatched checkpoint (another DOS grid or other
                diffusion settings), naming the file.
        """
        from crystaldos.checkpoint import CheckpointError

        loaded = {"cfg": load_checkpoint(cfg, kind="cfg")}
        grid = checkpoint_grid(loaded["cfg"])
        if uncond is not None:
            loaded["uncond"] = load_checkpoint(uncond, kind="uncond", grid=grid)
        loaded["forward"] = load_checkpoint(forward, kind="forward", grid=grid)
        # Through DiffusionConfig, so that a setting added later (at its default) compares equal to its absence.
        configs = {name: DiffusionConfig.from_dict(c["diffusion_config"]).to_dict() for name, c in loaded.items()}
        files = {"cfg": cfg, "uncond": uncond, "forward": forward}
        settings = "; ".join(f"{files[name]}: {c}" for name, c in configs.items())
        if "uncond" in configs and configs["uncond"] != configs["cfg"]:
            raise CheckpointError(f"the two denoisers use different diffusion settings: {settings}")
        # The forward model sees noised crystals only under CBG; a CFG-only sampler may pair it with a denoiser
        # trained under other noise settings (it then only predicts the clean samples' DOS), but CBG refuses.
        forward_mismatch = None
        if configs["forward"] != configs["cfg"]:
            if uncond is not None:
                raise CheckpointError(f"the checkpoints use different diffusion settings: {settings}")
            forward_mismatch = f"the forward model was trained under other diffusion settings than the denoiser ({settings})"
        diffusion = JointDiffusion(DiffusionConfig.from_dict(loaded["cfg"]["diffusion_config"]))
        uncond_model = build_network(loaded["uncond"]) if "uncond" in loaded else None
        sampler = cls(build_network(loaded["cfg"]), uncond_model, build_network(loaded["forward"]), diffusion, grid,
                      loaded["forward"]["calibration"], device)
        sampler.checkpoints = {name: c["train"] for name, c in loaded.items()}
        sampler.forward_mismatch = forward_mismatch
        return sampler

    # ------------------------------------------------------------------ inputs
    @property
    def training_sites(self) -> tuple[int, int] | None:
        """(fewest, most) atoms per cell in the CFG model's training split, or None when unknown.

        Read from the checkpoint (``train.data.n_sites_range``); checkpoints written before it was stored
        and trained on the embedded default data set get the range of that set's training split.
        """
        if not hasattr(self, "_training_sites"):
            self._training_sites = _training_sites(getattr(self, "checkpoints", {}).get("cfg"))
        return self._training_sites

    def _check_sizes(self, counts: Sequence[int], allow: bool) -> None:
        known = self.training_sites
        if known is None or not counts:
            return
        low, high = known
        outside = sorted({int(c) for c in counts if not low <= c <= high})
        if not outside:
            return
        message = (f"atom counts {outside} lie outside the {low} ... {high} atoms per cell these models were trained on; "
                   "their samples would be extrapolations the models never learnt")
        if not allow:
            raise ValueError(message + " (pass allow_untrained_sizes=True to sample anyway)")
        import warnings

        warnings.warn(message, UserWarning, stacklevel=3)

    def _dos_tensor(self, dos, n_sites: int | None, structure: Structure | None = None) -> tuple[torch.Tensor, xr.DataArray]:
        """A target DOS on the model's grid (:func:`crystaldos.dos_inputs.as_site_dos`) as a tensor, and as checked."""
        dos = as_site_dos(dos, self.grid, structure, n_sites)
        return torch.as_tensor(np.asarray(dos.values), dtype=torch.float32, device=self.device), dos

    def _check_options(self, options: SamplingOptions) -> list[int]:
        """Check ``options`` against these models; return the reverse schedule t_start = s_0 > ... > s_K = 0."""
        if options.guidance.startswith("cbg") and self.forward_mismatch:
            raise ValueError(f"{options.guidance} needs a forward model trained under the denoiser's noise: {self.forward_mismatch}")
        T = self.diffusion.timesteps
        if options.t_start > T:
            raise ValueError(f"t_start must be an integer in 0 ... {T}, got {options.t_start!r}")
        if options.guidance != "cfg" and options.unconditional == "separate" and self.uncond_model is None:
            raise ValueError("this sampler has no separate unconditional model; use unconditional='cfg-null'")
        steps = options.t_start if options.steps is None else options.steps
        return reverse_schedule(self.diffusion.alpha_bars, options.t_start, steps, options.spacing)

    # ------------------------------------------------------------------ public API
    def reconstruct(
        self,
        structure,
        dos,
        options: SamplingOptions | None = None,
        *,
        keep_trajectory: bool = False,
        progress: bool = True,
        callback: Callable[[int, int], None] | None = None,
        allow_untrained_sizes: bool = False,
        **settings,
    ) -> list[SampleResult]:
        """Generate crystals back from their atom count and atom-level DOS.

        Args:
            structure: the reference crystal, or a list of them: a pymatgen Structure, an ASE Atoms or the path of
                a crystal file (CIF, POSCAR). Only its atom count is used when ``t_start`` is T (1000, the
                default); else it is noised to ``t_start`` first.
            dos: the target atom-level DOS, one per structure: an xarray DOS (dims site, energy; resampled onto
                the model's grid when its energies differ), an array (n_sites, n_energies) on the model's grid, or
                a pymatgen ``CompleteDos`` with site projections.
            options: a :class:`~crystaldos.options.SamplingOptions` (default: the defaults).
            **settings: any option of :class:`~crystaldos.options.SamplingOptions` by name, over ``options``:
                ``guidance`` ("cfg", "cbg", "cbg-dps", "none"), ``strength``, ``t_start``, ``n_samples``, ``seed``,
                ``steps``, ``unconditional``, ``step_lr``, ``lattice_step``, ``spacing``, ``tie_types``.
            keep_trajectory: keep ~100 intermediate Structures per sample.
            progress: show a tqdm bar (notebook-aware).
            callback: called as ``callback(done, total)`` after every reverse step (e.g. a widget's progress bar).
            allow_untrained_sizes: sample cells whose atom count lies outside the range the models were
                trained on (:attr:`training_sites`) with a warning, instead of raising ValueError.

        Returns:
            ``n_samples`` results per structure, structure-major (``.structure``; ``.atoms`` for ASE).
        """
        options = SamplingOptions.build(options, **settings)
        structures = _structure_list(structure)
        doses = _dos_list(dos)
        if len(structures) != len(doses):
            raise _count_mismatch("structures", len(structures), doses)
        for s in structures:
            if not s.is_ordered:
                raise ValueError("reconstruct needs ordered structures (one element per site)")
            not_elements = [f"{i}: {site.specie}" for i, site in enumerate(s) if isinstance(site.specie, DummySpecies)]
            if not_elements:
                raise ValueError(f"reconstruct needs real elements on every site; dummy species on sites {not_elements}")
        self._check_sizes([len(s) for s in structures], allow_untrained_sizes)
        return self._sample([len(s) for s in structures], doses, structures, options, keep_trajectory, progress, callback)

    def generate(
        self,
        n_atoms: int | Sequence[int],
        dos,
        options: SamplingOptions | None = None,
        *,
        keep_trajectory: bool = False,
        progress: bool = True,
        callback: Callable[[int, int], None] | None = None,
        allow_untrained_sizes: bool = False,
        **settings,
    ) -> list[SampleResult]:
        """Inverse design: new crystals of ``n_atoms`` atoms whose atom-level DOS should be ``dos``, from pure noise.

        The arguments are those of :meth:`reconstruct` (``t_start`` is always T); ``n_atoms`` must lie in
        :attr:`training_sites` unless ``allow_untrained_sizes`` (then a warning is given). :meth:`design` also
        relaxes, relabels and ranks the samples.
        """
        options = SamplingOptions.build(options, **settings)
        if options.t_start != self.diffusion.timesteps:
            raise ValueError(f"generate starts from pure noise (t_start = {self.diffusion.timesteps}); got t_start = "
                             f"{options.t_start}: use reconstruct to start from a noised crystal")
        counts = list(n_atoms) if isinstance(n_atoms, (Sequence, np.ndarray)) else [n_atoms]
        if any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) for c in counts):
            raise TypeError(f"n_atoms must be an int or a sequence of ints, got {n_atoms!r}")
        doses = _dos_list(dos)
        if len(counts) != len(doses):
            raise _count_mismatch("atom counts", len(counts), doses)
        self._check_sizes(counts, allow_untrained_sizes)
        return self._sample(counts, doses, None, options, keep_trajectory, progress, callback)

    def design(
        self,
        dos,
        n_samples: int = 8,
        seed: int = 0,
        progress: bool = True,
        options: SamplingOptions | None = None,
        *,
        relaxer=None,
        labeller=None,
        distance: str | None = None,
        jobs: int = 2,
        executor=None,
        allow_untrained_sizes: bool = False,
        callback: Callable[[str, int, int], None] | None = None,
        retry: bool = False,
        **settings,
    ):
        """Design crystals with the target DOS: generate ``n_samples`` from pure noise, screen them, relax each, recompute
        its DOS, and rank them by how close that DOS is to the target.

        Args:
            dos: the target atom-level DOS (any form :meth:`reconstruct` takes; its site count is the atom count), or a
                data set item (its ``.dos``).
            n_samples: samples drawn (k); each costs a relaxation and a labelling (seconds each).
            seed: seeds the samples.
            progress: tqdm bars for sampling and for relaxing and labelling.
            options, **settings: sampling options as for :meth:`reconstruct` (CFG by default; ``t_start`` is T).
            relaxer: a :class:`crystaldos.relax.Relaxer` (default: :func:`crystaldos.design.design_relaxer`, CHGNet,
                0.1 eV/Å, at most 100 steps); a sample that converges is relaxed on to 0.05 eV/Å before labelling
                (:data:`crystaldos.design.DESIGN_REFINE_FMAX`).
            labeller: computes the DOS of a relaxed crystal (default: the labeller of the models' training data).
            distance: the ranking distance, ``"site"``, ``"total"`` or ``"wasserstein"`` (:func:`crystaldos.design.dos_distance`).
            jobs: processes that relax and label in parallel (1: this process); ignored with ``executor``.
            executor: any ``concurrent.futures``-style executor (e.g. ``dask.distributed.Client``) for the relax-and-label tasks.
            callback: called as ``callback(stage, done, total)``, stage "sample" or "relax and label".
            retry: relax each sample whose relaxation fails once more, from its cell expanded and with up to 1,000
                steps: about twice as many candidates for twice the time (on val they were never the right crystal).

        Returns:
            A :class:`crystaldos.design.DesignResult`: candidates ranked best first (``result[0]``), each with
            ``.structure`` (relaxed), ``.dos`` (recomputed), ``.distance``, ``.energy_per_atom``; ``result.dropped`` says
            which samples were dropped and why.

        Raises:
            crystaldos.design.DesignError: no sample survived (its ``dropped`` says why).
        """
        from crystaldos.design import DEFAULT_DISTANCE, design

        return design(self, dos, n_samples=n_samples, seed=seed, progress=progress, options=options, relaxer=relaxer,
                      labeller=labeller, distance=distance or DEFAULT_DISTANCE, jobs=jobs, executor=executor,
                      allow_untrained_sizes=allow_untrained_sizes, callback=callback, retry=retry, **settings)

    @torch.no_grad()
    def predict_dos(self, structure: Structure | Sequence[Structure]) -> xr.DataArray | list[xr.DataArray]:
        """The forward model's atom-level DOS of clean crystals (t = 0), in one batched pass.

        Args:
            structure: one ordered Structure, or a sequence of them.

        Returns:
            A DataArray (dims site, energy; states/eV/atom on the model's grid) per structure:
            a single one for a single Structure, else a list in input order.
        """
        single = isinstance(structure, Structure)
        structures = [structure] if single else list(structure)
        if not structures:
            return []
        clean = self._batch_of(structures)
        t = torch.zeros(clean.num_graphs, dtype=torch.long, device=self.device)
        pred = self.forward_model.predict_dos(one_hot_types(clean.atom_types), clean.frac_coords, clean.lattice, t,
                                              clean.edge_index, clean.batch).cpu().numpy()
        out, start = [], 0
        for s in structures:
            out.append(site_dos(pred[start:start + len(s)], [site.specie.symbol for site in s], self.grid, source="forward model"))
            start += len(s)
        return out[0] if single else out

    def _batch_of(self, structures: Sequence[Structure]) -> Batch:
        """The structures as one torch-geometric Batch (atom_types, frac_coords, lattice, edges) on the device."""
        return Batch.from_data_list([structure_to_data(s) for s in structures]).to(self.device)

    def _graph(self, sizes: Sequence[int]) -> Graph:
        """One batched graph of ``len(sizes)`` crystals, all pairs within each cell connected."""
        sizes_t = torch.as_tensor(list(sizes), device=self.device)
        batch = torch.repeat_interleave(torch.arange(len(sizes_t), device=self.device), sizes_t)
        offsets = torch.cumsum(sizes_t, 0) - sizes_t
        edge_index = torch.cat([fully_connected_edges(int(n)).to(self.device) + o for n, o in zip(sizes_t, offsets)], dim=1)
        return Graph(edge_index, batch, len(sizes_t))

    # ------------------------------------------------------------------ the loop
    # no_grad: without it every step's outputs keep the autograd graph of all earlier steps (memory
    # grew to 24 GB over 1000 steps of a 64-crystal batch); CBG enables grad locally for its gradient.
    @torch.no_grad()
    def _sample(self, counts, doses, references, options: SamplingOptions, keep_trajectory: bool, progress: bool,
                callback=None) -> list[SampleResult]:
        from tqdm.auto import tqdm

        schedule = self._check_options(options)
        guidance, strength, t_start, seed = options.guidance, options.strength, options.t_start, options.seed
        n_samples, unconditional, step_lr, tie_types = options.n_samples, options.unconditional, options.step_lr, options.tie_types
        lattice_step = options.resolved_lattice_step()
        if any(c < 1 for c in counts):
            raise ValueError(f"every crystal needs at least one atom, got counts {counts}")
        targets = [self._dos_tensor(d, c, references[i] if references is not None else None)
                   for i, (d, c) in enumerate(zip(doses, counts))]
        base_model = self.uncond_model if unconditional == "separate" else None
        unconditional_model = base_model if base_model is not None else self.cfg_model  # cfg-null: its null branch

        # One batched graph: every (structure, sample) pair is a crystal.
        order = [(i, k) for i in range(len(counts)) for k in range(n_samples)]
        sizes_list = [counts[i] for i, _ in order]
        sizes = torch.tensor(sizes_list, device=self.device)
        offsets = torch.cumsum(sizes, 0) - sizes
        graph = self._graph(sizes_list)
        batch = graph.batch
        dos = torch.cat([targets[i][0] for i, _ in order])
        if tie_types:  # a representative node per node: the first site of its crystal with the same target DOS
            site_groups = [identical_sites(targets[i][0].cpu().numpy()) for i in range(len(counts))]
            type_groups = torch.cat([torch.as_tensor(site_groups[i], device=self.device) + offsets[g]
                                     for g, (i, _) in enumerate(order)])

        lattice_scale = self.diffusion.lattice_noise_scale(sizes)[:, None, None]  # fresh lattice noise in Å
        generator = torch.Generator(self.device).manual_seed(seed)
        T = self.diffusion.timesteps
        if t_start == T or references is None:
            state = CrystalState(*self.diffusion.prior(sizes, generator))
        else:
            clean = self._batch_of([references[i] for i, _ in order])
            t0 = torch.full((len(order),), t_start, dtype=torch.long, device=self.device)
            noisy = self.diffusion.noise(one_hot_types(clean.atom_types), clean.frac_coords, clean.lattice, t0, batch, generator)
            state = CrystalState(noisy.types, noisy.frac_coords, noisy.lattice)

        def scores(current: CrystalState, t_value: int, t_next: int):
            t = torch.full((graph.num_graphs,), t_value, dtype=torch.long, device=self.device)
            t_prev = torch.full_like(t, t_next)
            if guidance == "cfg":
                return cfg_output(self.cfg_model, self.diffusion, current, t, graph, dos, strength)
            if guidance == "cbg-dps":
                return dps_output(unconditional_model, self.likelihood, self.diffusion, current, t, graph, dos, strength, t_prev)
            base = denoise(unconditional_model, self.diffusion, current, t, graph)
            if guidance == "cbg":
                return cbg_output(base, self.likelihood, self.diffusion, current, t, graph, dos, strength, t_prev)
            return base

        frames: list[CrystalState] = [state] if keep_trajectory else []
        keep_every = max(1, (len(schedule) - 1) // 100)
        pairs = list(zip(schedule[:-1], schedule[1:]))
        for step_index, (t_now, t_next) in enumerate(tqdm(pairs, desc=f"sampling ({guidance})", disable=not progress, leave=False)):
            t_nodes = torch.full((state.types.shape[0],), t_now, dtype=torch.long, device=self.device)
            t_graphs = torch.full((graph.num_graphs,), t_now, dtype=torch.long, device=self.device)
            # Corrector: Langevin on X at the current noise level.
            corrector_noise = torch.randn(state.frac_coords.shape, generator=generator, device=self.device)
            if step_lr > 0:  # step_lr = 0 leaves X as it is: no network pass (half the cost); the noise is drawn
                # all the same, so that a seed gives the samples it gave before this shortcut
                out = scores(state, t_now, t_next)
                frac = self.diffusion.coords_corrector_step(
                    state.frac_coords, self.diffusion.coordinate_score(out.score_coords, t_graphs, batch), t_nodes,
                    corrector_noise, step_lr,
                )
                state = state._replace(frac_coords=frac)
            # Predictor: reverse steps of all three variables to t_next.
            out = scores(state, t_now, t_next)
            t_nodes_next = torch.full_like(t_nodes, t_next)
            t_graphs_next = torch.full_like(t_graphs, t_next)
            last = t_next == 0
            def noise(x, scale=1.0):
                return torch.zeros_like(x) if last else scale * torch.randn(x.shape, generator=generator, device=self.device)
            eps_types = self.diffusion.tie_types_eps(state.types, out.eps_types, t_nodes, type_groups) if tie_types else out.eps_types
            state = CrystalState(
                self.diffusion.ddpm_step(state.types, eps_types, t_nodes, t_nodes_next, noise(state.types)),
                self.diffusion.coords_predictor_step(
                    state.frac_coords, self.diffusion.coordinate_score(out.score_coords, t_graphs, batch), t_nodes, t_nodes_next, noise(state.frac_coords)
                ),
                self.diffusion.ddpm_step(state.lattice, out.eps_lattice, t_graphs, t_graphs_next, noise(state.lattice, lattice_scale))
                if lattice_step_at(lattice_step, t_now) == "ddpm" else self.diffusion.ddim_step(state.lattice, out.eps_lattice, t_graphs, t_graphs_next),
            )
            if keep_trajectory and ((step_index + 1) % keep_every == 0 or last):
                frames.append(state)
            if callback is not None:
                callback(step_index + 1, len(pairs))

        def crystal(s: CrystalState, g: int) -> Structure:
            start = int(offsets[g])
            return _structure_from_tensors(s.types[start:start + sizes_list[g]], s.frac_coords[start:start + sizes_list[g]], s.lattice[g])

        structures = [crystal(state, g) for g in range(len(order))]
        predictions = self.predict_dos(structures)
        results = []
        for g, (i, k) in enumerate(order):
            results.append(
                SampleResult(
                    structure=structures[g],
                    dos_target=targets[i][1],
                    dos_pred=predictions[g],
                    trajectory=[crystal(f, g) for f in frames] if keep_trajectory else None,
                    reference=references[i] if references is not None else None,
                    settings=options.to_dict() | {"steps": len(pairs), "sample": k, "lattice_step": lattice_step},
                )
            )
        return results
