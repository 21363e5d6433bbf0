"""Sampling with the shipped models: reconstruction, guidance identities, seeds and bad inputs."""

import numpy as np
import pytest
import torch
from pymatgen.core import DummySpecies

import crystaldos
from crystaldos import Sampler
from crystaldos.data import collate
from crystaldos.dos import DOSValidationError, DosGrid, resample
from crystaldos.guidance import CrystalState, Graph, cbg_output, cfg_output, denoise, predicted_clean
from crystaldos.metrics import match
from crystaldos.model import one_hot_types


@pytest.fixture(scope="module")
def sampler():
    return Sampler.from_pretrained(device="cpu")


@pytest.fixture(scope="module")
def items():
    return list(crystaldos.load_dataset().split("test")[:4])


def same_structure(a, b):
    return a.atomic_numbers == b.atomic_numbers and np.allclose(a.lattice.matrix, b.lattice.matrix) and np.allclose(a.frac_coords, b.frac_coords)


def noised_batch(sampler, items, t_value: int):
    """The items as one batch, noised to step ``t_value`` (seed 0): (batch, t, state, graph)."""
    batch = collate(items)
    t = torch.full((batch.num_graphs,), t_value)
    noisy = sampler.diffusion.noise(one_hot_types(batch.atom_types), batch.frac_coords, batch.lattice, t, batch.batch,
                                    torch.Generator().manual_seed(0))
    return batch, t, CrystalState(noisy.types, noisy.frac_coords, noisy.lattice), Graph(batch.edge_index, batch.batch, batch.num_graphs)


def test_reconstruct_from_t0_to_10_returns_the_input(sampler, items):
    for t_start in (0, 5, 10):
        results = sampler.reconstruct([i.structure for i in items], [i.dos for i in items], t_start=t_start, progress=False)
        for item, result in zip(items, results):
            matched, rmse = match(result.structure, item.structure)
            # The last reverse steps still inject Langevin/posterior noise of ~sigma_t (0.5 % of a cell
            # length), so "the input back" means matched with a small RMSE, not bit-identical.
            assert matched and rmse < 0.1, (t_start, item.id, result.structure.composition, rmse)


def test_results_carry_structures_dos_and_trajectories(sampler, items):
    results = sampler.reconstruct([i.structure for i in items[:2]], [i.dos for i in items[:2]], guidance="cbg", t_start=50,
                                  n_samples=2, steps=10, keep_trajectory=True, progress=False)
    assert len(results) == 4
    assert [r.reference for r in results] == [items[0].structure] * 2 + [items[1].structure] * 2
    for r in results:
        assert len(r.structure) == len(r.reference)
        assert r.dos_pred.dims == ("site", "energy") and r.dos_pred.shape == r.dos_target.shape
        assert len(r.trajectory) == 11 and same_structure(r.trajectory[-1], r.structure)
        assert r.settings["guidance"] == "cbg" and r.settings["steps"] == 10


def test_batched_dos_prediction_equals_one_crystal_at_a_time(sampler, items):
    structures = [i.structure for i in items]
    batched = sampler.predict_dos(structures)
    assert isinstance(batched, list) and len(batched) == len(structures)
    for structure, pred in zip(structures, batched):
        single = sampler.predict_dos(structure)
        assert pred.dims == ("site", "energy") and pred.shape == (len(structure), sampler.grid.n_points)
        assert list(pred["element"].values) == [s.specie.symbol for s in structure]
        np.testing.assert_allclose(pred.values, single.values, rtol=1e-4, atol=1e-5)
    # The shipped forward model is not a constant: different crystals get different DOS.
    assert not np.allclose(batched[0].mean("site"), batched[1].mean("site"), atol=1e-3)


def test_seeds_reproduce(sampler, items):
    kwargs = dict(guidance="cfg", t_start=100, steps=10, progress=False)
    a = sampler.reconstruct(items[0].structure, items[0].dos, seed=3, **kwargs)[0].structure
    b = sampler.reconstruct(items[0].structure, items[0].dos, seed=3, **kwargs)[0].structure
    c = sampler.reconstruct(items[0].structure, items[0].dos, seed=4, **kwargs)[0].structure
    assert same_structure(a, b)
    assert not same_structure(a, c)


