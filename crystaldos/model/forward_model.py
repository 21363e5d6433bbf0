"""The time-dependent DOS forward model g_phi(y | S_t, t) used for classifier-based guidance."""

from __future__ import annotations

import torch
from torch import nn

from crystaldos.model.backbone import ModelConfig, PeriodicBackbone
from crystaldos.model.features import NUM_ELEMENTS


#: Inverse temperature of the softmax that picks an atom's row of the per-element table from its (noisy) types:
#: with the linear product types @ table instead, the noise of 100 type components at high t summed to ~10 times
#: a DOS (training loss 9 instead of 0.9 after 200 steps).
BASELINE_SHARPNESS = 20.0


def element_mean_dos_table(atomic_numbers: torch.Tensor, dos: torch.Tensor, statistic: str = "mean") -> torch.Tensor:
    """(NUM_ELEMENTS, n_energies) mean (or, with ``statistic="median"``, energy-wise median) DOS of each element's
    atoms, from ``atomic_numbers`` (n,) and their ``dos`` (n, n_energies) (states/eV/atom); elements without atoms
    get the same statistic over all atoms. Row Z - 1 is element Z. The per-element baseline of the forward model
    and of its benchmarks: the mean minimises the squared error, the median the absolute error (MAE)."""
    if statistic not in ("mean", "median"):
        raise ValueError(f"statistic must be 'mean' or 'median', got {statistic!r}")
    numbers = atomic_numbers.long()
    reduce = (lambda rows: rows.mean(0)) if statistic == "mean" else (lambda rows: rows.median(0).values)
    table = reduce(dos).expand(NUM_ELEMENTS, -1).clone()
    for z in numbers.unique().tolist():
        table[z - 1] = reduce(dos[numbers == z])
    return table


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
        if config.element_baseline:
            # (NUM_ELEMENTS, n_energies) mean DOS per element, units of dos_scale; set by set_element_baseline.
            self.register_buffer("element_dos", torch.zeros(NUM_ELEMENTS, config.n_energies))
            # The correction starts at zero: an untrained model is the per-element baseline.
            nn.init.zeros_(self.dos_out[-1].weight)
            nn.init.zeros_(self.dos_out[-1].bias)

    def set_element_baseline(self, element_dos: torch.Tensor) -> None:
        """Store the per-element mean DOS (NUM_ELEMENTS, n_energies), states/eV/atom."""
        if not self.config.element_baseline:
            raise ValueError("this forward model was built without element_baseline")
        self.element_dos.copy_(element_dos / self.config.dos_scale)

    def forward_scaled(self, types, frac_coords, lattice, t, edge_index, batch) -> torch.Tensor:
        """DOS in units of ``config.dos_scale`` (what the loss compares), (N, n_energies).

        Plain: softplus of the network's output (never negative). With ``element_baseline``: the per-element
        table weighted by softmax(BASELINE_SHARPNESS * types) (the element's mean DOS for a clean one-hot atom,
        to 1e-7; a mixture of element DOSes, never an amplified random projection, for noisy types) plus the
        network's correction, unconstrained so that the baseline passes through unchanged (it may dip
        slightly below zero in gaps)."""
        h = self.backbone(types, frac_coords, lattice, t, edge_index, batch)
        if self.config.element_baseline:
            return (BASELINE_SHARPNESS * types).softmax(-1) @ self.element_dos + self.dos_out(h)
        return nn.functional.softplus(self.dos_out(h))

    def forward(self, types, frac_coords, lattice, t, edge_index, batch) -> torch.Tensor:
        """Predicted DOS, states/eV/atom, (N, n_energies)."""
        return self.forward_scaled(types, frac_coords, lattice, t, edge_index, batch) * self.config.dos_scale

    def predict_dos(self, types, frac_coords, lattice, t, edge_index, batch) -> torch.Tensor:
        """The predicted DOS as a physical curve, states/eV/atom, (N, n_energies): :meth:`forward` clipped at 0.

        A DOS is never negative, but with ``element_baseline`` the raw output may dip below zero in gaps;
        training and classifier-based guidance use the raw output (a clip would stop their gradients there),
        while every DOS handed to a user or a metric comes from here."""
        return self.forward(types, frac_coords, lattice, t, edge_index, batch).clamp_min(0.0)
