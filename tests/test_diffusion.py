"""Forward noising, priors, the wrapped normal score and the reverse steps."""

import math

import pytest
import torch

from crystaldos.diffusion import DiffusionConfig, JointDiffusion, wrapped_normal_log_density, wrapped_normal_score
from crystaldos.model import NUM_ELEMENTS, one_hot_types


def clean_batch(n_crystals=400, atoms=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = n_crystals * atoms
    types = one_hot_types(torch.randint(1, 90, (n,), generator=g))
    frac = torch.rand(n, 3, generator=g)
    lattice = 4 * torch.eye(3).repeat(n_crystals, 1, 1) + torch.randn(n_crystals, 3, 3, generator=g)
    batch = torch.arange(n_crystals).repeat_interleave(atoms)
    return types, frac, lattice, batch


def test_wrapped_normal_score_is_the_gradient_of_its_log_density():
    d = torch.linspace(-0.49, 0.49, 41, dtype=torch.float64, requires_grad=True)
    for sigma in (0.01, 0.1, 0.5, 1.0):
        s = torch.full_like(d, sigma)
        (grad,) = torch.autograd.grad(wrapped_normal_log_density(d, s).sum(), d)
        torch.testing.assert_close(wrapped_normal_score(d.detach(), s), grad)
    # Periodic: the score at d and d + 1 agree; the score vanishes at 0 and 1/2 by symmetry.
    s = torch.full((3,), 0.3, dtype=torch.float64)
    torch.testing.assert_close(wrapped_normal_score(torch.tensor([0.2, 0.0, 0.5], dtype=torch.float64), s)[0], wrapped_normal_score(torch.tensor([1.2, 0.0, 0.5], dtype=torch.float64), s)[0])
    assert torch.allclose(wrapped_normal_score(torch.tensor([0.0, 0.5], dtype=torch.float64), s[:2]), torch.zeros(2, dtype=torch.float64), atol=1e-9)


def test_noising_at_t0_returns_the_input():
    diffusion = JointDiffusion()
    types, frac, lattice, batch = clean_batch(20)
    noisy = diffusion.noise(types, frac, lattice, torch.zeros(20, dtype=torch.long), batch)
    torch.testing.assert_close(noisy.types, types)
    torch.testing.assert_close(noisy.frac_coords, frac)
    torch.testing.assert_close(noisy.lattice, lattice)
    assert torch.all(noisy.score_coords == 0)


def test_noising_at_T_matches_the_priors():
    diffusion = JointDiffusion()
    types, frac, lattice, batch = clean_batch(2000)
    t = torch.full((2000,), diffusion.timesteps, dtype=torch.long)
    noisy = diffusion.noise(types, frac, lattice, t, batch, torch.Generator().manual_seed(3))
    # Types and lattice: standard normal (the clean signal is scaled by sqrt(abar_T) ~ 5e-5).
    for x in (noisy.types, noisy.lattice):  # bounds: 5 standard errors
        bound = 5 / math.sqrt(x.numel())
        assert abs(float(x.mean())) < bound and abs(float(x.std()) - 1) < 2 * bound
    # Coordinates: uniform on [0, 1): mean 1/2, variance 1/12, flat histogram.
    x = noisy.frac_coords
    assert abs(float(x.mean()) - 0.5) < 0.01 and abs(float(x.var()) - 1 / 12) < 0.005
    hist = torch.histc(x, bins=10, min=0, max=1) / x.numel()
    assert float((hist - 0.1).abs().max()) < 0.01
    # And the prior sampler draws from the same distributions.
    p_types, p_frac, p_lattice = diffusion.prior(torch.full((2000,), 4), torch.Generator().manual_seed(4))
    assert p_types.shape == (8000, NUM_ELEMENTS) and p_lattice.shape == (2000, 3, 3)
    assert abs(float(p_frac.var()) - 1 / 12) < 0.005


def test_normalised_coordinate_target_has_unit_scale_at_every_step():
    diffusion = JointDiffusion()
    types, frac, lattice, batch = clean_batch(3000)
    for step in (1, 100, 500, 900):
        t = torch.full((3000,), step, dtype=torch.long)
        noisy = diffusion.noise(types, frac, lattice, t, batch, torch.Generator().manual_seed(step))
        assert abs(float((noisy.score_coords**2).mean()) - 1) < 0.1, step


def test_reverse_ddpm_step_with_the_true_noise_recovers_the_clean_state():
    diffusion = JointDiffusion()
    types, frac, lattice, batch = clean_batch(10)
    t = torch.ones(10, dtype=torch.long)
    noisy = diffusion.noise(types, frac, lattice, t, batch)
    back = diffusion.ddpm_step(noisy.lattice, noisy.eps_lattice, t, t - 1, torch.zeros_like(lattice))
    torch.testing.assert_close(back, lattice, atol=1e-4, rtol=0)


def test_ddim_step_with_the_true_noise_lands_on_the_noised_state_of_any_earlier_step():
    diffusion = JointDiffusion()
    types, frac, lattice, batch = clean_batch(10)
    t = torch.full((10,), 300, dtype=torch.long)
    noisy = diffusion.noise(types, frac, lattice, t, batch, torch.Generator().manual_seed(0))
    # Deterministic: with the true noise, DDIM jumps to sqrt(abar') L0 + sqrt(1 - abar') eps for any t' < t.
    for t_prev in (299, 120, 0):
        back = diffusion.ddim_step(noisy.lattice, noisy.eps_lattice, t, torch.full_like(t, t_prev))
        abar = diffusion.alpha_bars[t_prev]
        torch.testing.assert_close(back, abar.sqrt() * lattice + (1 - abar).sqrt() * noisy.eps_lattice, atol=1e-4, rtol=0)


def test_score_norm_agrees_with_monte_carlo_and_the_gaussian_limit():
    from crystaldos.diffusion import wrapped_normal_score_norm

    sigmas = torch.tensor([0.005, 0.05, 0.2, 0.5], dtype=torch.float64)
    norms = wrapped_normal_score_norm(sigmas)
    # Narrow wrapped normals are Gaussians: E|score|^2 = 1/sigma^2.
    torch.testing.assert_close(norms[:2], 1 / sigmas[:2] ** 2, rtol=1e-3, atol=0)
    d = torch.randn(200_000, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * sigmas
    monte_carlo = (wrapped_normal_score(torch.remainder(d, 1.0), sigmas.expand_as(d)) ** 2).mean(0)
    torch.testing.assert_close(norms, monte_carlo, rtol=0.03, atol=0)


def test_config_round_trip_and_unknown_settings():
    c = DiffusionConfig(timesteps=50, lambda_types=2.0)
    assert DiffusionConfig.from_dict(c.to_dict()) == c
    try:
        DiffusionConfig.from_dict({"timestep": 3})
    except ValueError as err:
        assert "timestep" in str(err)
    else:
        raise AssertionError("unknown setting accepted")
    assert JointDiffusion(c).sigmas.shape == (51,)
    assert math.isclose(float(JointDiffusion(c).sigmas[-1]), 0.5, rel_tol=1e-5)


def test_size_scaled_lattice_noise_gives_every_cell_size_the_same_relative_noise():
    """lattice_noise_atoms = 8: an N-atom cell's lattice noise is (N / 8)^(1/3) Å per unit of eps, in the forward
    process, the prior and the reverse step; the loss stays in units of eps; the default keeps DiffCSP's Å noise."""
    scaled, plain = JointDiffusion(DiffusionConfig(lattice_noise_atoms=8)), JointDiffusion()
    g = torch.Generator().manual_seed(0)
    atoms = torch.tensor([1, 8, 27] * 1000)
    batch = torch.arange(len(atoms)).repeat_interleave(atoms)
    types = one_hot_types(torch.randint(1, 90, (len(batch),), generator=g))
    frac = torch.rand(len(batch), 3, generator=g)
    lattice = 4 * torch.eye(3).repeat(len(atoms), 1, 1)
    t = torch.full((len(atoms),), 400, dtype=torch.long)
    abar = scaled.alpha_bars[400]
    for diffusion, expected in ((scaled, [0.5, 1.0, 1.5]), (plain, [1.0, 1.0, 1.0])):
        noisy = diffusion.noise(types, frac, lattice, t, batch, torch.Generator().manual_seed(1))
        drawn = (noisy.lattice - abar.sqrt() * lattice) / (1 - abar).sqrt()
        prior = diffusion.prior(atoms, torch.Generator().manual_seed(2))[2]
        for k, std in enumerate(expected):
            assert abs(float(drawn[k::3].std()) - std) < 0.03 * std
            assert abs(float(prior[k::3].std()) - std) < 0.03 * std
        torch.testing.assert_close(drawn, noisy.eps_lattice, atol=1e-4, rtol=1e-4)
        # The loss is in units of eps: predicting no noise costs ~1 for every size, the true noise 0.
        zero = torch.zeros_like(noisy.eps_lattice)
        output = type("Output", (), {"type_logits": torch.zeros(len(batch), NUM_ELEMENTS), "score_coords": noisy.score_coords})
        output.eps_lattice = zero
        assert abs(float(diffusion.loss(output, noisy)["lattice"]) - 1) < 0.03
        output.eps_lattice = noisy.eps_lattice
        assert float(diffusion.loss(output, noisy)["lattice"]) < 1e-10
        # The reverse step takes eps in Å: with the true noise it lands back on the clean lattice.
        one = torch.ones_like(t)
        noisy1 = diffusion.noise(types, frac, lattice, one, batch)
        torch.testing.assert_close(diffusion.ddpm_step(noisy1.lattice, noisy1.eps_lattice, one, one - 1, zero), lattice, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="lattice_noise_atoms"):
        DiffusionConfig(lattice_noise_atoms=0)


def test_tied_types_share_one_clean_estimate_and_keep_their_own_noise():
    diffusion = JointDiffusion()
    generator = torch.Generator().manual_seed(0)
    types_t, eps = torch.randn(6, 100, generator=generator), torch.randn(6, 100, generator=generator)
    t = torch.full((6,), 400, dtype=torch.long)
    groups = torch.tensor([0, 0, 2, 2, 2, 5])
    tied = diffusion.tie_types_eps(types_t, eps, t, groups)
    clean, before = diffusion.clean_from_eps(types_t, tied, t), diffusion.clean_from_eps(types_t, eps, t)
    torch.testing.assert_close(clean[0], clean[1])
    torch.testing.assert_close(clean[2], clean[4])
    torch.testing.assert_close(clean[0], before[:2].mean(0))  # the group's mean estimate
    torch.testing.assert_close(tied[5], eps[5])  # a group of one is left alone
    # The last step (to t = 0) returns the clean estimate: one type per group.
    last = diffusion.ddpm_step(types_t, tied, t, torch.zeros_like(t), torch.zeros_like(types_t))
    assert last[2:5].argmax(-1).unique().numel() == 1 and torch.allclose(last[2], last[3], atol=1e-4)