def test_cbg_with_zero_strength_is_the_unconditional_model(sampler, items):
    kwargs = dict(t_start=100, steps=10, seed=1, progress=False)
    cbg = sampler.reconstruct(items[1].structure, items[1].dos, guidance="cbg", strength=0.0, **kwargs)[0].structure
    none = sampler.reconstruct(items[1].structure, items[1].dos, guidance="none", **kwargs)[0].structure
    guided = sampler.reconstruct(items[1].structure, items[1].dos, guidance="cbg", strength=1.0, **kwargs)[0].structure
    assert same_structure(cbg, none)
    assert not same_structure(guided, none)


def test_dps_guidance_is_the_unconditional_model_plus_a_gradient_through_the_denoiser(sampler, items):
    kwargs = dict(t_start=100, steps=10, seed=1, progress=False)
    item = items[1]
    none = sampler.reconstruct(item.structure, item.dos, guidance="none", **kwargs)[0].structure
    dps_zero = sampler.reconstruct(item.structure, item.dos, guidance="cbg-dps", strength=0.0, **kwargs)[0].structure
    dps = sampler.reconstruct(item.structure, item.dos, guidance="cbg-dps", strength=1.0, **kwargs)
    assert same_structure(dps_zero, none)  # one denoiser pass gives the same scores as the plain unconditional pass
    assert not same_structure(dps[0].structure, none)
    assert dps[0].settings["guidance"] == "cbg-dps"
    # The gradient is taken through the denoiser's clean estimate, and it ascends log p(y | S0_hat).
    batch, t, state, graph = noised_batch(sampler, items, 100)
    diffusion, model = sampler.diffusion, sampler.uncond_model

    def log_p(s):
        out = model(s.types, s.frac_coords, s.lattice, t, graph.edge_index, graph.batch, None, None)
        clean = predicted_clean(out, diffusion, s, t, graph)
        return sampler.likelihood.log_prob(clean, torch.zeros_like(t), graph, batch.dos, sigma_t=t).sum()

    with torch.enable_grad():
        leaves = CrystalState(*(x.detach().requires_grad_(True) for x in state))
        grad = torch.autograd.grad(log_p(leaves), leaves)
    with torch.no_grad():
        eps = 1e-3 / max(float(torch.cat([g.flatten() for g in grad]).abs().max()), 1e-12)
        assert log_p(CrystalState(*(x + eps * g for x, g in zip(state, grad)))) > log_p(state)


def test_the_clean_estimate_of_a_slightly_noised_crystal_is_the_crystal(sampler, items):
    batch, t, state, graph = noised_batch(sampler, items, 5)
    with torch.no_grad():
        out = sampler.uncond_model(state.types, state.frac_coords, state.lattice, t, graph.edge_index, graph.batch, None, None)
        clean = predicted_clean(out, sampler.diffusion, state, t, graph)
    assert torch.equal(clean.types.argmax(-1), batch.atom_types - 1)
    torch.testing.assert_close(clean.lattice, batch.lattice, atol=0.15, rtol=0.03)
    wrapped = torch.remainder(clean.frac_coords - batch.frac_coords + 0.5, 1.0) - 0.5
    assert float(wrapped.abs().max()) < 0.02


