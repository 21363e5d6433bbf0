"""Guided scores for sampling: classifier-free (CFG) and classifier-based (CBG) guidance.

All return :class:`Scores` in the parametrisation of the reverse steps (DDPM
noise for A and L, normalised score for X), so the steps of
:class:`~crystaldos.diffusion.JointDiffusion` do not care which guidance
produced them. Noise and score are related by ``score = -eps / sqrt(1 - abar_t)``
(DDPM), which is how a likelihood gradient enters the A and L predictions; the
denoiser's clean-type logits become noise through :meth:`JointDiffusion.types_eps`.

* CFG: ``(1 + w) * scores(S_t, y) - w * scores(S_t, null)``; the conditional and
  the null passes run as one batched forward pass.
* Either strength may be one number or one per variable (:data:`VARIABLES`),
  e.g. ``{"types": 1.0}`` guides the atom types only (variables left out get 0).
* CBG: ``out_uncond(S_t) + s * grad log p(y | S_t)`` with the Gaussian
  likelihood ``log p(y | S_t) = -|g_phi(S_t, t) - y|^2 / (2 sigma(t)^2)``
  (sum over atoms and energies), ``sigma(t)`` the forward model's calibrated
  RMSE at step t (states/eV/atom).
* CBG-DPS (an option, not the published method): the likelihood of the denoiser's
  predicted clean crystal, ``log p(y | S0_hat(S_t))`` with the forward model at t = 0,
  differentiated through the unconditional denoiser (diffusion posterior sampling,
  Chung et al. 2023). Its forward model only ever sees near-clean crystals, where it
  is most accurate; the price is a backward pass through the denoiser at every step.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import numpy as np
import torch

from crystaldos.diffusion import JointDiffusion
from crystaldos.model import CrystalDenoiser, DenoiserOutput, DOSForwardModel
from crystaldos.options import VARIABLES, per_variable  # noqa: F401  (VARIABLES: the parts guidance acts on)


class CrystalState(NamedTuple):
    """A batch of crystals during sampling: types (N, 100), frac_coords (N, 3), lattice (B, 3, 3) Å."""

    types: torch.Tensor
    frac_coords: torch.Tensor
    lattice: torch.Tensor


class Graph(NamedTuple):
    """Fixed connectivity of a sampling batch: edge_index (2, E), batch (N,), num_graphs B."""

    edge_index: torch.Tensor
    batch: torch.Tensor
    num_graphs: int


class Scores(NamedTuple):
    """What a reverse step needs: eps_types (N, 100), score_coords (N, 3, normalised), eps_lattice (B, 3, 3)."""

    eps_types: torch.Tensor
    score_coords: torch.Tensor
    eps_lattice: torch.Tensor


def to_scores(output: DenoiserOutput, diffusion: JointDiffusion, state: CrystalState, t: torch.Tensor, graph: Graph) -> Scores:
    """Denoiser output -> :class:`Scores` (clean-type logits become DDPM noise)."""
    return Scores(diffusion.types_eps(output.type_logits, state.types, t[graph.batch]), output.score_coords, output.eps_lattice)


def denoise(model: CrystalDenoiser, diffusion: JointDiffusion, state: CrystalState, t: torch.Tensor, graph: Graph, dos=None,
            use_condition=None) -> Scores:
    """One plain pass of a denoiser (``dos`` None: unconditional, or the null branch of a CFG model)."""
    out = model(state.types, state.frac_coords, state.lattice, t, graph.edge_index, graph.batch, dos, use_condition)
    return to_scores(out, diffusion, state, t, graph)


def cfg_output(model: CrystalDenoiser, diffusion: JointDiffusion, state: CrystalState, t: torch.Tensor, graph: Graph,
               dos: torch.Tensor, omega: float | Mapping[str, float]) -> Scores:
    """Classifier-free guidance, conditional and null branches in one doubled batch (``omega``: see :func:`per_variable`)."""
    n, b = state.types.shape[0], graph.num_graphs
    doubled = model(
        torch.cat([state.types, state.types]),
        torch.cat([state.frac_coords, state.frac_coords]),
        torch.cat([state.lattice, state.lattice]),
        torch.cat([t, t]),
        torch.cat([graph.edge_index, graph.edge_index + n], dim=1),
        torch.cat([graph.batch, graph.batch + b]),
        torch.cat([dos, dos]),
        torch.cat([torch.ones(b, dtype=torch.bool, device=t.device), torch.zeros(b, dtype=torch.bool, device=t.device)]),
    )
    cond = to_scores(DenoiserOutput(*(x[: len(x) // 2] for x in doubled)), diffusion, state, t, graph)
    null = to_scores(DenoiserOutput(*(x[len(x) // 2 :] for x in doubled)), diffusion, state, t, graph)
    return Scores(*((1 + w) * c - w * u for w, c, u in zip(per_variable(omega), cond, null)))


class Likelihood:
    """``log p(y | S_t)`` of the DOS forward model with its calibrated noise scale sigma(t).

    The errors of neighbouring energies are correlated (they share the DOS broadening), so a Gaussian that counted
    every grid point as an independent observation would be sharper the finer the grid. Where the calibration
    has it (``effective_fraction``, measured on the validation split by
    :func:`crystaldos.train.loop.forward_model_errors`), the sum over energies is weighted by the fraction of
    effectively independent points (the effective-sample-size form of the likelihood). Calibrations made before
    it was measured lack it and count every point (fraction 1), as before.
    """

    def __init__(self, model: DOSForwardModel, calibration: dict) -> None:
        self.model = model
        self.t_grid = np.asarray(calibration["t"], dtype=float)
        self.sigma_grid = np.asarray(calibration["rmse"], dtype=float)
        self.fraction_grid = np.asarray(calibration.get("effective_fraction", np.ones_like(self.t_grid)), dtype=float)
        if self.fraction_grid.shape != self.t_grid.shape or not ((self.fraction_grid > 0) & (self.fraction_grid <= 1)).all():
            raise ValueError(f"calibration['effective_fraction'] must hold one value in (0, 1] per t, got {self.fraction_grid}")

    def sigma(self, t):
        """Noise scale at step(s) t (states/eV/atom), linear interpolation of the calibration (scalar or array)."""
        return np.interp(t, self.t_grid, self.sigma_grid)

    def effective_fraction(self, t):
        """Effectively independent energies per grid point at step(s) t (0 ... 1], interpolated like sigma."""
        return np.interp(t, self.t_grid, self.fraction_grid)

    def log_prob(self, state: CrystalState, t: torch.Tensor, graph: Graph, dos: torch.Tensor,
                 sigma_t: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) log-likelihood of the target DOS for each crystal (up to a constant); the forward model runs
        at step ``t`` (B,), the noise scale is sigma(``sigma_t``) (default ``t``)."""
        from torch_geometric.utils import scatter

        pred = self.model(state.types, state.frac_coords, state.lattice, t, graph.edge_index, graph.batch)
        at = (t if sigma_t is None else sigma_t).cpu().numpy()
        sigma = torch.as_tensor(self.sigma(at), dtype=pred.dtype, device=pred.device)[graph.batch]
        weight = torch.as_tensor(self.effective_fraction(at), dtype=pred.dtype, device=pred.device)[graph.batch]
        per_atom = -0.5 * weight * (((pred - dos) / sigma[:, None]) ** 2).sum(-1)
        return scatter(per_atom, graph.batch, dim=0, dim_size=graph.num_graphs, reduce="sum")

    def gradients(self, state: CrystalState, t: torch.Tensor, graph: Graph, dos: torch.Tensor) -> CrystalState:
        """grad log p(y | S_t) w.r.t. types, fractional coordinates and lattice."""
        with torch.enable_grad():
            leaves = CrystalState(*(x.detach().requires_grad_(True) for x in state))
            log_p = self.log_prob(leaves, t, graph, dos).sum()
            return CrystalState(*torch.autograd.grad(log_p, leaves))


