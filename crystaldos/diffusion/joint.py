"""Joint diffusion of a crystal S = (A, X, L): forward noising, training loss and reverse steps.

* **L** (lattice, (B, 3, 3), Å): DDPM, ``L_t = sqrt(abar_t) L_0 + sqrt(1 - abar_t) eps``.
* **X** (fractional coordinates, (N, 3)): wrapped normal on the torus,
  ``X_t = (X_0 + sigma_t eps) mod 1``, learned by score matching with the
  target normalised per step (DiffCSP).
* **A** (atom types): continuous DDPM on one-hot vectors over Z = 1 ... 100, as in
  DiffCSP's ab initio generation. Chosen over a discrete D3PM because
  classifier-based guidance needs ``grad_A log p(y | S_t)``: with continuous
  types the forward model is differentiable in A, the same way it is in X and L,
  and CBG and CFG act on the three variables alike. Types are read off by argmax.
  The network predicts the clean type (logits, cross-entropy loss; the
  x0-parametrisation of continuous diffusion for categorical data, Dieleman et
  al. 2022) and the DDPM noise follows as ``(A_t - sqrt(abar) p) / sqrt(1 - abar)``.
  Measured here: with DiffCSP's noise-prediction MSE the type prediction at
  t = 200 was *worse* than the argmax of the noisy input after 3,000 CPU steps
  (45 % vs 70 % of sites right); a classifier head learns this quickly.

Loss: ``lambda_types * L_A + lambda_coords * L_X + lambda_lattice * L_L``; L_A is a
cross-entropy, L_X and L_L are MSEs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from crystaldos.diffusion.schedules import cosine_betas, geometric_sigmas, wrapped_normal_score, wrapped_normal_score_norm
from crystaldos.model.denoiser import DenoiserOutput
from crystaldos.model.features import NUM_ELEMENTS
from crystaldos.settings import Settings


#: DiffCSP's Langevin corrector step on X (``step_lr``); 0 turns the corrector off (docs/research/lattice.md section 10).
DIFFCSP_STEP_LR = 1e-5


@dataclass
class DiffusionConfig(Settings):
    """Diffusion settings (stored in every checkpoint).

    Attributes:
        timesteps: T.
        sigma_begin, sigma_end: wrapped-normal widths of X at t = 1 and T (fractions of a cell length).
        lambda_types, lambda_coords, lambda_lattice: weights of the three losses.
        lattice_noise_atoms: None (DiffCSP, the shipped models): the lattice is noised in Å, the same for every
            cell, so a 1-atom cell (vectors ~2.7 Å) is relatively three times as noisy at step t as a 20-atom
            cell. A number n_ref: the lattice noise of an N-atom cell is scaled by (N / n_ref)^(1/3) (the cell's
            length scale, as in MatterGen), the same relative noise for every size and the absolute noise of
            today for n_ref atoms (``benchmarks/lattice/noise_scale.py``).
    """

    timesteps: int = 1000
    sigma_begin: float = 0.005
    sigma_end: float = 0.5
    lambda_types: float = 1.0
    lambda_coords: float = 1.0
    lambda_lattice: float = 1.0
    lattice_noise_atoms: float | None = None

    def __post_init__(self) -> None:
        if self.lattice_noise_atoms is not None and not self.lattice_noise_atoms > 0:
            raise ValueError(f"lattice_noise_atoms must be a positive number of atoms or None, got {self.lattice_noise_atoms!r}")

    settings_name = "diffusion"


class NoisyCrystal(NamedTuple):
    """A batch noised to per-crystal steps ``t`` (B,), with the training targets.

    types (N, 100), frac_coords (N, 3) in [0, 1), lattice (B, 3, 3) Å;
    eps_types: the Gaussian noise drawn; eps_lattice: the noise drawn times the
    lattice noise scale (Å; lattice_t = sqrt(abar) L + sqrt(1 - abar) eps_lattice);
    score_coords: the normalised wrapped-normal score of X_t given X_0 (N, 3);
    clean_types: (N,) column of each atom's clean one-hot vector (the type
    classifier's target); lattice_scale: (B,) that scale (1 unless
    ``lattice_noise_atoms`` is set).
    """

    types: torch.Tensor
    frac_coords: torch.Tensor
    lattice: torch.Tensor
    t: torch.Tensor
    eps_types: torch.Tensor
    score_coords: torch.Tensor
    eps_lattice: torch.Tensor
    clean_types: torch.Tensor
    lattice_scale: torch.Tensor | None = None


def _randn(shape, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)


class JointDiffusion(nn.Module):
    """Schedules as buffers (so ``.to(device)`` moves them) and the maths of each step.

    Index convention: tensors indexed by t have length T + 1 and entry 0 is the
    clean state (abar_0 = 1, sigma_0 = 0).
    """

    def __init__(self, config: DiffusionConfig | None = None) -> None:
        super().__init__()
        self.config = config or DiffusionConfig()
        T = self.config.timesteps
        betas = torch.cat([torch.zeros(1, dtype=torch.float64), cosine_betas(T)])
        alphas = 1 - betas
        alpha_bars = torch.cumprod(alphas, 0)
        # Posterior std of the DDPM reverse step (beta tilde).
        post = torch.zeros_like(betas)
        post[1:] = betas[1:] * (1 - alpha_bars[:-1]) / (1 - alpha_bars[1:])
        sigmas = torch.cat([torch.zeros(1, dtype=torch.float64), geometric_sigmas(T, self.config.sigma_begin, self.config.sigma_end)])
        norms = torch.cat([torch.ones(1, dtype=torch.float64), wrapped_normal_score_norm(sigmas[1:])])
        for name, value in dict(
            betas=betas, alphas=alphas, alpha_bars=alpha_bars, posterior_std=post.sqrt(), sigmas=sigmas, score_norms=norms
        ).items():
            self.register_buffer(name, value.float(), persistent=False)

    @property
    def timesteps(self) -> int:
        return self.config.timesteps

    def lattice_noise_scale(self, num_atoms: torch.Tensor) -> torch.Tensor:
        """(B,) factor of each crystal's lattice noise for ``num_atoms`` (B,): (N / n_ref)^(1/3), or ones
        (see :class:`DiffusionConfig`). The reverse steps stay the same formulas with eps and the fresh noise in
        Å (times this factor)."""
        n_ref = self.config.lattice_noise_atoms
        if n_ref is None:
            return torch.ones(num_atoms.shape, dtype=self.alpha_bars.dtype, device=num_atoms.device)
        return (num_atoms.to(self.alpha_bars.dtype) / n_ref) ** (1 / 3)

    def graph_lattice_noise_scale(self, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
        """(B,) :meth:`lattice_noise_scale` of the crystals of a batch vector (N,)."""
        return self.lattice_noise_scale(torch.bincount(batch, minlength=num_graphs))

    def check_t(self, t: torch.Tensor) -> None:
        if int(t.min()) < 0 or int(t.max()) > self.timesteps:
            raise ValueError(f"diffusion steps must lie in 0 ... {self.timesteps}, got {t.min().item()} ... {t.max().item()}")

    # ------------------------------------------------------------------ forward process
    def noise(
        self,
        types: torch.Tensor,
        frac_coords: torch.Tensor,
        lattice: torch.Tensor,
        t: torch.Tensor,
        batch: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> NoisyCrystal:
        """Sample S_t ~ q(S_t | S_0) for clean one-hot ``types`` (N, 100), ``frac_coords`` (N, 3), ``lattice`` (B, 3, 3).

        ``t`` (B,) holds one step per crystal; t = 0 returns the input unchanged.
        """
        self.check_t(t)
        abar = self.alpha_bars[t]
        eps_types = _randn(types.shape, types, generator)
        eps_coords = _randn(frac_coords.shape, frac_coords, generator)
        scale = self.graph_lattice_noise_scale(batch, lattice.shape[0]).to(lattice.dtype)
        eps_lattice = scale[:, None, None] * _randn(lattice.shape, lattice, generator)
        a_node = abar[batch][:, None]
        noisy_types = a_node.sqrt() * types + (1 - a_node).sqrt() * eps_types
        noisy_lattice = abar.sqrt()[:, None, None] * lattice + (1 - abar).sqrt()[:, None, None] * eps_lattice
        sigma = self.sigmas[t][batch][:, None]
        displacement = sigma * eps_coords
        noisy_coords = torch.remainder(frac_coords + displacement, 1.0)
        safe_sigma = torch.where(sigma > 0, sigma, torch.ones_like(sigma))
        score = wrapped_normal_score(displacement, safe_sigma.expand_as(displacement))
        score = torch.where(sigma > 0, score, torch.zeros_like(score)) / self.score_norms[t][batch][:, None].sqrt()
        return NoisyCrystal(noisy_types, noisy_coords, noisy_lattice, t, eps_types, score, eps_lattice, types.argmax(-1), scale)

    def sample_t(self, n: int, device: torch.device | str, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n,) training steps drawn uniformly from 1 ... T."""
        return torch.randint(1, self.timesteps + 1, (n,), generator=generator, device=device)

    def loss(self, output: DenoiserOutput, noisy: NoisyCrystal) -> dict[str, torch.Tensor]:
        """The weighted joint loss and its parts (scalars): ``loss``, ``types``, ``coords``, ``lattice``."""
        c = self.config
        scale = 1.0 if noisy.lattice_scale is None else noisy.lattice_scale[:, None, None]
        parts = {
            "types": nn.functional.cross_entropy(output.type_logits, noisy.clean_types),
            "coords": nn.functional.mse_loss(output.score_coords, noisy.score_coords),
            # In units of the noise drawn, whatever its scale per crystal.
            "lattice": nn.functional.mse_loss(*(x / scale for x in (output.eps_lattice, noisy.eps_lattice))),
        }
        parts["loss"] = c.lambda_types * parts["types"] + c.lambda_coords * parts["coords"] + c.lambda_lattice * parts["lattice"]
        return parts

    # ------------------------------------------------------------------ priors and reverse steps
    def prior(self, num_atoms: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """S_T for crystals of ``num_atoms`` (B,): types (N, 100) ~ N(0, I), coords (N, 3) ~ U[0, 1), lattice (B, 3, 3) ~
        N(0, s^2 I), s the lattice noise scale (1 Å unless ``lattice_noise_atoms`` is set)."""
        n, b = int(num_atoms.sum()), num_atoms.shape[0]
        device = num_atoms.device
        types = torch.randn(n, NUM_ELEMENTS, generator=generator, device=device)
        coords = torch.rand(n, 3, generator=generator, device=device)
        lattice = torch.randn(b, 3, 3, generator=generator, device=device)
        return types, coords, lattice * self.lattice_noise_scale(num_atoms).to(lattice.dtype)[:, None, None]

    def types_eps(self, type_logits: torch.Tensor, types_t: torch.Tensor, t_nodes: torch.Tensor) -> torch.Tensor:
        """DDPM noise implied by a clean-type prediction: (A_t - sqrt(abar) softmax(logits)) / sqrt(1 - abar), (N, 100)."""
        abar = self.alpha_bars[t_nodes][:, None]
        return (types_t - abar.sqrt() * type_logits.softmax(-1)) / (1 - abar).clamp_min(1e-8).sqrt()

    def tie_types_eps(self, types_t: torch.Tensor, eps: torch.Tensor, t_nodes: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        """The type noise ``eps`` (N, 100) re-derived so that every node of a group predicts the same clean type.

        The clean-type estimates x0_hat = (A_t - sqrt(1 - abar) eps) / sqrt(abar) are averaged within each group
        (``groups`` (N,): a representative node index per node), and eps is recomputed from the node's own A_t and
        the group's mean estimate; each node keeps its own noise, so A_t keeps its variance, and the last step,
        whose output is x0_hat, gives the whole group one type.
        """
        clean = self.clean_from_eps(types_t, eps, t_nodes)
        sums = torch.zeros_like(clean).index_add_(0, groups, clean)
        counts = torch.zeros(clean.shape[0], dtype=clean.dtype, device=clean.device).index_add_(0, groups, torch.ones_like(clean[:, 0]))
        tied = sums[groups] / counts[groups, None]
        abar = self.alpha_bars[t_nodes][:, None].to(clean.dtype)
        return (types_t - abar.sqrt() * tied) / (1 - abar).clamp_min(1e-8).sqrt()

    def coordinate_score(self, normalised_score: torch.Tensor, t: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """Network output (N, 3) -> score of X_t (per unit fractional coordinate)."""
        return normalised_score * self.score_norms[t][batch][:, None].sqrt()

    def ddpm_step(self, x: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, t_prev: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Ancestral DDPM step x_t -> x_{t_prev} (t_prev < t, per row of x).

        With t_prev = t - 1 this is Ho et al.'s step; a larger jump uses the same
        posterior q(x_{t_prev} | x_t, x_0 = x0_hat) with alpha = abar_t / abar_{t_prev},
        so strided schedules (fewer steps) need no other formula.
        """
        shape = (-1,) + (1,) * (x.ndim - 1)
        abar, abar_prev = self.alpha_bars[t].view(shape), self.alpha_bars[t_prev].view(shape)
        alpha = abar / abar_prev
        beta = 1 - alpha
        mean = (x - beta / (1 - abar).sqrt() * eps) / alpha.sqrt()
        std = (beta * (1 - abar_prev) / (1 - abar)).clamp_min(0).sqrt()
        return mean + std * noise

    def ddim_step(self, x: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, t_prev: torch.Tensor) -> torch.Tensor:
        """Deterministic DDIM step (eta = 0) x_t -> x_{t_prev}: x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t),
        then x_{t_prev} = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev) eps. Same trained model, no fresh noise."""
        shape = (-1,) + (1,) * (x.ndim - 1)
        abar_prev = self.alpha_bars[t_prev].view(shape)
        return abar_prev.sqrt() * self.clean_from_eps(x, eps, t) + (1 - abar_prev).sqrt() * eps

    def likelihood_eps_scale(self, t: torch.Tensor, t_prev: torch.Tensor) -> torch.Tensor:
        """Factor k (per entry of t) such that eps - k * grad log p moves the mean of the DDPM step t -> t_prev
        by beta_tilde * grad log p, beta_tilde = beta (1 - abar_prev) / (1 - abar_t) the step's posterior
        variance (classifier guidance of Dhariwal & Nichol 2021, Algorithm 1).

        k = sqrt(alpha) (1 - abar_prev) / sqrt(1 - abar_t) with alpha = abar_t / abar_prev. For single steps k is
        within 2 % of sqrt(1 - abar_t), the noise form of their Algorithm 2, from t = 100 to 900; near T, where the cosine
        schedule's alpha is clipped to 1e-3 and the step divides by sqrt(alpha), the noise form would magnify a
        gradient of one noise unit 30-fold (it inflated guided cells to thousands of Å^3 per atom) while k -> 0.
        """
        abar, abar_prev = self.alpha_bars[t], self.alpha_bars[t_prev]
        return (abar / abar_prev).sqrt() * (1 - abar_prev) / (1 - abar).sqrt()

    def clean_from_eps(self, x: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The DDPM estimate of the clean variable, x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), t per row of x."""
        abar = self.alpha_bars[t].view((-1,) + (1,) * (x.ndim - 1))
        return (x - (1 - abar).sqrt() * eps) / abar.sqrt()

    def coords_predictor_step(
        self, x: torch.Tensor, score: torch.Tensor, t: torch.Tensor, t_prev: torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        """Reverse VE step X_t -> X_{t_prev} on the torus (per-atom steps), ``score`` = grad log p(X_t)."""
        s, s_prev = self.sigmas[t][:, None], self.sigmas[t_prev][:, None]
        step = s**2 - s_prev**2
        std = (s_prev**2 * step / s**2).sqrt()
        return torch.remainder(x + step * score + std * noise, 1.0)

    def coords_corrector_step(
        self, x: torch.Tensor, score: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, step_lr: float = DIFFCSP_STEP_LR
    ) -> torch.Tensor:
        """Langevin corrector on X_t (per-atom ``t``), step size step_lr * (sigma_t / sigma_begin)^2 (DiffCSP)."""
        step = step_lr * (self.sigmas[t][:, None] / self.config.sigma_begin) ** 2
        return torch.remainder(x + step * score + (2 * step).sqrt() * noise, 1.0)