def test_cfg_null_branch_as_the_unconditional_score(sampler, items):
    kwargs = dict(t_start=100, steps=10, seed=2, progress=False)
    item = items[2]
    null = sampler.reconstruct(item.structure, item.dos, guidance="none", unconditional="cfg-null", **kwargs)[0].structure
    separate = sampler.reconstruct(item.structure, item.dos, guidance="none", **kwargs)[0].structure
    # (1 + w) cond - w null with w = -1 is the null branch alone: the same crystal from the same noise.
    cfg_minus_one = sampler.reconstruct(item.structure, item.dos, guidance="cfg", strength=-1.0, **kwargs)[0].structure
    cbg_zero = sampler.reconstruct(item.structure, item.dos, guidance="cbg", strength=0.0, unconditional="cfg-null", **kwargs)[0].structure
    assert same_structure(null, cbg_zero)
    assert null.atomic_numbers == cfg_minus_one.atomic_numbers
    np.testing.assert_allclose(null.frac_coords, cfg_minus_one.frac_coords, atol=1e-4)
    np.testing.assert_allclose(null.lattice.matrix, cfg_minus_one.lattice.matrix, atol=1e-4)
    assert not same_structure(null, separate)


def test_cfg_with_zero_weight_is_the_conditional_model(sampler, items):
    batch, t, state, graph = noised_batch(sampler, items, 300)
    diffusion = sampler.diffusion
    with torch.no_grad():
        conditional = denoise(sampler.cfg_model, diffusion, state, t, graph, batch.dos, torch.ones(batch.num_graphs, dtype=torch.bool))
        null = denoise(sampler.cfg_model, diffusion, state, t, graph, batch.dos, torch.zeros(batch.num_graphs, dtype=torch.bool))
        for a, b in zip(cfg_output(sampler.cfg_model, diffusion, state, t, graph, batch.dos, 0.0), conditional):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        # w = 1 is 2 * conditional - null, computed in one doubled pass.
        for a, c, u in zip(cfg_output(sampler.cfg_model, diffusion, state, t, graph, batch.dos, 1.0), conditional, null):
            torch.testing.assert_close(a, 2 * c - u, atol=1e-4, rtol=1e-4)


def test_cbg_gradient_ascends_the_dos_likelihood(sampler, items):
    batch, t, state, graph = noised_batch(sampler, items, 100)
    grad = sampler.likelihood.gradients(state, t, graph, batch.dos)
    for g in grad:
        assert bool(torch.isfinite(g).all())
    with torch.no_grad():
        before = sampler.likelihood.log_prob(state, t, graph, batch.dos).sum()
        eps = 1e-3 / max(float(torch.cat([g.flatten() for g in grad]).abs().max()), 1e-12)
        after = sampler.likelihood.log_prob(CrystalState(*(x + eps * g for x, g in zip(state, grad))), t, graph, batch.dos).sum()
    assert after > before


def test_guidance_strength_per_variable(sampler, items):
    batch, t, state, graph = noised_batch(sampler, items, 300)
    diffusion = sampler.diffusion
    with torch.no_grad():
        base = denoise(sampler.uncond_model, diffusion, state, t, graph)
        everywhere = cbg_output(base, sampler.likelihood, diffusion, state, t, graph, batch.dos, 1.0)
        types_only = cbg_output(base, sampler.likelihood, diffusion, state, t, graph, batch.dos, {"types": 1.0})
        cfg_all = cfg_output(sampler.cfg_model, diffusion, state, t, graph, batch.dos, 1.0)
        cfg_coords = cfg_output(sampler.cfg_model, diffusion, state, t, graph, batch.dos, {"coords": 1.0})
        conditional = cfg_output(sampler.cfg_model, diffusion, state, t, graph, batch.dos, 0.0)
    # CBG on the types alone: the type noise is guided as with s = 1 everywhere, X and L keep the unconditional scores.
    torch.testing.assert_close(types_only.eps_types, everywhere.eps_types)
    torch.testing.assert_close(types_only.score_coords, base.score_coords)
    torch.testing.assert_close(types_only.eps_lattice, base.eps_lattice)
    assert not torch.allclose(everywhere.score_coords, base.score_coords)
    # CFG on X alone: w = 1 for the coordinates, the conditional model (w = 0) for types and lattice.
    torch.testing.assert_close(cfg_coords.score_coords, cfg_all.score_coords, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cfg_coords.eps_types, conditional.eps_types, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cfg_coords.eps_lattice, conditional.eps_lattice, atol=1e-5, rtol=1e-5)
    # Through the sampler: a mapping with every variable at 1 is strength 1, and is recorded as given.
    kwargs = dict(guidance="cbg", t_start=50, steps=5, seed=4, progress=False)
    scalar = sampler.reconstruct(items[0].structure, items[0].dos, strength=1.0, **kwargs)[0]
    mapping = sampler.reconstruct(items[0].structure, items[0].dos, strength={"types": 1, "coords": 1, "lattice": 1}, **kwargs)[0]
    assert same_structure(scalar.structure, mapping.structure)
    assert mapping.settings["strength"] == {"types": 1, "coords": 1, "lattice": 1}
    with pytest.raises(ValueError, match="unknown guidance variables \\['positions'\\]"):
        sampler.reconstruct(items[0].structure, items[0].dos, strength={"positions": 1.0}, **kwargs)


