"""The time-dependent DOS forward model g_phi(y | S_t, t) used for classifier-based guidance."""

from __future__ import annotations

import torch
from torch import nn

from crystaldos.model.backbone import ModelConfig, PeriodicBackbone


class DOSForwardModel(nn.Module):
    """Predicts every atom's DOS (N, n_energies), states/eV/atom, from a noisy crystal at step t.

    Same periodic invariant backbone as the denoiser, so the prediction is
    invariant and its gradients w.r.t. the fractional coordinates, the lattice
    (equivariant) and the continuous atom types exist everywhere.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.conditional:
            raise ValueError("the forward model takes no DOS condition (set conditional=False)")
        self.config = config
        h = config.hidden
        self.backbone = PeriodicBackbone(config)
        self.dos_out = nn.Sequential(nn.Linear(h, 2 * h), nn.SiLU(), nn.Linear(2 * h, config.n_energies))

    def forward_scaled(self, types, frac_coords, lattice, t, edge_index, batch) -> torch.Tensor:
        """DOS in units of ``config.dos_scale`` (what the loss compares), (N, n_energies)."""
        h = self.backbone(types, frac_coords, lattice, t, edge_index, batch)
        return nn.functional.softplus(self.dos_out(h))

    def forward(self, types, frac_coords, lattice, t, edge_index, batch) -> torch.Tensor:
        """Predicted DOS, states/eV/atom, (N, n_energies)."""
        return self.forward_scaled(types, frac_coords, lattice, t, edge_index, batch) * self.config.dos_scale
