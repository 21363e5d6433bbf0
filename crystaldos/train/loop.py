"""The training loop for the three networks (CFG denoiser, unconditional denoiser, DOS forward model).

Single process::

    crystaldos train --kind cfg --out-dir runs/cfg --steps 6000

Several processes (DistributedDataParallel; NCCL on GPUs, gloo on CPU)::

    torchrun --nproc_per_node 2 -m crystaldos.train --kind cfg --out-dir runs/cfg

Each process draws its own batches (a ``DistributedSampler``) and noise
(seeded by rank); gradients are averaged by DDP so all replicas hold the same
weights, which the run checks at the end (``train["replica_checksums"]``).
"""

from __future__ import annotations

import copy
import gc
import itertools
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data.distributed import DistributedSampler

from crystaldos.atomic_files import atomic_write
from crystaldos.device import resolve_device
from crystaldos.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from crystaldos.diffusion import JointDiffusion
from crystaldos.model import CrystalDenoiser, DOSForwardModel, NUM_ELEMENTS, one_hot_types
from crystaldos.model.forward_model import element_mean_dos_table
from crystaldos.train.config import FORWARD_LOSSES, ForwardObjective, TrainConfig

#: Steps at which the forward model's DOS error is measured and its noise scale calibrated.
CALIBRATION_STEPS = (0, 50, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000)
#: Largest energy lag (grid points) of the forward model's error correlation: 64 x 0.078 eV = 5 eV, far past the 0.2 eV broadening.
CALIBRATION_MAX_LAG = 64

#: The data set's attributes a checkpoint records (``train.data``) that name the data set, not the file's path.
DATA_IDENTITY = ("title", "build_command", "seed")


def build_model(config: TrainConfig) -> torch.nn.Module:
    """A freshly initialised network of the configured kind."""
    return DOSForwardModel(config.model) if config.kind == "forward" else CrystalDenoiser(config.model)


def dos_std(graphs) -> float:
    """Standard deviation of all DOS values of a list of graphs (states/eV/atom)."""
    values = torch.cat([g.dos.flatten() for g in graphs])
    return float(values.std())


# ---------------------------------------------------------------------- losses of one batch
def batch_losses(
    model: torch.nn.Module,
    diffusion: JointDiffusion,
    batch,
    kind: str,
    p_uncond: float = 0.0,
    generator: torch.Generator | None = None,
    forward: ForwardObjective = ForwardObjective(),
) -> dict[str, torch.Tensor]:
    """Loss parts of one torch-geometric batch for a model of ``kind`` (noise drawn from ``generator``; the forward
    model's steps and loss from ``forward``)."""
    device = batch.frac_coords.device
    types0 = one_hot_types(batch.atom_types)
    n = batch.num_graphs
    if kind == "forward":
        t = forward.draw_t(n, diffusion.timesteps, generator, device)
    else:
        t = diffusion.sample_t(n, device, generator)
    noisy = diffusion.noise(types0, batch.frac_coords, batch.lattice, t, batch.batch, generator)
    if kind == "forward":
        net = model.module if isinstance(model, DistributedDataParallel) else model
        scale = net.config.dos_scale
        pred = model(noisy.types, noisy.frac_coords, noisy.lattice, t, batch.edge_index, batch.batch) / scale
        dos_loss = forward.dos_loss(pred, batch.dos / scale)
        return {"loss": dos_loss, "dos": dos_loss}
    use_condition = None
    dos = None
    if kind == "cfg":
        dos = batch.dos
        use_condition = torch.rand(n, generator=generator, device=device) >= p_uncond
    output = model(noisy.types, noisy.frac_coords, noisy.lattice, t, batch.edge_index, batch.batch, dos, use_condition)
    return diffusion.loss(output, noisy)


@torch.no_grad()
def evaluate(model, diffusion, loader, kind: str, seed: int, max_batches: int | None = None,
             forward: ForwardObjective = ForwardObjective()) -> dict[str, float]:
    """Mean loss parts over a loader with fixed noise (same seed -> same number); condition always on."""
    model.eval()
    device = diffusion.sigmas.device
    generator = torch.Generator(device).manual_seed(seed)
    totals: dict[str, float] = {}
    count = 0
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        parts = batch_losses(model, diffusion, batch.to(device), kind, 0.0, generator, forward)
        for k, v in parts.items():
            totals[k] = totals.get(k, 0.0) + float(v) * batch.num_graphs
        count += batch.num_graphs
    model.train()
    return {k: v / max(count, 1) for k, v in totals.items()}