def test_generate_designs_crystals_of_the_requested_size(sampler, items):
    results = sampler.generate(len(items[2].structure), items[2].dos, guidance="cfg", steps=20, n_samples=2, progress=False)
    assert len(results) == 2 and all(len(r.structure) == len(items[2].structure) and r.reference is None for r in results)


def test_bad_inputs_are_named(sampler, items):
    item = items[0]
    with pytest.raises(ValueError, match="guidance must be one of"):
        sampler.reconstruct(item.structure, item.dos, guidance="classifier", progress=False)
    for bad_t in (1001, -1, 2.5):
        with pytest.raises(ValueError, match="t_start"):
            sampler.reconstruct(item.structure, item.dos, t_start=bad_t, progress=False)
    with pytest.raises(DOSValidationError, match="covers -8.00 ... 8.00 eV but the model needs"):
        sampler.reconstruct(item.structure, resample(item.dos, DosGrid(-8, 8, 200, item.dos.attrs["grid_sigma"])), progress=False)
    other = next(i for i in items if len(i.structure) != len(item.structure))
    with pytest.raises(DOSValidationError, match="sites"):
        sampler.reconstruct(item.structure, other.dos, progress=False)
    nan = item.dos.copy()
    nan[0, 10] = np.nan
    with pytest.raises(DOSValidationError, match="NaN"):
        sampler.reconstruct(item.structure, nan, progress=False)
    negative = item.dos.copy()
    negative[-1, 3] = -1.0
    with pytest.raises(DOSValidationError, match="negative"):
        sampler.reconstruct(item.structure, negative, progress=False)
    with pytest.raises(ValueError, match="2-D"):
        sampler.reconstruct(item.structure, np.zeros(item.dos.sizes["energy"]), progress=False)
    with pytest.raises(ValueError, match="steps"):
        sampler.reconstruct(item.structure, item.dos, t_start=100, steps=200, progress=False)
    with pytest.raises(ValueError, match="2 structures but 1 DOS"):
        sampler.reconstruct([item.structure, item.structure], [item.dos], progress=False)
    for bad_strength in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="strength must be a finite number"):
            sampler.reconstruct(item.structure, item.dos, strength=bad_strength, t_start=10, progress=False)
    dummy = item.structure.copy()
    dummy.replace(0, DummySpecies("X"))
    with pytest.raises(ValueError, match="dummy species on sites"):
        sampler.reconstruct(dummy, item.dos, t_start=10, progress=False)


def test_cfg_from_t200_beats_the_unguided_model_on_the_test_split(sampler):
    """Measured with the shipped models (24 test crystals, 50 strided steps, seed 0): CFG 9/24, unguided 4/24."""
    from crystaldos.metrics import match

    items = list(crystaldos.load_dataset().split("test"))[:24]
    kwargs = dict(t_start=200, steps=50, seed=0, progress=False)
    structures, doses = [i.structure for i in items], [i.dos for i in items]
    cfg = sum(match(r.structure, i.structure)[0] for r, i in zip(sampler.reconstruct(structures, doses, guidance="cfg", **kwargs), items))
    none = sum(match(r.structure, i.structure)[0] for r, i in zip(sampler.reconstruct(structures, doses, guidance="none", **kwargs), items))
    assert cfg >= 7 and cfg > none, (cfg, none)


