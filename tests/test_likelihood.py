"""CBG's likelihood counts the energies that carry independent evidence, not the grid points."""

import numpy as np
import pytest
import torch

import crystaldos
from crystaldos.checkpoint import PRETRAINED_DIR, build_network, load_checkpoint
from crystaldos.guidance import CrystalState, Graph, Likelihood
from crystaldos.train.loop import effective_fraction, forward_model_errors, lag_products


def test_effective_fraction_of_known_correlations():
    assert effective_fraction(torch.tensor([2.0, 0.0, 0.0, 0.0])) == 1.0  # white errors: every point counts
    a = 0.5  # AR(1): rho_k = a^k, so 1 / (1 + 2 a / (1 - a)) = (1 - a) / (1 + a) = 1/3
    assert effective_fraction(torch.tensor([a**k for k in range(65)], dtype=torch.float64)) == pytest.approx(1 / 3, rel=1e-12)
    # The sum stops at the first lag whose correlation is not positive (a later positive one is noise).
    assert effective_fraction(torch.tensor([1.0, 0.5, -0.1, 0.4])) == pytest.approx(0.5)


def test_the_number_of_independent_energies_does_not_depend_on_the_grid_spacing():
    """Errors smooth over a 0.2 eV broadening, sampled at the data's spacing and at half of it, over the same range:
    the grid points double, the effectively independent ones do not."""
    rng = np.random.default_rng(0)
    counts = {}
    for spacing in (0.078, 0.039):
        energies = np.arange(-25, 10, spacing)
        fine = np.arange(-27, 12, 0.01)
        kernel = np.exp(-0.5 * ((energies[:, None] - fine[None, :]) / 0.2) ** 2)
        err = torch.as_tensor(rng.normal(size=(400, fine.size)) @ kernel.T)  # (rows, energies), smooth along energy
        sums, n = lag_products(err, 64)
        counts[spacing] = energies.size * effective_fraction(sums / n)
    assert counts[0.039] == pytest.approx(counts[0.078], rel=0.1)
    assert counts[0.078] < 0.5 * np.arange(-25, 10, 0.078).size


def test_the_shipped_calibration_is_what_the_code_measures_and_scales_the_log_likelihood():
    from torch_geometric.loader import DataLoader

    from crystaldos.diffusion import JointDiffusion

    ckpt = load_checkpoint(PRETRAINED_DIR / "forward.pt", kind="forward")
    stored = ckpt["calibration"]
    model = build_network(ckpt)
    val = crystaldos.load_dataset().split("val")
    loader = DataLoader(val[:256].to_graphs(), batch_size=64, shuffle=False)
    measured = forward_model_errors(model, JointDiffusion(), loader, steps=(0, 500))
    # a quarter of the val split: within a few per cent of the whole split's value
    assert measured["effective_fraction"] == pytest.approx([stored["effective_fraction"][stored["t"].index(t)] for t in (0, 500)], rel=0.1)
    assert all(0 < f < 0.5 for f in stored["effective_fraction"])

    counted = Likelihood(model, stored)
    every_point = Likelihood(model, {k: v for k, v in stored.items() if k != "effective_fraction"})
    graphs = val[:3].to_graphs()
    batch = next(iter(DataLoader(graphs, batch_size=3)))
    from crystaldos.model import one_hot_types

    state = CrystalState(one_hot_types(batch.atom_types), batch.frac_coords, batch.lattice)
    graph = Graph(batch.edge_index, batch.batch, batch.num_graphs)
    t = torch.full((3,), 200)
    ratio = counted.log_prob(state, t, graph, batch.dos) / every_point.log_prob(state, t, graph, batch.dos)
    np.testing.assert_allclose(ratio.detach().numpy(), counted.effective_fraction(200), rtol=1e-5)
    with pytest.raises(ValueError, match="effective_fraction"):
        Likelihood(model, stored | {"effective_fraction": [0.0] * len(stored["t"])})