@torch.no_grad()
def forward_model_errors(model, diffusion, loader, steps=CALIBRATION_STEPS, seed: int = 0,
                         max_lag: int = CALIBRATION_MAX_LAG) -> dict[str, list[float]]:
    """DOS error of the forward model on noisy crystals at each step t, and how correlated it is along the energy.

    Returns ``{"t": [...], "mae": [...], "rmse": [...], "effective_fraction": [...]}``: MAE and RMSE in
    states/eV/atom, averaged over atoms and energies; ``rmse`` is the noise scale sigma(t) of the Gaussian
    likelihood log p(y | S_t) used by classifier-based guidance. ``effective_fraction`` (0 ... 1) is the number of
    effectively independent errors per atom over the number of grid points, 1 / (1 + 2 sum_k rho_k), with rho_k
    the errors' correlation at an energy lag of k grid points (summed up to the first lag where it is no longer
    positive, at most ``max_lag``): neighbouring grid points share the DOS broadening, so their errors are not
    independent, and a likelihood that counted every point as one would grow sharper with the number of points.
    """
    model.eval()
    device = diffusion.sigmas.device
    mae, rmse, fraction = [], [], []
    for step in steps:
        generator = torch.Generator(device).manual_seed(seed + step)
        abs_sum = sq_sum = 0.0
        n = 0
        lag_sums = torch.zeros(max_lag + 1, dtype=torch.float64)
        lag_counts = torch.zeros(max_lag + 1, dtype=torch.float64)
        for batch in loader:
            batch = batch.to(device)
            t = torch.full((batch.num_graphs,), step, device=device, dtype=torch.long)
            noisy = diffusion.noise(one_hot_types(batch.atom_types), batch.frac_coords, batch.lattice, t, batch.batch, generator)
            err = model(noisy.types, noisy.frac_coords, noisy.lattice, t, batch.edge_index, batch.batch) - batch.dos
            abs_sum += float(err.abs().sum())
            sq_sum += float((err**2).sum())
            n += err.numel()
            sums, counts = lag_products(err, max_lag)
            lag_sums += sums
            lag_counts += counts
        mae.append(abs_sum / n)
        rmse.append(math.sqrt(sq_sum / n))
        fraction.append(effective_fraction(lag_sums / lag_counts.clamp(min=1)))
    return {"t": list(steps), "mae": mae, "rmse": rmse, "effective_fraction": fraction}