def test_reverse_loop_runs_without_autograd_history(sampler, items):
    # With grad enabled, every step kept the graph of all earlier steps: 24 GB after 1000 steps of 64 crystals.
    grad_enabled = []
    item = items[0]
    for guidance in ("cfg", "cbg"):
        sampler.reconstruct(item.structure, item.dos, guidance=guidance, t_start=20, steps=3, progress=False,
                            callback=lambda done, total: grad_enabled.append(torch.is_grad_enabled()))
    assert grad_enabled == [False] * 6


def test_callback_reports_every_reverse_step(sampler, items):
    calls = []
    sampler.reconstruct(items[0].structure, items[0].dos, guidance="none", t_start=100, steps=7, progress=False,
                        callback=lambda done, total: calls.append((done, total)))
    assert calls == [(k, 7) for k in range(1, 8)]


def test_a_dos_as_nested_lists_is_one_dos(sampler, items):
    item = items[1]
    as_lists = sampler.reconstruct(item.structure, item.dos.values.tolist(), t_start=10, steps=2, progress=False, seed=3)
    as_array = sampler.reconstruct(item.structure, item.dos, t_start=10, steps=2, progress=False, seed=3)
    assert same_structure(as_lists[0].structure, as_array[0].structure)
    designed = sampler.generate(len(item.structure), item.dos.values.tolist(), steps=2, progress=False)
    assert len(designed) == 1 and len(designed[0].structure) == len(item.structure)
    # Several DOS as one (n_crystals, n_sites, n_energies) array-like.
    two = sampler.generate([len(item.structure)] * 2, [item.dos.values.tolist()] * 2, steps=2, progress=False)
    assert len(two) == 2
    n_energies = item.dos.sizes["energy"]
    with pytest.raises(ValueError, match=r"rectangular array of numbers of shape \(n_sites, n_energies\)"):
        sampler.generate(2, [[0.0] * n_energies, [0.0] * 10], progress=False)
    with pytest.raises(ValueError, match=r"shape \(n_sites, n_energies\)"):
        sampler.generate(2, [0.0] * n_energies, progress=False)
    with pytest.raises(ValueError, match=rf"2 atom counts but 1 DOS \(shapes \(\d+, {n_energies}\)\)"):
        sampler.generate([2, 3], item.dos, progress=False)


def test_atom_counts_outside_the_training_range_are_refused_or_warned(sampler, items):
    low, high = sampler.training_sites
    # The shipped models were trained on the embedded set's training split: its cell sizes are the range.
    train_sizes = [len(record.structure) for record in crystaldos.load_dataset().split("train")]
    assert (low, high) == (min(train_sizes), max(train_sizes))
    too_big = np.tile(items[0].dos.values, (int(np.ceil((high + 1) / len(items[0].structure))), 1))[: high + 1]
    with pytest.raises(ValueError, match=rf"atom counts \[{high + 1}\] lie outside the 1 ... {high} atoms per cell.*allow_untrained_sizes"):
        sampler.generate(high + 1, too_big, progress=False)
    with pytest.warns(UserWarning, match=rf"outside the {low} ... {high} atoms"):
        results = sampler.generate(high + 1, too_big, steps=2, progress=False, allow_untrained_sizes=True)
    assert len(results[0].structure) == high + 1
    with pytest.raises(TypeError, match="n_atoms must be an int"):
        sampler.generate(2.5, items[0].dos, progress=False)


