"""Device handling shared by training and sampling (a low layer: imports only torch)."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None -> CUDA when available, else CPU; anything else as given.

    Raises:
        ValueError: a CUDA device was asked for but this torch sees no GPU.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} was asked for but this torch sees no CUDA GPU; use 'cpu' or 'auto'")
    return device
