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
        # The message MLP's first layer on [x_i, x_j, edge_attr] is W_i x_i + W_j x_j + W_e edge_attr + b: its node
        # terms are computed once per atom instead of once per edge (a cell of n atoms has n² edges), which halves
        # the layer's work; the weights stay one nn.Linear, so checkpoints are unchanged.
        first = self.message_mlp[0]
        hidden = x.shape[-1]
        to_target = x @ first.weight[:, :hidden].T
        from_source = x @ first.weight[:, hidden : 2 * hidden].T
        aggregated = self.propagate(edge_index, t=to_target, s=from_source, edge_attr=edge_attr)
        return h + self.update_mlp(torch.cat([x, aggregated], dim=-1))

    def message(self, t_i: torch.Tensor, s_j: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        first, rest = self.message_mlp[0], self.message_mlp[1:]
        return rest(t_i + s_j + nn.functional.linear(edge_attr, first.weight[:, 2 * t_i.shape[-1] :], first.bias))
