"""Networks: the periodic invariant denoiser (CFG / unconditional) and the DOS forward model (CBG)."""

from crystaldos.model.backbone import ModelConfig, PeriodicBackbone
from crystaldos.model.denoiser import CrystalDenoiser, DenoiserOutput, DOSEncoder
from crystaldos.model.features import NUM_ELEMENTS, one_hot_types, types_to_atomic_numbers
from crystaldos.model.forward_model import DOSForwardModel

__all__ = [
    "ModelConfig",
    "PeriodicBackbone",
    "CrystalDenoiser",
    "DenoiserOutput",
    "DOSEncoder",
    "DOSForwardModel",
    "NUM_ELEMENTS",
    "one_hot_types",
    "types_to_atomic_numbers",
]