def lag_products(err: torch.Tensor, max_lag: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums and counts of ``err[:, e + k] * err[:, e]`` over rows and energies for lags k = 0 ... ``max_lag``
    (err: (rows, energies)); their ratio is the autocovariance along the energy (float64, (max_lag + 1,) each)."""
    sums = torch.zeros(max_lag + 1, dtype=torch.float64)
    counts = torch.zeros(max_lag + 1, dtype=torch.float64)
    for k in range(min(max_lag, err.shape[1] - 1) + 1):
        products = err[:, k:] * err[:, : err.shape[1] - k]
        sums[k] = float(products.double().sum())
        counts[k] = products.numel()
    return sums, counts


def effective_fraction(autocovariance: torch.Tensor) -> float:
    """1 / (1 + 2 sum_k rho_k) from the autocovariance (lags 0, 1, ...; rho_k = c_k / c_0), summing the lags up to
    the first one whose correlation is no longer positive (the initial positive sequence): a fraction in (0, 1]."""
    rho = (autocovariance / autocovariance[0]).tolist()
    total = 0.0
    for value in rho[1:]:
        if value <= 0:
            break
        total += value
    return 1.0 / (1.0 + 2.0 * total)


# ---------------------------------------------------------------------- the run
class _Run:
    """Distributed context of one training run (rank 0 writes files and shows progress)."""

    def __init__(self, config: TrainConfig) -> None:
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        device = resolve_device(config.device)
        if self.world_size > 1:
            if device.type == "cuda":
                device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
                torch.cuda.set_device(device)
            if not dist.is_initialized():
                dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        self.device = device
        self.is_main = self.rank == 0

    def close(self) -> None:
        if self.world_size > 1 and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def _parameter_checksum(model: torch.nn.Module) -> float:
    return float(sum(p.detach().double().sum() + (p.detach().double() ** 2).sum() for p in model.parameters()))


def _graphs(config: TrainConfig):
    from crystaldos.data import load_dataset

    dataset = load_dataset(config.data)
    train = dataset.split("train").to_graphs()
    if not 0 < config.train_fraction <= 1:
        raise ValueError(f"train_fraction must lie in (0, 1], got {config.train_fraction}")
    if config.train_fraction < 1:  # a seeded subset, the same for every kind and process
        keep = np.random.default_rng(config.seed).permutation(len(train))[: max(1, round(config.train_fraction * len(train)))]
        train = [train[i] for i in sorted(keep)]
    val = dataset.split("val").to_graphs()
    if not train or not val:
        raise ValueError(f"data set {config.data or 'default'} needs non-empty train and val splits")
    return dataset, train, val


def train(config: TrainConfig, progress: bool = True) -> Path:
    """Train (or resume) one network; returns the path of the released checkpoint ``model.pt``.

    ``out_dir/train_state.pt`` (weights, EMA, optimiser, schedule, step, RNG,
    history) is rewritten every ``checkpoint_every`` steps; rerunning the same
    command continues from it. ``out_dir/model.pt`` holds the EMA weights in the
    release format of :mod:`crystaldos.checkpoint`.
    """
    from torch_geometric.loader import DataLoader
    from tqdm.auto import tqdm

    run = _Run(config)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    out_dir = Path(config.out_dir)
    state_path, release_path = out_dir / "train_state.pt", out_dir / "model.pt"
    dataset, train_graphs, val_graphs = _graphs(config)
    config.model.n_energies = dataset.grid.n_points

    resume = load_checkpoint(state_path, kind=config.kind, grid=dataset.grid) if state_path.exists() else None
    if resume is not None:
        saved = TrainConfig.from_dict(resume["train"]["config"])
        if saved.model.to_dict() | {"dos_scale": 0} != config.model.to_dict() | {"dos_scale": 0}:
            raise CheckpointError(f"{state_path} was trained with model {saved.model}, not {config.model}; use another out_dir")
        config.model.dos_scale = saved.model.dos_scale
    else:
        config.model.dos_scale = dos_std(train_graphs)

    torch.manual_seed(config.seed)  # initial weights are the same on every rank
    device = run.device
    model = build_model(config)
    if config.kind == "forward" and config.model.element_baseline and resume is None:
        _loss, statistic = FORWARD_LOSSES[config.forward_loss]  # the table the loss is minimised by
        model.set_element_baseline(element_mean_dos_table(torch.cat([g.atom_types for g in train_graphs]),
                                                          torch.cat([g.dos for g in train_graphs]), statistic))
    model = model.to(device)
    diffusion = JointDiffusion(config.diffusion).to(device)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: config.lr_final_fraction + (1 - config.lr_final_fraction) * 0.5 * (1 + math.cos(math.pi * min(s / config.steps, 1.0))),
    )
    generator = torch.Generator(device).manual_seed(config.seed * 1000 + run.rank)
    step, epoch, history, wall = 0, 0, [], 0.0
    batches_into_epoch = 0  # of the current epoch, so that a resumed run skips what it has already seen
    best, best_weights = None, None  # keep_best: {"step", "val_loss"} and the EMA weights there
    if resume is not None:
        model.load_state_dict(resume["state_dict"])
        ema.load_state_dict(resume["ema_state_dict"])
        optimizer.load_state_dict(resume["optimizer"])
        schedule.load_state_dict(resume["schedule"])
        if run.rank < len(resume["generator"]):  # a run resumed on more processes seeds the new ranks afresh
            generator.set_state(resume["generator"][run.rank])
        step, epoch, history, wall = resume["train"]["step"], resume["train"]["epoch"], resume["train"]["history"], resume["train"]["wall_time_s"]
        if config.keep_best:  # a run resumed with keep_best off releases its last weights, whatever it kept before
            best, best_weights = resume["train"].get("best"), resume.get("best_ema_state_dict")
        batches_into_epoch = resume["train"].get("batches_into_epoch", 0)

    ddp = DistributedDataParallel(model) if run.world_size > 1 else model
    sampler = _ResumableSampler(DistributedSampler(train_graphs, num_replicas=run.world_size, rank=run.rank, shuffle=True,
                                                   seed=config.seed, drop_last=True))
    loader = DataLoader(train_graphs, batch_size=config.batch_size, sampler=sampler, drop_last=len(train_graphs) >= config.batch_size * run.world_size)
    val_loader = DataLoader(val_graphs, batch_size=config.batch_size, shuffle=False)

    def checkpoint(path: Path, release: bool, generators: list[torch.Tensor] | None = None, checksums: list[float] | None = None) -> None:
        """Rank 0 only: the release file (EMA weights) or the resumable training state."""
        train_info = {
            "config": config.to_dict(),
            "step": step,
            "epoch": epoch,
            "batches_into_epoch": batches_into_epoch,
            "history": history,
            "wall_time_s": wall,
            "world_size": run.world_size,
            "replica_checksums": checksums or [],
            "best": best,
            "stopped_early": stopped_early,  # the step where patience_steps ended the run, or None
            # Which step's EMA weights a release holds (keep_best: the lowest validation loss).
            "released_step": best["step"] if release and best_weights is not None else step,
            "n_parameters": sum(p.numel() for p in model.parameters()),
            "data": {k: dataset.attrs[k] for k in DATA_IDENTITY if k in dataset.attrs}
            | {"n_train": len(train_graphs), "n_val": len(val_graphs),
               # The sampler warns about atom counts the model never saw.
               "n_sites_range": [min(g.num_nodes for g in train_graphs), max(g.num_nodes for g in train_graphs)]},
        }
        common = {
            "kind": config.kind,
            "model_config": config.model.to_dict(),
            "diffusion_config": config.diffusion.to_dict(),
            "grid": dataset.grid.to_attrs(),
            "vocabulary": list(range(1, NUM_ELEMENTS + 1)),
            "train": train_info,
        }
        if release:
            released = ema.module
            if best_weights is not None:
                released = copy.deepcopy(ema.module)
                released.load_state_dict(best_weights)
            extra = {"state_dict": released.state_dict()}
            if config.kind == "forward":
                extra["calibration"] = forward_model_errors(released, diffusion, val_loader)
                train_info["calibration_split"] = "val"
        else:
            extra = {
                "state_dict": model.state_dict(),
                "ema_state_dict": ema.state_dict(),
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "generator": generators,
            }
            if best_weights is not None:
                extra["best_ema_state_dict"] = best_weights
        save_checkpoint(common | extra, path)

    bar = tqdm(total=config.steps, initial=step, desc=f"train {config.kind}", disable=not (progress and run.is_main), dynamic_ncols=True)
    model.train()
    started = time.perf_counter() - wall
    invocation_started = time.perf_counter()
    out_of_time = False
    stopped_early = resume["train"].get("stopped_early") if resume is not None else None  # a finished run stays finished
    running: dict[str, float] = {}
    running_n = 0
    while step < config.steps and not (out_of_time or stopped_early):
        sampler.set_epoch(epoch, skip=batches_into_epoch * config.batch_size)
        for batch in loader:
            if step >= config.steps:
                break
            batch = batch.to(device)
            parts = batch_losses(ddp, diffusion, batch, config.kind, config.p_uncond, generator, config.forward_objective)
            optimizer.zero_grad(set_to_none=True)
            parts["loss"].backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            if not torch.isfinite(grad_norm):
                raise FloatingPointError(f"non-finite gradient at step {step}; lower lr or check the data")
            optimizer.step()
            schedule.step()
            ema.update_parameters(model)
            step += 1
            batches_into_epoch += 1
            bar.update(1)
            for k, v in parts.items():
                running[k] = running.get(k, 0.0) + float(v.detach())
            running_n += 1
            wall = time.perf_counter() - started
            if step % config.log_every == 0 or step == config.steps:
                row = {"step": step, "epoch": epoch, "lr": schedule.get_last_lr()[0], "wall_time_s": round(wall, 2)}
                row |= {f"train_{k}": v / running_n for k, v in running.items()}
                if step % config.val_every == 0 or step == config.steps:
                    row |= {f"val_{k}": v for k, v in evaluate(ema.module, diffusion, val_loader, config.kind, config.seed, config.val_batches,
                                                                             config.forward_objective).items()}
                history.append(row)
                if config.keep_best and math.isfinite(row.get("val_loss", math.nan)) and (best is None or row["val_loss"] < best["val_loss"]):
                    best = {"step": step, "val_loss": row["val_loss"]}
                    best_weights = {k: v.detach().clone() for k, v in ema.module.state_dict().items()}
                running, running_n = {}, 0
                bar.set_postfix(loss=f"{row['train_loss']:.3f}", **({"val": f"{row['val_loss']:.3f}"} if "val_loss" in row else {}))
                if run.is_main:
                    _write_history(history, out_dir / "history.csv")
            if config.time_limit_minutes is not None and step % config.log_every == 0:
                out_of_time = _any_rank(time.perf_counter() - invocation_started > 60 * config.time_limit_minutes, run.world_size)
            patience_checked = config.patience_steps is not None and step % config.val_every == 0 and step < config.steps
            if patience_checked and _any_rank(best is not None and step - best["step"] >= config.patience_steps, run.world_size):
                stopped_early = step
            if step % config.checkpoint_every == 0 or step == config.steps or out_of_time or stopped_early:
                states = _gather(generator.get_state(), run.world_size)  # collective: every rank
                if run.is_main:
                    checkpoint(state_path, release=False, generators=states)
            if out_of_time or stopped_early:
                break
        if not (out_of_time or stopped_early) and step < config.steps:
            epoch, batches_into_epoch = epoch + 1, 0
    bar.close()
    if out_of_time and run.is_main:
        print(f"time limit of {config.time_limit_minutes} min reached at step {step} of {config.steps}; releasing these weights")
    if stopped_early and run.is_main:
        print(f"stopped at step {stopped_early} of {config.steps}: the lowest validation loss (step {best['step']}) is "
              f"{config.patience_steps} steps old; releasing its weights")

    checksums = _gather(_parameter_checksum(model), run.world_size)
    if run.is_main:
        checkpoint(release_path, release=True, checksums=checksums)
        _write_history(history, out_dir / "history.csv")
    # DDP's reducer holds the process group: free it while the group is alive. Destroyed
    # afterwards, when train() returns, its destructor can block forever on the torn-down
    # gloo context (seen: a rank that never exited, in about 1 torchrun run in 65 here and once in CI).
    del ddp
    gc.collect()
    run.close()
    return release_path


class _ResumableSampler(torch.utils.data.Sampler):
    """A :class:`DistributedSampler` whose epoch can start part-way: a run resumed in the middle (or at the end)
    of an epoch goes on with the same order and skips the crystals it has already seen, so that the resumed run
    draws the same batches as one that was never interrupted."""

    def __init__(self, inner: DistributedSampler) -> None:
        self.inner, self.skip = inner, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.inner.set_epoch(epoch)
        self.skip = skip

    def __iter__(self):
        return itertools.islice(iter(self.inner), self.skip, None)

    def __len__(self) -> int:
        return max(0, len(self.inner) - self.skip)


def _any_rank(flag: bool, world_size: int) -> bool:
    """True on every rank if ``flag`` is true on any (a collective: all ranks must call it)."""
    if world_size == 1:
        return flag
    return any(_gather(flag, world_size))


def _gather(value, world_size: int) -> list:
    """Every rank's ``value`` (a collective: all ranks must call it), in rank order."""
    if world_size == 1:
        return [value]
    objects: list = [None] * world_size
    dist.all_gather_object(objects, value)
    return objects


def _write_history(history: list[dict], path: Path) -> None:
    import pandas as pd

    with atomic_write(path) as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False)
