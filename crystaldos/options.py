"""How to sample: one validated set of options, shared by the sampler, the evaluation, the dashboard and the
settings stored with every result.

>>> from crystaldos.options import SamplingOptions
>>> options = SamplingOptions(guidance="cbg", strength=0.5, t_start=200)
>>> options.replace(seed=1).seed
1
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Mapping

GUIDANCES = ("cfg", "cbg", "cbg-dps", "none")
LATTICE_STEPS = ("auto", "ddpm", "ddim", "hybrid")
SPACINGS = ("logsnr", "uniform")
UNCONDITIONALS = ("separate", "cfg-null")
VARIABLES = ("types", "coords", "lattice")

# The defaults were chosen on the first 128 validation crystals with the shipped CFG model
# (benchmarks/evaluation/sampler_defaults.sh, docs/research/lattice.md section 13). From t_start = 200: DiffCSP's sampler (corrector
# 1e-5, DDPM lattice steps) 71.1 %, no corrector 81.2 %, + DDIM lattice steps 85.9 %, + tied types 93.8 %.
#: Langevin corrector step on X: none (DiffCSP's 1e-5 lets the atoms drift out of place, section 10).
DEFAULT_STEP_LR = 0.0
#: Sites with identical target DOS share one type (section 11).
DEFAULT_TIE_TYPES = True
#: The lattice's reverse step: "auto" = deterministic (DDIM) from a noised crystal, ancestral (DDPM) from noise.
DEFAULT_LATTICE_STEP = "auto"
#: "auto" uses DDIM lattice steps when t_start is at most this (of T = 1000): from pure noise DDIM lattice steps
#: blow cells up (64 val crystals from t_start = 1000: median |dV| 72 % against 23 % with DDPM steps).
AUTO_DDIM_MAX_T_START = 500
#: "hybrid" (an option; docs/research/lattice.md section 14: no gain measured) takes ancestral (DDPM) lattice steps
#: while t > this and deterministic (DDIM) ones from here down.
HYBRID_DDIM_MAX_T = 500
#: The diffusion's number of noise levels (T) of every shipped model; ``t_start`` = T starts from pure noise.
T_MAX = 1000


def per_variable(strength: float | Mapping[str, float]) -> tuple[float, float, float]:
    """One guidance strength per variable (types, coords, lattice) from a number or a mapping.

    Raises:
        ValueError: unknown variable names, or a value that is not a finite number.
    """
    if isinstance(strength, Mapping):
        unknown = sorted(set(strength) - set(VARIABLES))
        if unknown:
            raise ValueError(f"unknown guidance variables {unknown}; choose from {VARIABLES}")
        values = tuple(float(strength.get(name, 0.0)) for name in VARIABLES)
    else:
        try:
            values = (float(strength),) * 3
        except (TypeError, ValueError):
            raise ValueError(f"guidance strength must be a number or a mapping per variable, got {strength!r}") from None
    if not all(math.isfinite(v) for v in values):  # NaN or inf would turn every coordinate into NaN without an error
        raise ValueError(f"guidance strength must be a finite number, got {strength!r}")
    return values


@dataclass(frozen=True)
class SamplingOptions:
    """The options of one sampling run (validated when made; ``replace`` makes a changed copy).

    Attributes:
        guidance: ``"cfg"`` (classifier-free, strength = ω), ``"cbg"`` (classifier-based, strength = s),
            ``"cbg-dps"`` (classifier-based through the denoiser's predicted clean crystal) or ``"none"``
            (the unconditional model).
        strength: one number for all three variables, or one per variable, e.g. ``{"types": 1.0, "coords": 1.0}``
            (a variable left out is not guided). 0 = no guidance.
        t_start: how much of the reference crystal is destroyed first: T (1000) starts from pure noise (only the atom
            count and the DOS are kept), 200 from a noisy version of the crystal.
        n_samples: samples per target (all in one batch).
        seed: seeds the priors, the noising and every reverse step.
        steps: reverse steps (None: ``t_start``, the full schedule; fewer strides it).
        unconditional: the score CBG and ``"none"`` use: the separately trained unconditional network
            (``"separate"``) or the CFG model's null branch (``"cfg-null"``).
        step_lr: Langevin corrector step on X (DiffCSP's 1e-5; 0: no corrector).
        lattice_step: ``"ddpm"`` (ancestral), ``"ddim"`` (deterministic), ``"auto"`` (DDIM from t_start ≤ 500,
            DDPM above) or ``"hybrid"`` (DDPM above t = 500, DDIM below).
        spacing: where strided steps fall: ``"logsnr"`` (even in log signal-to-noise, dense near T) or ``"uniform"``.
        tie_types: sites whose target DOS are identical (symmetry-equivalent sites) end as one element.
    """

    guidance: str = "cfg"
    strength: float | Mapping[str, float] = 1.0
    t_start: int = T_MAX
    n_samples: int = 1
    seed: int = 0
    steps: int | None = None
    unconditional: str = "separate"
    step_lr: float = DEFAULT_STEP_LR
    lattice_step: str = DEFAULT_LATTICE_STEP
    spacing: str = "logsnr"
    tie_types: bool = DEFAULT_TIE_TYPES

    def __post_init__(self) -> None:
        def choose(name: str, allowed: tuple) -> None:
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")

        choose("guidance", GUIDANCES)
        choose("lattice_step", LATTICE_STEPS)
        choose("spacing", SPACINGS)
        choose("unconditional", UNCONDITIONALS)
        per_variable(self.strength)
        if isinstance(self.strength, Mapping):  # frozen: keep a plain dict copy, not the caller's object
            object.__setattr__(self, "strength", {k: float(v) for k, v in self.strength.items()})
        else:
            object.__setattr__(self, "strength", float(self.strength))
        if isinstance(self.t_start, bool) or not isinstance(self.t_start, int) or not 0 <= self.t_start <= T_MAX:
            raise ValueError(f"t_start must be an integer in 0 ... {T_MAX}, got {self.t_start!r}")
        for name in ("n_samples", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "n_samples" else 0):
                raise ValueError(f"{name} must be an integer >= {1 if name == 'n_samples' else 0}, got {value!r}")
        if self.steps is not None and (isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1):
            raise ValueError(f"steps must be None (the full schedule) or an integer >= 1, got {self.steps!r}")
        if not (isinstance(self.step_lr, (int, float)) and math.isfinite(self.step_lr) and self.step_lr >= 0):
            raise ValueError(f"step_lr must be a finite number >= 0 (0: no Langevin corrector), got {self.step_lr!r}")
        object.__setattr__(self, "step_lr", float(self.step_lr))
        object.__setattr__(self, "tie_types", bool(self.tie_types))

    def replace(self, **changes) -> "SamplingOptions":
        """A copy with ``changes`` (validated)."""
        return replace(self, **changes)

    @classmethod
    def build(cls, options: "SamplingOptions | None" = None, **changes) -> "SamplingOptions":
        """``options`` (default: the defaults) with ``changes``; an unknown name raises TypeError listing the known ones."""
        unknown = sorted(set(changes) - {f.name for f in fields(cls)})
        if unknown:
            raise TypeError(f"unknown sampling options {unknown}; the options are {[f.name for f in fields(cls)]}")
        return (options or cls()).replace(**changes) if changes else (options or cls())

    def resolved_lattice_step(self) -> str:
        """The lattice step ``"ddpm"``, ``"ddim"`` or ``"hybrid"`` that ``lattice_step`` means at ``t_start``."""
        if self.lattice_step == "auto":
            return "ddim" if self.t_start <= AUTO_DDIM_MAX_T_START else "ddpm"
        return self.lattice_step

    def to_dict(self) -> dict:
        """Plain values (JSON-friendly), as stored with every result."""
        return asdict(self)