def test_the_lattice_step_is_deterministic_from_a_noised_crystal_and_ancestral_from_noise(sampler, items):
    """The default "auto": DDIM lattice steps from t_start <= 500 (85.9 against 81.2 % of 128 val crystals from 200),
    DDPM from pure noise (DDIM blew cells up there: median |dV| 72 against 23 %; docs/research/lattice.md section 13)."""
    item = items[2]
    auto = sampler.reconstruct(item.structure, item.dos, t_start=50, steps=10, progress=False, seed=1)[0]
    ddim = sampler.reconstruct(item.structure, item.dos, t_start=50, steps=10, progress=False, seed=1, lattice_step="ddim")[0]
    ddpm = sampler.reconstruct(item.structure, item.dos, t_start=50, steps=10, progress=False, seed=1, lattice_step="ddpm")[0]
    assert auto.settings["lattice_step"] == ddim.settings["lattice_step"] == "ddim" and ddpm.settings["lattice_step"] == "ddpm"
    assert auto.structure == ddim.structure
    assert not np.allclose(ddpm.structure.lattice.matrix, ddim.structure.lattice.matrix)
    from_noise = sampler.generate(len(item.structure), item.dos, steps=3, progress=False, seed=1)[0]
    assert from_noise.settings["lattice_step"] == "ddpm"
    with pytest.raises(ValueError, match=r"lattice_step must be one of \('auto', 'ddpm', 'ddim', 'hybrid'\)"):
        sampler.reconstruct(item.structure, item.dos, t_start=50, steps=2, progress=False, lattice_step="euler")


def test_strided_schedules_have_exactly_the_steps_asked_for():
    from crystaldos.diffusion import JointDiffusion
    from crystaldos.diffusion.schedules import reverse_schedule

    abar = JointDiffusion().alpha_bars
    for t_start, steps in [(1000, 20), (1000, 50), (1000, 1000), (200, 50), (200, 1), (7, 7), (5, 3)]:
        for spacing in ("logsnr", "uniform"):
            schedule = reverse_schedule(abar, t_start, steps, spacing)
            assert schedule[0] == t_start and schedule[-1] == 0 and len(schedule) == steps + 1
            assert all(a > b for a, b in zip(schedule, schedule[1:]))
    assert reverse_schedule(abar, 200, 20, "uniform") == list(range(200, -1, -10))
    dense_near_T = reverse_schedule(abar, 1000, 50)
    assert dense_near_T[:4] == [1000, 999, 998, 997]  # where abar falls fastest
    with pytest.raises(ValueError, match="spacing"):
        reverse_schedule(abar, 200, 20, "cosine")


def test_fifty_steps_from_noise_keep_the_lattice_finite_with_log_snr_spacing(sampler):
    """Uniform strides from T = 1000 jump over 1000x in signal-to-noise ratio in the first step and amplify the
    lattice estimate by hundreds; log-SNR spacing (the default) keeps the volumes per atom physical."""
    items = list(crystaldos.load_dataset().split("test")[:8])
    kwargs = dict(guidance="cfg", steps=50, seed=0, progress=False)
    doses = [i.dos for i in items]
    counts = [len(i.structure) for i in items]
    default = sampler.generate(counts, doses, **kwargs)
    uniform = sampler.generate(counts, doses, spacing="uniform", **kwargs)
    volume = lambda results: np.array([r.structure.volume / len(r.structure) for r in results])  # noqa: E731
    # No cell blows up; the model still collapses an occasional cell from noise (validity ~92 % in the README).
    assert 3 < np.median(volume(default)) < 60 and volume(default).max() < 200, volume(default)
    assert np.median(volume(uniform)) > 200  # what it fixed: uniform strides blow the cells up
    assert default[0].settings["spacing"] == "logsnr" and uniform[0].settings["spacing"] == "uniform"


