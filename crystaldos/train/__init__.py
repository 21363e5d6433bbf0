"""Training of the denoisers and the DOS forward model (``crystaldos train`` / ``python -m crystaldos.train``)."""

from crystaldos.train.config import ForwardObjective, TrainConfig
from crystaldos.train.loop import batch_losses, evaluate, forward_model_errors, resolve_device, train

__all__ = ["TrainConfig", "ForwardObjective", "train", "batch_losses", "evaluate", "forward_model_errors", "resolve_device"]
