"""The periodic, E(3)-invariant graph network shared by the denoiser and the DOS forward model."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from crystaldos.dos import DosGrid
from crystaldos.model.features import (
    NUM_ELEMENTS,
    PeriodicFourierFeatures,
    SinusoidalTimeEmbedding,
    lattice_invariants,
    lattice_scale_invariants,
)
from crystaldos.model.layers import PeriodicLayer
from crystaldos.model.radius_graph import periodic_radius_graph
from crystaldos.settings import Settings


@dataclass
class ModelConfig(Settings):
    """Size and inputs of a network (stored in every checkpoint).

    Attributes:
        hidden: width of node features.
        n_layers: message-passing layers.
        n_frequencies: Fourier frequencies per fractional direction (features = 6 * n).
        time_dim: width of the sinusoidal time embedding.
        n_energies: points of the DOS energy grid (must match the data).
        conditional: the denoiser sees the atom-level DOS (CFG model) or not (unconditional model).
        gram_scale: Å², divides L Lᵀ so that typical inputs are O(1).
        dos_scale: states/eV/atom, divides DOS values (set from the training data's std).
        cutoff: None (default): messages between all pairs of atoms in the cell, as in DiffCSP
            (the ``edge_index`` passed in). A value in Å: the network builds a radius graph over
            periodic images from the current (noisy) X and L at every call, for large cells.
        max_neighbours: nearest neighbours kept per atom in the radius graph.
        n_radial: Gaussian radial basis functions of the edge length (radius graph; with
            ``edge_lengths`` also in the all-pairs graph).
        edge_lengths: all-pairs graph only: also give every edge the Gaussian radial basis of its
            minimum-image length in Å (0 ... ``length_range``), so that bond lengths, which set the
            lattice's scale, need not be assembled from L Lᵀ and fractional differences.
        length_range: Å, the largest centre of that radial basis.
        lattice_scale_features: also give every edge the cell's shape, L Lᵀ / V^(2/3) (scale-free), and its
            size, ln(V / N / 1 Å³), the log volume per atom. With L Lᵀ / 100 Å² alone a 1-atom cell's inputs
            are ~0.06 and a 4 % change of its volume moves them by ~0.003, so the network hardly resolves the
            cell's size; the log volume per atom puts that change at 0.04 of an input that the DOS's
            expected volume can be compared with linearly (docs/research/lattice.md, section 7).
        element_baseline: forward model only: predict each atom's DOS as the mean DOS of its element in the
            training split (a table set at the start of training, stored with the weights) plus what the
            network adds, so that a small data set starts from the per-element baseline instead of learning it.
    """

    hidden: int = 128
    n_layers: int = 4
    n_frequencies: int = 10
    time_dim: int = 64
    n_energies: int = DosGrid().n_points  # the default grid's; training sets it from the data
    conditional: bool = True
    gram_scale: float = 100.0
    dos_scale: float = 1.0
    cutoff: float | None = None
    max_neighbours: int = 32
    n_radial: int = 16
    edge_lengths: bool = False
    length_range: float = 8.0
    element_baseline: bool = False
    lattice_scale_features: bool = False

    settings_name = "model"


def _metric_length(delta: torch.Tensor, metric: torch.Tensor) -> torch.Tensor:
    """Lengths in Å (E,) of fractional vectors ``delta`` (E, 3) under metrics L Lᵀ (E, 3, 3)."""
    return torch.einsum("ei,eij,ej->e", delta, metric, delta).clamp_min(1e-12).sqrt()


class PeriodicBackbone(nn.Module):
    """(A_t, X_t, L_t, t[, per-atom condition]) -> node features (N, hidden).

    Inputs (N atoms in B crystals):
        types: (N, NUM_ELEMENTS) float, noisy one-hot atom types.
        frac_coords: (N, 3) fractional coordinates (any real values; only differences mod 1 are used).
        lattice: (B, 3, 3) rows = lattice vectors, Å.
        t: (B,) diffusion step.
        edge_index: (2, E) pairs within each crystal (source row 0, target row 1); ignored when
            ``config.cutoff`` is set (the radius graph is rebuilt from X and L).
        batch: (N,) crystal of each atom.
        node_condition: optional (N, hidden), added element-wise to the node representation.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden
        self.type_embedding = nn.Linear(NUM_ELEMENTS, h)
        self.time_embedding = SinusoidalTimeEmbedding(config.time_dim)
        self.node_in = nn.Linear(h + config.time_dim, h)
        self.fourier = PeriodicFourierFeatures(config.n_frequencies)
        edge_dim = 9 + self.fourier.out_dim + (config.n_radial if config.cutoff is not None or config.edge_lengths else 0)
        edge_dim += 10 if config.lattice_scale_features else 0
        self.layers = nn.ModuleList(PeriodicLayer(h, edge_dim) for _ in range(config.n_layers))
        self.norm_out = nn.LayerNorm(h)

    def forward(
        self,
        types: torch.Tensor,
        frac_coords: torch.Tensor,
        lattice: torch.Tensor,
        t: torch.Tensor,
        edge_index: torch.Tensor,
        batch: torch.Tensor,
        node_condition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        time = self.time_embedding(t)[batch]
        h = self.node_in(torch.cat([self.type_embedding(types), time], dim=-1))
        if node_condition is not None:
            h = h + node_condition  # the paper's element-wise addition of the projected DOS
        gram = lattice_invariants(lattice) / self.config.gram_scale
        if self.config.lattice_scale_features:
            gram = torch.cat([gram, lattice_scale_invariants(lattice, torch.bincount(batch, minlength=lattice.shape[0]))], dim=-1)
        if self.config.cutoff is None:
            source, target = edge_index
            delta = frac_coords[source] - frac_coords[target]
            edge_attr = torch.cat([gram[batch[target]], self.fourier(delta)], dim=-1)
            if self.config.edge_lengths:
                metric = (lattice @ lattice.transpose(1, 2))[batch[target]]
                edge_attr = torch.cat([edge_attr, self._minimum_image_rbf(delta, metric)], dim=-1)
        else:
            edge_index, edge_attr = self._radius_edges(frac_coords, lattice, batch, gram)
        for layer in self.layers:
            h = layer(h, edge_index, edge_attr)
        return self.norm_out(h)

    def _minimum_image_rbf(self, delta: torch.Tensor, metric: torch.Tensor) -> torch.Tensor:
        """(E, n_radial) Gaussian basis of |delta - round(delta)|_L in Å (delta: (E, 3) fractional, metric: L Lᵀ (E, 3, 3))."""
        wrapped = delta - torch.round(delta)  # round has zero gradient, like floor above
        return self._radial_basis(_metric_length(wrapped, metric), self.config.length_range)

    def _radial_basis(self, length: torch.Tensor, upper: float) -> torch.Tensor:
        """(E, n_radial) Gaussians of edge lengths ``length`` (E,) in Å, centred evenly on 0 ... ``upper`` Å."""
        centres = torch.linspace(0.0, upper, self.config.n_radial, device=length.device, dtype=length.dtype)
        width = upper / self.config.n_radial
        return torch.exp(-(((length[:, None] - centres) / width) ** 2))

    def _radius_edges(self, frac_coords, lattice, batch, gram) -> tuple[torch.Tensor, torch.Tensor]:
        """Radius graph over images; edge features: Gram matrix, Fourier(x_j - x_i), radial basis of |x_j + k - x_i|_L."""
        cutoff = float(self.config.cutoff)
        wrapped = frac_coords - torch.floor(frac_coords)  # floor has zero gradient: d wrapped / d X = 1
        edge_index, shifts = periodic_radius_graph(wrapped.detach(), lattice.detach(), batch, cutoff, self.config.max_neighbours)
        source, target = edge_index
        delta = wrapped[source] + shifts - wrapped[target]
        metric = (lattice @ lattice.transpose(1, 2))[batch[target]]                # L Lᵀ: lengths without the frame
        length = _metric_length(delta, metric)
        radial = self._radial_basis(length, cutoff)
        envelope = 0.5 * (torch.cos(math.pi * (length / cutoff).clamp(max=1.0)) + 1.0)  # edges fade in/out smoothly
        edge_attr = torch.cat([gram[batch[target]], self.fourier(wrapped[source] - wrapped[target]), radial * envelope[:, None]], dim=-1)
        return edge_index, edge_attr