def test_guidance_gradient_shifts_the_ddpm_mean_by_the_posterior_variance(sampler):
    """The defining property of likelihood_eps_scale: eps - k * g moves the DDPM step's mean by beta_tilde * g
    (Dhariwal & Nichol's Algorithm 1), for single steps and strides alike; at low noise k is the noise form's
    sqrt(1 - abar_t), near T it vanishes instead of being divided by sqrt(alpha) ~ 0.03."""
    diffusion = sampler.diffusion
    x, eps, g = (torch.randn(3, 3, 3, generator=torch.Generator().manual_seed(k)) for k in range(3))
    zero = torch.zeros_like(x)
    for t_now, t_prev in [(200, 199), (1000, 998), (600, 450), (5, 0)]:
        t, tp = torch.full((3,), t_now), torch.full((3,), t_prev)
        k = diffusion.likelihood_eps_scale(t, tp)[:, None, None]
        shift = diffusion.ddpm_step(x, eps - k * g, t, tp, zero) - diffusion.ddpm_step(x, eps, t, tp, zero)
        abar, abar_prev = diffusion.alpha_bars[t_now], diffusion.alpha_bars[t_prev]
        beta_tilde = (1 - abar / abar_prev) * (1 - abar_prev) / (1 - abar)
        torch.testing.assert_close(shift, beta_tilde * g, atol=1e-4, rtol=1e-3)
    low = diffusion.likelihood_eps_scale(torch.tensor([100]), torch.tensor([99]))
    torch.testing.assert_close(low, (1 - diffusion.alpha_bars[100:101]).sqrt(), rtol=0.02, atol=0)
    assert float(diffusion.likelihood_eps_scale(torch.tensor([1000]), torch.tensor([999]))) < 0.05


def test_cbg_from_noise_does_not_inflate_the_cells(sampler):
    """In the noise form, CBG's gradient near T was divided by sqrt(alpha_T) ~ 0.03 and the guided cells came out
    at a median of ~18,000 Å^3 per atom after 50 steps (docs/research/cbg_from_noise.txt); as a shift of the step's mean the
    format-1 models' median cell stayed within bounds. On the format-2 models, with a likelihood that counted all
    447 grid points as independent, guiding the lattice from noise inflated 5 of these 8 cells (median 5,400 Å^3 per
    atom). The likelihood now counts the effectively independent energies (the errors are correlated over ~11 grid
    points; crystaldos.guidance.Likelihood). With the models trained on the relaxed data, the published form guiding
    all three variables leaves one of these 8 cells at 210 Å^3 per atom (CsFeS2, seed 0; seed 1 none), and unguided
    sampling one at 2.3 (FeSe): at most one cell outside 3-100 Å^3 per atom, none near the old inflation."""
    items = list(crystaldos.load_dataset().split("test")[:8])
    for strength in (1.0, {"types": 1.0, "coords": 1.0}):
        results = sampler.generate([len(i.structure) for i in items], [i.dos for i in items], guidance="cbg",
                                   strength=strength, steps=50, seed=0, progress=False)
        volumes = np.array([r.structure.volume / len(r.structure) for r in results])
        outside = int(((volumes <= 3) | (volumes >= 100)).sum())
        assert outside <= 1 and volumes.max() < 1000 and np.median(volumes) < 30, (strength, volumes)


def test_a_sampler_from_single_checkpoints_samples_with_cfg_only(sampler, items, tmp_path):
    from crystaldos.checkpoint import PRETRAINED_DIR, CheckpointError

    cfg_only = Sampler.from_checkpoints(PRETRAINED_DIR / "cfg.pt", PRETRAINED_DIR / "forward.pt")
    assert cfg_only.uncond_model is None
    item = items[0]
    ours = cfg_only.reconstruct(item.structure, item.dos, t_start=20, seed=3, progress=False)[0]
    shipped = sampler.reconstruct(item.structure, item.dos, t_start=20, seed=3, progress=False)[0]
    assert ours.structure == shipped.structure  # the same CFG network and noise
    with pytest.raises(ValueError, match="no separate unconditional model"):
        cfg_only.reconstruct(item.structure, item.dos, guidance="none", t_start=20, progress=False)

    # A forward model trained under other noise settings may predict clean DOS but not guide.
    forward = torch.load(PRETRAINED_DIR / "forward.pt", weights_only=True)
    forward["diffusion_config"]["lattice_noise_atoms"] = (forward["diffusion_config"].get("lattice_noise_atoms") or 0) + 4
    torch.save(forward, tmp_path / "forward.pt")
    mixed = Sampler.from_checkpoints(PRETRAINED_DIR / "cfg.pt", tmp_path / "forward.pt")
    assert mixed.reconstruct(item.structure, item.dos, t_start=20, seed=3, progress=False)[0].structure == ours.structure
    with pytest.raises(ValueError, match="other diffusion settings"):
        mixed.reconstruct(item.structure, item.dos, guidance="cbg", unconditional="cfg-null", t_start=20, progress=False)
    with pytest.raises(CheckpointError, match="different diffusion settings"):
        Sampler.from_checkpoints(PRETRAINED_DIR / "cfg.pt", tmp_path / "forward.pt", PRETRAINED_DIR / "uncond.pt")