def cbg_output(
    base: Scores, likelihood: Likelihood, diffusion: JointDiffusion, state: CrystalState, t: torch.Tensor, graph: Graph,
    dos: torch.Tensor, strength: float | Mapping[str, float], t_prev: torch.Tensor | None = None,
) -> Scores:
    """Classifier-based guidance: add ``strength * grad log p(y | S_t)`` to the unconditional scores in ``base``.

    ``strength`` is one number or one per variable (:func:`per_variable`); ``t_prev`` (B,) the step the
    reverse step goes to (default t - 1), see :func:`add_gradient`.
    """
    if not any(per_variable(strength)):
        return base
    return add_gradient(base, likelihood.gradients(state, t, graph, dos), diffusion, t, graph, strength, t_prev)


def add_gradient(base: Scores, grad: CrystalState, diffusion: JointDiffusion, t: torch.Tensor, graph: Graph,
                 strength: float | Mapping[str, float], t_prev: torch.Tensor | None = None) -> Scores:
    """``base`` scores plus ``strength`` times a log-likelihood gradient ``grad`` (w.r.t. types, X, L of S_t),
    each turned into the parametrisation of the reverse steps.

    X: the score of p(X_t | y) is the score of p(X_t) plus the gradient (Bayes), in normalised units.
    Types and lattice (DDPM): the gradient shifts the mean of the step t -> ``t_prev`` (B,; default t - 1) by
    beta_tilde * grad (:meth:`JointDiffusion.likelihood_eps_scale`), the same as the noise form
    eps - sqrt(1 - abar_t) * grad for single steps at low noise, bounded where the noise form blows up near T.
    """
    s_types, s_coords, s_lattice = per_variable(strength)
    node_t = t[graph.batch]
    t_prev = (t - 1).clamp_min(0) if t_prev is None else t_prev
    scale_graphs = diffusion.likelihood_eps_scale(t, t_prev)
    # A lattice whose noise is scaled by s per crystal diffuses as L / s: its gradient is s * grad_L and its
    # noise in Å is s * eps, hence s^2 (1 for the shipped models).
    lattice_scale = diffusion.graph_lattice_noise_scale(graph.batch, graph.num_graphs).to(grad.lattice.dtype)
    return Scores(
        base.eps_types - s_types * scale_graphs[graph.batch][:, None] * grad.types,
        base.score_coords + s_coords * grad.frac_coords / diffusion.score_norms[node_t][:, None].sqrt(),
        base.eps_lattice - s_lattice * (scale_graphs * lattice_scale**2)[:, None, None] * grad.lattice,
    )


