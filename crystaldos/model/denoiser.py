"""The joint A/X/L denoiser, optionally conditioned on the atom-level DOS."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch_geometric.utils import scatter

from crystaldos.model.backbone import ModelConfig, PeriodicBackbone
from crystaldos.model.features import NUM_ELEMENTS


class DenoiserOutput(NamedTuple):
    """What the denoiser predicts for a noisy crystal batch.

    type_logits: (N, NUM_ELEMENTS) logits of the clean atom type (x0-prediction;
        :meth:`JointDiffusion.types_eps` turns them into the DDPM noise).
    score_coords: (N, 3) score of the wrapped normal on fractional coordinates,
        in units of its per-step normaliser (DiffCSP's ``sigma_norm``).
    eps_lattice: (B, 3, 3) noise added to the lattice matrix (DDPM), Å.
    """

    type_logits: torch.Tensor
    score_coords: torch.Tensor
    eps_lattice: torch.Tensor


class DOSEncoder(nn.Module):
    """Atom-level DOS (N, n_energies) states/eV/atom -> (N, hidden) node-space vectors."""

    def __init__(self, n_energies: int, hidden: int, dos_scale: float) -> None:
        super().__init__()
        self.dos_scale = dos_scale
        self.net = nn.Sequential(nn.Linear(n_energies, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, dos: torch.Tensor) -> torch.Tensor:
        return self.net(dos / self.dos_scale)


class CrystalDenoiser(nn.Module):
    """Periodic E(3)-invariant denoiser (DiffCSP's CSPNet with DOS conditioning).

    With ``config.conditional`` every atom's DOS is encoded and added to its node
    representation; a learned null vector stands for "no DOS" (classifier-free
    guidance drops the condition per crystal). Outputs are invariant (types,
    coordinate scores) or equivariant (lattice noise ``phi(H) L``) under
    rotations, translations, permutations and periodic shifts.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden
        self.backbone = PeriodicBackbone(config)
        if config.conditional:
            self.dos_encoder = DOSEncoder(config.n_energies, h, config.dos_scale)
            self.null_condition = nn.Parameter(torch.zeros(h))
        self.types_out = nn.Linear(h, NUM_ELEMENTS)
        # Skip connection from the noisy types to the clean-type logits with a learned,
        # time-dependent gain (EDM's c_skip idea): at small t the input already shows the
        # type, and without the skip a DOS-conditional network learned to read the type off
        # the DOS and ignore the input (63 % of sites right at t = 10 after 4,000 steps).
        self.type_skip_gain = nn.Sequential(nn.Linear(config.time_dim, h), nn.SiLU(), nn.Linear(h, 1))
        self.coords_out = nn.Linear(h, 3, bias=False)
        self.lattice_out = nn.Linear(h, 9, bias=False)

    def node_condition(self, dos: torch.Tensor | None, use_condition: torch.Tensor | None, batch: torch.Tensor) -> torch.Tensor | None:
        """(N, hidden) condition vectors; the null vector where ``use_condition[batch]`` is False or dos is None."""
        if not self.config.conditional:
            if dos is not None and use_condition is not None and bool(use_condition.any()):
                raise ValueError("this denoiser is unconditional; it cannot take a DOS condition")
            return None
        null = self.null_condition.expand(batch.shape[0], -1)
        if dos is None:
            return null
        if dos.shape != (batch.shape[0], self.config.n_energies):
            raise ValueError(f"DOS must have shape (n_atoms={batch.shape[0]}, n_energies={self.config.n_energies}), got {tuple(dos.shape)}")
        encoded = self.dos_encoder(dos)
        if use_condition is None:
            return encoded
        return torch.where(use_condition[batch, None], encoded, null)

    def forward(
        self,
        types: torch.Tensor,
        frac_coords: torch.Tensor,
        lattice: torch.Tensor,
        t: torch.Tensor,
        edge_index: torch.Tensor,
        batch: torch.Tensor,
        dos: torch.Tensor | None = None,
        use_condition: torch.Tensor | None = None,
    ) -> DenoiserOutput:
        """See :class:`PeriodicBackbone` for the inputs; ``dos`` (N, n_energies), ``use_condition`` (B,) bool."""
        h = self.backbone(types, frac_coords, lattice, t, edge_index, batch, self.node_condition(dos, use_condition, batch))
        pooled = scatter(h, batch, dim=0, dim_size=lattice.shape[0], reduce="mean")
        phi = self.lattice_out(pooled).view(-1, 3, 3)
        gain = nn.functional.softplus(self.type_skip_gain(self.backbone.time_embedding(t).to(types.dtype)))[batch]  # (N, 1)
        return DenoiserOutput(self.types_out(h) + gain * types, self.coords_out(h), phi @ lattice)
