"""The crystaldos checkpoint format: one ``torch.save`` file per trained network.

A checkpoint is a plain dict (readable with ``torch.load(path, weights_only=True)``):

=====================  ============================================================
key                     content
=====================  ============================================================
``format``              ``"crystaldos-checkpoint"``
``format_version``      int, :data:`FORMAT_VERSION`
``crystaldos_version``  version that wrote it
``kind``                ``"cfg"`` (DOS-conditional denoiser with a null condition),
                        ``"uncond"`` (unconditional denoiser) or ``"forward"`` (DOS model)
``model_config``        :class:`~crystaldos.model.ModelConfig` as a dict
``diffusion_config``    :class:`~crystaldos.diffusion.DiffusionConfig` as a dict
``grid``                the DOS energy grid (:meth:`DosGrid.to_attrs`)
``vocabulary``          atomic numbers of the one-hot columns (1 ... 100)
``state_dict``          network weights (the EMA weights for released models)
``train``               training config, step, history and wall time (dicts/lists)
``calibration``         forward model only: ``{"t": [...], "mae": [...], "rmse": [...],
                        "effective_fraction": [...]}``: the per-step DOS noise scale
                        sigma(t) = rmse (states/eV/atom) of log p(y | S_t) and the fraction
                        of effectively independent energies (0 ... 1], both measured on
                        the val split (:func:`crystaldos.train.loop.forward_model_errors`)
=====================  ============================================================
"""

from __future__ import annotations

from pathlib import Path

import torch

#: Folder of the shipped (released) checkpoints.
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"

from crystaldos.atomic_files import atomic_write
from crystaldos.dos import DosGrid

FORMAT = "crystaldos-checkpoint"
FORMAT_VERSION = 1
KINDS = ("cfg", "uncond", "forward")


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, of another version or does not fit the data."""


def save_checkpoint(checkpoint: dict, path: str | Path) -> Path:
    """Write a checkpoint dict atomically (a crash never leaves a half-written file).

    The format tag, format version and crystaldos version are this crystaldos's, also when ``checkpoint`` is one
    read with :func:`load_checkpoint` and changed (a recalibration, a re-release), so it can be passed as it is.
    """
    from crystaldos import __version__

    payload = _plain({**checkpoint, "format": FORMAT, "format_version": FORMAT_VERSION, "crystaldos_version": __version__})
    with atomic_write(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def _plain(value):
    """Numpy scalars/arrays and tuples -> Python types, so ``weights_only=True`` can read the file."""
    import numpy as np

    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def load_checkpoint(path: str | Path, kind: str | None = None, grid: DosGrid | None = None, map_location="cpu") -> dict:
    """Read and check a checkpoint.

    Args:
        kind: if given, the checkpoint must be of this kind.
        grid: if given, the checkpoint's DOS grid must match it.

    Raises:
        CheckpointError: naming the file and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, pickle of foreign objects, not a torch file at all
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(err).__name__}: {str(err)[:200]})") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a crystaldos checkpoint (no format tag {FORMAT!r})")
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {ckpt.get('format_version')}, this crystaldos reads version {FORMAT_VERSION}"
        )
    missing = {"kind", "model_config", "diffusion_config", "grid", "state_dict"} - set(ckpt)
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {sorted(missing)}")
    if ckpt["kind"] not in KINDS:
        raise CheckpointError(f"checkpoint {path} has unknown kind {ckpt['kind']!r}")
    if kind is not None and ckpt["kind"] != kind:
        raise CheckpointError(f"checkpoint {path} holds a {ckpt['kind']!r} model, expected {kind!r}")
    if grid is not None and not DosGrid.from_attrs(ckpt["grid"]).matches(grid):
        raise CheckpointError(f"checkpoint {path} was trained on DOS grid {DosGrid.from_attrs(ckpt['grid'])}, the data use {grid}")
    return ckpt


def build_network(ckpt: dict) -> torch.nn.Module:
    """The network a checkpoint describes, with its weights loaded (eval mode)."""
    from crystaldos.model import CrystalDenoiser, DOSForwardModel, ModelConfig

    config = ModelConfig.from_dict(ckpt["model_config"])
    network = DOSForwardModel(config) if ckpt["kind"] == "forward" else CrystalDenoiser(config)
    try:
        network.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint weights do not fit its own model config: {str(err)[:300]}") from err
    return network.eval()


def checkpoint_grid(ckpt: dict) -> DosGrid:
    """The DOS grid a checkpoint was trained on."""
    return DosGrid.from_attrs(ckpt["grid"])
