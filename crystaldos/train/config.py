"""Training configuration: one dataclass, YAML files and ``key=value`` overrides."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn import functional

from crystaldos.diffusion import DiffusionConfig
from crystaldos.model import ModelConfig
from crystaldos.settings import Settings

#: Losses of the forward model's DOS (units of dos_scale), by name: the loss function and the per-element statistic
#: it is minimised by (the table a ``model.element_baseline`` run starts from).
FORWARD_LOSSES = {"mse": (functional.mse_loss, "mean"), "l1": (functional.l1_loss, "median")}


@dataclass(frozen=True)
class ForwardObjective:
    """What the forward model g_phi is trained on: its steps t and its loss (``TrainConfig.forward_objective``).

    Attributes:
        max_t: steps are drawn uniformly from 0 ... ``max_t`` (None: the schedule's T; 0: clean crystals only).
        loss: a name in :data:`FORWARD_LOSSES` ("mse" or "l1"), on the DOS in units of ``dos_scale``.
        clean_fraction: the share of each batch put at t = 0 instead (0 ... 1).
    """

    max_t: int | None = None
    loss: str = "mse"
    clean_fraction: float = 0.0

    def check(self, timesteps: int) -> None:
        """Raise ValueError naming the training setting that is out of range for a schedule of ``timesteps`` steps."""
        if self.max_t is not None and not 0 <= self.max_t <= timesteps:
            raise ValueError(f"forward_max_t must lie in 0 ... {timesteps} or be None, got {self.max_t}")
        if not 0.0 <= self.clean_fraction <= 1.0:
            raise ValueError(f"forward_clean_fraction is a share of each batch, 0 ... 1; got {self.clean_fraction}")
        if self.loss not in FORWARD_LOSSES:
            raise ValueError(f"unknown forward_loss {self.loss!r}; choose one of {', '.join(FORWARD_LOSSES)}")

    def draw_t(self, n: int, timesteps: int, generator: torch.Generator | None, device) -> torch.Tensor:
        """(n,) long: the steps of a batch of ``n`` crystals (t = 0 included: g_phi must also know clean crystals)."""
        high = timesteps if self.max_t is None else self.max_t
        t = torch.randint(0, high + 1, (n,), generator=generator, device=device)
        if self.clean_fraction > 0:  # drawn only when asked for, so that other runs keep their random streams
            clean = torch.rand(n, generator=generator, device=device) < self.clean_fraction
            t = torch.where(clean, torch.zeros_like(t), t)
        return t

    def dos_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The scalar loss between predicted and target DOS (both in units of ``dos_scale``)."""
        return FORWARD_LOSSES[self.loss][0](pred, target)


@dataclass
class TrainConfig(Settings):
    """Everything one training run needs (saved in its checkpoints).

    Attributes:
        kind: ``"cfg"`` (DOS-conditional denoiser, condition dropped with
            probability ``p_uncond``), ``"uncond"`` (denoiser without DOS) or
            ``"forward"`` (the time-dependent DOS model g_phi of CBG).
        data: data file (None = the embedded default).
        train_fraction: train on a seeded random share of the training split (learning curves); 1 = all of it.
        out_dir: run directory (``train_state.pt`` to resume, ``model.pt`` release, ``history.csv``).
        steps: optimiser steps in total (a resumed run continues to this number).
        batch_size: crystals per step and process.
        lr, weight_decay, grad_clip: AdamW and gradient-norm clipping; lr decays
            by cosine to ``lr * lr_final_fraction``.
        ema_decay: decay of the exponential moving average of weights (released weights).
        p_uncond: probability of replacing the DOS by the null condition (``cfg`` only).
        forward_max_t: ``forward`` only: train on steps 0 ... forward_max_t (None: all of 0 ... T). 0 gives a
            clean-crystal regressor, all the capacity where CBG-DPS uses the model (it evaluates it at t = 0 only).
        forward_loss: ``forward`` only: ``"mse"`` (a Gaussian likelihood, the conditional mean) or ``"l1"`` (the
            conditional median, what the reported MAE rewards: on the format-2 preview each element's median DOS is
            10 % below its mean DOS in test MAE, benchmarks/forward_model/ceiling.py).
        forward_clean_fraction: ``forward`` only: this share of each batch's crystals is taken at t = 0, the rest
            at steps drawn uniformly as above. Drawn uniformly, 95 % of the steps are at t > 50 and the model at
            t = 0 barely fits its own training crystals (docs/research/forward_model.md).
        time_limit_minutes: stop this invocation after so many minutes of training (checked every ``log_every``
            steps, agreed by all ranks), then checkpoint and release as if ``steps`` were reached; the history's
            last step says where it stopped, and rerunning the command continues towards ``steps``. For fixed
            budgets (a lent GPU's minutes); the learning rate is then released before its cosine decay ends.
        keep_best: release the EMA weights of the validation with the lowest loss instead of the last step's (the
            checkpoint's ``released_step`` says which), so that a run longer than the data support gives back its
            best point; the weights are kept in the training state, so a resumed run remembers them. Needs a
            validation split; without one the last weights are released.
        patience_steps: with ``keep_best``, stop once the lowest validation loss is this many steps old and release its
            weights: what training on to ``steps`` would release unless the loss fell again later. The run then
            counts as finished (the checkpoint's ``stopped_early`` says at which step). None trains all ``steps``.
        val_every, checkpoint_every, log_every: in steps.
        val_batches: validation batches per evaluation (fixed noise, seeded).
        seed: seeds data order, noise and initial weights.
        device: ``"auto"`` (CUDA if present), ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...
        num_threads: torch CPU threads (None = torch's default).
    """

    kind: str = "cfg"
    data: str | None = None
    train_fraction: float = 1.0
    out_dir: str = "runs/cfg"
    steps: int = 5000
    batch_size: int = 64
    lr: float = 1e-3
    lr_final_fraction: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    p_uncond: float = 0.2
    forward_max_t: int | None = None
    forward_loss: str = "mse"
    forward_clean_fraction: float = 0.0
    time_limit_minutes: float | None = None
    keep_best: bool = False
    patience_steps: int | None = None
    val_every: int = 250
    checkpoint_every: int = 250
    log_every: int = 25
    val_batches: int = 8
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)

    settings_name = "training"

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = ModelConfig.from_dict(self.model)
        if isinstance(self.diffusion, dict):
            self.diffusion = DiffusionConfig.from_dict(self.diffusion)
        if self.kind not in ("cfg", "uncond", "forward"):
            raise ValueError(f"unknown model kind {self.kind!r}; choose cfg, uncond or forward")
        self.forward_objective.check(self.diffusion.timesteps)
        if self.time_limit_minutes is not None and not self.time_limit_minutes > 0:
            raise ValueError(f"time_limit_minutes must be positive or None, got {self.time_limit_minutes}")
        if self.patience_steps is not None and (not self.keep_best or self.patience_steps < self.val_every):
            raise ValueError(f"patience_steps={self.patience_steps} needs keep_best and at least val_every={self.val_every} steps")
        if not 0.0 <= self.p_uncond < 1.0:
            raise ValueError(f"p_uncond must lie in [0, 1), got {self.p_uncond}")
        # The kind decides whether the network sees the DOS.
        self.model.conditional = self.kind == "cfg"

    @property
    def forward_objective(self) -> ForwardObjective:
        """The forward model's steps and loss (``forward_max_t``, ``forward_loss``, ``forward_clean_fraction``)."""
        return ForwardObjective(self.forward_max_t, self.forward_loss, self.forward_clean_fraction)

    @classmethod
    def from_sources(cls, yaml_path: str | Path | None = None, overrides: list[str] | None = None, **kwargs) -> "TrainConfig":
        """Defaults, then a YAML file, then keyword arguments, then ``key=value`` strings (``model.hidden=256``)."""
        d = cls().to_dict()
        if yaml_path is not None:
            import yaml

            _merge(d, yaml.safe_load(Path(yaml_path).read_text()) or {})
        _merge(d, {k: v for k, v in kwargs.items() if v is not None})
        for item in overrides or []:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"override {item!r} is not of the form key=value")
            import yaml

            target = d
            *parents, leaf = key.split(".")
            for p in parents:
                if not isinstance(target.get(p), dict):
                    raise ValueError(f"unknown setting {key!r}")
                target = target[p]
            if leaf not in target:
                raise ValueError(f"unknown setting {key!r}")
            target[leaf] = _as_number_if_numeric(key, target[leaf], yaml.safe_load(value))
        return cls.from_dict(d)


def _as_number_if_numeric(key: str, default, value):
    """``value`` as a float where the setting is a number and YAML left it a string: YAML 1.1 reads ``1e-4``
    (no dot) as text, which would fail much later with a TypeError instead of here."""
    if isinstance(default, (int, float)) and not isinstance(default, bool) and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"setting {key!r} must be a number, got {value!r}") from None
    return value


def _merge(base: dict, update: dict, prefix: str = "") -> None:
    for key, value in update.items():
        if key not in base:
            raise ValueError(f"unknown setting {prefix + key!r}")
        if isinstance(base[key], dict) and isinstance(value, dict):
            unknown = set(value) - set(base[key])
            if unknown:
                raise ValueError(f"unknown settings {sorted(unknown)} in {key!r}")
            _merge(base[key], value, f"{prefix}{key}.")
        else:
            base[key] = _as_number_if_numeric(prefix + key, base[key], value)
