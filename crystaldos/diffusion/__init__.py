"""Diffusion over crystals: schedules, the wrapped normal on the torus, joint A/X/L noising and loss."""

from crystaldos.diffusion.joint import DIFFCSP_STEP_LR, DiffusionConfig, JointDiffusion, NoisyCrystal
from crystaldos.diffusion.schedules import (
    cosine_betas,
    geometric_sigmas,
    wrapped_normal_log_density,
    wrapped_normal_score,
    wrapped_normal_score_norm,
)

__all__ = [
    "DIFFCSP_STEP_LR",
    "DiffusionConfig",
    "JointDiffusion",
    "NoisyCrystal",
    "cosine_betas",
    "geometric_sigmas",
    "wrapped_normal_log_density",
    "wrapped_normal_score",
    "wrapped_normal_score_norm",
]