def predicted_clean(output: DenoiserOutput, diffusion: JointDiffusion, state: CrystalState, t: torch.Tensor,
                    graph: Graph) -> CrystalState:
    """The denoiser's estimate of the clean crystal S_0 from S_t (differentiable in S_t):
    types softmax(logits) (N, 100); X_t + sigma_t^2 * score(X_t) wrapped into [0, 1) (Tweedie, exact for an
    unwrapped Gaussian); lattice (L_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), Å."""
    node_t = t[graph.batch]
    score = diffusion.coordinate_score(output.score_coords, t, graph.batch)
    return CrystalState(
        output.type_logits.softmax(-1),
        torch.remainder(state.frac_coords + diffusion.sigmas[node_t][:, None] ** 2 * score, 1.0),
        diffusion.clean_from_eps(state.lattice, output.eps_lattice, t),
    )


def dps_output(
    model: CrystalDenoiser, likelihood: Likelihood, diffusion: JointDiffusion, state: CrystalState, t: torch.Tensor,
    graph: Graph, dos: torch.Tensor, strength: float | Mapping[str, float], t_prev: torch.Tensor | None = None,
) -> Scores:
    """CBG-DPS: unconditional scores of ``model`` (its null branch for a CFG model) plus ``strength`` times
    grad_{S_t} log p(y | S0_hat(S_t)), the forward model at t = 0 on the predicted clean crystal with the
    calibrated noise scale sigma(t). One denoiser pass serves both the scores and the gradient."""
    with torch.enable_grad():
        leaves = CrystalState(*(x.detach().requires_grad_(True) for x in state))
        output = model(leaves.types, leaves.frac_coords, leaves.lattice, t, graph.edge_index, graph.batch, None, None)
        base = to_scores(output, diffusion, leaves, t, graph)
        if not any(per_variable(strength)):
            return Scores(*(x.detach() for x in base))
        clean = predicted_clean(output, diffusion, leaves, t, graph)
        log_p = likelihood.log_prob(clean, torch.zeros_like(t), graph, dos, sigma_t=t).sum()
        grad = CrystalState(*torch.autograd.grad(log_p, leaves))
    return add_gradient(Scores(*(x.detach() for x in base)), grad, diffusion, t, graph, strength, t_prev)