def test_sites_with_one_target_dos_can_be_given_one_type(sampler):
    """tie_types: symmetry-equivalent sites (one DOS after symmetrisation) come out as one element."""
    from crystaldos.dos import identical_sites
    from crystaldos.labellers.symmetry import symmetrise_site_dos

    chosen = [i for i in crystaldos.load_dataset().split("test") if 6 <= len(i.structure) <= 10][:16]
    targets = [symmetrise_site_dos(i.dos, i.structure)[0] for i in chosen]
    groups = [identical_sites(d.values) for d in targets]
    assert sum(len(set(g.tolist())) < len(g) for g in groups) >= 8, "too few test crystals with equivalent sites"

    def split_groups(results):
        return sum(len({r.structure[k].specie for k in np.flatnonzero(g == first)}) > 1
                   for r, g in zip(results, groups) for first in set(g.tolist()))

    options = dict(t_start=1000, steps=5, progress=False, seed=0)  # coarse: the untied sampler must split a group
    free = sampler.reconstruct([i.structure for i in chosen], targets, tie_types=False, **options)
    tied = sampler.reconstruct([i.structure for i in chosen], targets, **options)  # the default
    assert split_groups(free) > 0, "the untied sampler already gave every group one element: the test shows nothing"
    assert split_groups(tied) == 0 and tied[0].settings["tie_types"] is True


@pytest.mark.parametrize("guidance", ["cfg", "cbg"])
def test_no_corrector_costs_one_network_pass_per_step_and_samples_as_a_vanishing_one(sampler, items, guidance):
    """step_lr = 0 skips the corrector's network pass; its samples are those of a corrector step too small to move
    an atom (1e-30), which does make the pass: the same seed, the same random stream."""
    item = items[1]
    denoiser = sampler.cfg_model if guidance == "cfg" else sampler.uncond_model
    calls = []
    hook = denoiser.register_forward_hook(lambda *_: calls.append(1))
    try:
        run = {}
        for step_lr in (0.0, 1e-30):
            calls.clear()
            run[step_lr] = sampler.reconstruct(item.structure, item.dos, guidance=guidance, t_start=50, steps=10, seed=4,
                                               step_lr=step_lr, progress=False)[0].structure
            run[f"calls {step_lr}"] = len(calls)
    finally:
        hook.remove()
    assert run["calls 0.0"] == 10 and run["calls 1e-30"] == 20
    assert [s.symbol for s in run[0.0].species] == [s.symbol for s in run[1e-30].species]
    np.testing.assert_allclose(run[0.0].lattice.matrix, run[1e-30].lattice.matrix, atol=1e-6)
    np.testing.assert_allclose(run[0.0].frac_coords, run[1e-30].frac_coords, atol=1e-6)


def test_hybrid_lattice_step_switches_from_ddpm_to_ddim_at_its_noise_level():
    from crystaldos.sampler import HYBRID_DDIM_MAX_T, lattice_step_at, resolve_lattice_step

    assert resolve_lattice_step("hybrid", 1000) == "hybrid"
    assert lattice_step_at("hybrid", HYBRID_DDIM_MAX_T + 1) == "ddpm" and lattice_step_at("hybrid", HYBRID_DDIM_MAX_T) == "ddim"
    assert lattice_step_at("ddpm", 1) == "ddpm" and lattice_step_at("ddim", 999) == "ddim"
