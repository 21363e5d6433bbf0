"""One periodic message-passing layer (DiffCSP's CSPLayer) on torch-geometric's MessagePassing."""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import MessagePassing


def mlp(in_dim: int, hidden: int, out_dim: int, act: type[nn.Module] = nn.SiLU) -> nn.Sequential:
    """Two-layer perceptron with activations after both layers (as in DiffCSP)."""
    return nn.Sequential(nn.Linear(in_dim, hidden), act(), nn.Linear(hidden, out_dim), act())


class PeriodicLayer(MessagePassing):
    """h_i <- h_i + phi_h(h_i, mean_j phi_m(h_i, h_j, g(L Lᵀ), F(x_j - x_i))).

    ``edge_attr`` carries the per-edge invariants (lattice Gram matrix of the
    edge's crystal and periodic features of the fractional difference), already
    computed once per forward pass by the network.
    """

    def __init__(self, hidden: int, edge_attr_dim: int) -> None:
        super().__init__(aggr="mean")
        self.norm = nn.LayerNorm(hidden)
        self.message_mlp = mlp(2 * hidden + edge_attr_dim, hidden, hidden)
        self.update_mlp = mlp(2 * hidden, hidden, hidden)

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        """h (N, hidden), edge_index (2, E) source->target, edge_attr (E, edge_attr_dim) -> (N, hidden)."""
        x = self.norm(h)
        aggregated = self.propagate(edge_index, x=x, edge_attr=edge_attr)
        return h + self.update_mlp(torch.cat([x, aggregated], dim=-1))

    def message(self, x_i: torch.Tensor, x_j: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        return self.message_mlp(torch.cat([x_i, x_j, edge_attr], dim=-1))
