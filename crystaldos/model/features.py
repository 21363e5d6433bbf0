"""Invariant input features of the denoiser: time, periodic coordinate differences, lattice.

These are the only ways geometry enters the networks, which is what makes them
E(3)- and periodic-invariant (DiffCSP, Jiao et al. 2023):

* fractional-coordinate differences ``x_j - x_i`` through sines and cosines of
  ``2 pi k (x_j - x_i)``: unchanged by a global translation and by moving any
  atom by a lattice vector (an integer shift of its fractional coordinates);
* the lattice ``L`` (rows = lattice vectors, Å) only through the Gram matrix
  ``L Lᵀ`` (all inner products of lattice vectors): unchanged by any rotation or
  reflection of the Cartesian frame (``L -> L Rᵀ``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: Atom types are one-hot vectors over Z = 1 ... NUM_ELEMENTS (as in CDVAE/DiffCSP),
#: so checkpoints trained on the embedded set read Materials Project data unchanged.
NUM_ELEMENTS = 100


def one_hot_types(atomic_numbers: torch.Tensor) -> torch.Tensor:
    """(N,) atomic numbers Z -> (N, NUM_ELEMENTS) float one-hot (column Z - 1)."""
    if atomic_numbers.numel() and (int(atomic_numbers.min()) < 1 or int(atomic_numbers.max()) > NUM_ELEMENTS):
        raise ValueError(f"atomic numbers must lie in 1 ... {NUM_ELEMENTS}, got {atomic_numbers.unique().tolist()}")
    return nn.functional.one_hot(atomic_numbers - 1, NUM_ELEMENTS).float()


def types_to_atomic_numbers(types: torch.Tensor) -> torch.Tensor:
    """(N, NUM_ELEMENTS) scores or one-hot vectors -> (N,) atomic numbers (argmax + 1)."""
    return types.argmax(dim=-1) + 1


class SinusoidalTimeEmbedding(nn.Module):
    """Diffusion step t (B,) integers or floats -> (B, dim) sinusoidal features (Transformer style)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError("time embedding dimension must be even")
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / max(half - 1, 1))
        angles = t.float()[:, None] * freqs[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class PeriodicFourierFeatures(nn.Module):
    """Fractional differences (E, 3) -> (E, 6 * n_frequencies) features sin/cos(2 pi k d), k = 1 ... n.

    Integer shifts of ``d`` leave every feature unchanged, so the features see
    the torus, not a particular image of an atom.
    """

    def __init__(self, n_frequencies: int = 10) -> None:
        super().__init__()
        self.register_buffer("k", 2 * math.pi * torch.arange(1, n_frequencies + 1, dtype=torch.float32), persistent=False)
        self.out_dim = 6 * n_frequencies

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        angles = d[..., None] * self.k  # (E, 3, n)
        return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)


def lattice_invariants(lattice: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) lattices (rows = vectors, Å) -> (B, 9) flattened Gram matrices L Lᵀ (Å²)."""
    return (lattice @ lattice.transpose(-1, -2)).flatten(-2)


def lattice_scale_invariants(lattice: torch.Tensor, num_atoms: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) lattices (Å) and (B,) atom counts -> (B, 10): the shape L Lᵀ / V^(2/3) (9, dimensionless) and
    ln(V / N / 1 Å³), the log volume per atom; both unchanged by rotations and reflections of the cell."""
    volume = torch.linalg.det(lattice).abs().clamp_min(1e-6)  # a collapsed noisy cell stays finite
    shape = lattice_invariants(lattice) / volume[:, None] ** (2 / 3)
    return torch.cat([shape, torch.log(volume / num_atoms.to(volume.dtype))[:, None]], dim=-1)
