"""The networks are invariant (or equivariant) to rotations, translations, permutations and periodic shifts."""

import math

import numpy as np

import pytest
import torch

from crystaldos.data.graph import fully_connected_edges
from crystaldos.model import NUM_ELEMENTS, CrystalDenoiser, DOSForwardModel, ModelConfig, one_hot_types, types_to_atomic_numbers

N_ATOMS, N_E = 5, 32


def random_rotation(generator):
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))  # a proper random orthogonal matrix (det +-1)


@pytest.fixture(scope="module")
def cell():
    g = torch.Generator().manual_seed(1)
    return dict(
        types=torch.randn(N_ATOMS, NUM_ELEMENTS, generator=g, dtype=torch.float64),
        frac=torch.rand(N_ATOMS, 3, generator=g, dtype=torch.float64),
        lattice=(3 * torch.eye(3, dtype=torch.float64) + torch.randn(3, 3, generator=g, dtype=torch.float64)).unsqueeze(0),
        t=torch.tensor([137]),
        edge_index=fully_connected_edges(N_ATOMS),
        batch=torch.zeros(N_ATOMS, dtype=torch.long),
        dos=torch.rand(N_ATOMS, N_E, generator=g, dtype=torch.float64),
        generator=g,
    )


def networks(cutoff=None):
    """Small conditional denoiser and forward model: fully connected cells, or a radius graph over images (cutoff, Å),
    or (cutoff "lengths") fully connected with the minimum-image edge lengths as features, or (cutoff "scale")
    fully connected with the cell's shape and log volume per atom as features."""
    torch.manual_seed(0)
    lengths, scale = cutoff == "lengths", cutoff == "scale"
    graph = dict(cutoff=None if lengths or scale else cutoff, max_neighbours=500, edge_lengths=lengths, lattice_scale_features=scale)  # no truncation: ties at the cap would break permutation symmetry
    cond = CrystalDenoiser(ModelConfig(hidden=32, n_layers=2, n_energies=N_E, conditional=True, **graph)).double().eval()
    fwd = DOSForwardModel(ModelConfig(hidden=32, n_layers=2, n_energies=N_E, conditional=False, **graph)).double().eval()
    return cond, fwd


GRAPHS = pytest.mark.parametrize("cutoff", [None, 4.5, "lengths", "scale"],
                                 ids=["fully-connected", "radius-graph", "with-lengths", "with-scale-features"])


def run(cond, fwd, c, types=None, frac=None, lattice=None, dos=None):
    types = c["types"] if types is None else types
    frac = c["frac"] if frac is None else frac
    lattice = c["lattice"] if lattice is None else lattice
    dos = c["dos"] if dos is None else dos
    args = (types, frac, lattice, c["t"], c["edge_index"], c["batch"])
    return cond(*args, dos=dos), fwd(*args)


def assert_same(a, b, atol=1e-6):
    (out_a, dos_a), (out_b, dos_b) = a, b
    torch.testing.assert_close(out_a.type_logits, out_b.type_logits, atol=atol, rtol=0)
    torch.testing.assert_close(out_a.score_coords, out_b.score_coords, atol=atol, rtol=0)
    torch.testing.assert_close(out_a.eps_lattice, out_b.eps_lattice, atol=atol, rtol=0)
    torch.testing.assert_close(dos_a, dos_b, atol=atol, rtol=0)


@GRAPHS
def test_rotation_and_reflection_of_the_cartesian_frame(cell, cutoff):
    cond, fwd = networks(cutoff)
    reference = run(cond, fwd, cell)
    rotation = random_rotation(cell["generator"])
    rotated = run(cond, fwd, cell, lattice=cell["lattice"] @ rotation.T)
    # Types, coordinate scores and DOS are invariant; the lattice noise rotates with the cell.
    out, dos = rotated
    torch.testing.assert_close(out.eps_lattice, reference[0].eps_lattice @ rotation.T, atol=1e-6, rtol=0)
    assert_same(reference, (out._replace(eps_lattice=reference[0].eps_lattice), dos))


@GRAPHS
def test_translation_and_periodic_shift(cell, cutoff):
    cond, fwd = networks(cutoff)
    reference = run(cond, fwd, cell)
    shift = torch.rand(1, 3, generator=cell["generator"], dtype=torch.float64)
    assert_same(reference, run(cond, fwd, cell, frac=cell["frac"] + shift))
    assert_same(reference, run(cond, fwd, cell, frac=torch.remainder(cell["frac"] + shift, 1.0)))
    images = torch.randint(-3, 4, (N_ATOMS, 3), generator=cell["generator"]).double()
    assert_same(reference, run(cond, fwd, cell, frac=cell["frac"] + images))


@GRAPHS
def test_permutation_of_atoms_permutes_the_outputs(cell, cutoff):
    cond, fwd = networks(cutoff)
    out, dos = run(cond, fwd, cell)
    perm = torch.randperm(N_ATOMS, generator=cell["generator"])
    out_p, dos_p = run(cond, fwd, cell, types=cell["types"][perm], frac=cell["frac"][perm], dos=cell["dos"][perm])
    torch.testing.assert_close(out_p.type_logits, out.type_logits[perm], atol=1e-6, rtol=0)
    torch.testing.assert_close(out_p.score_coords, out.score_coords[perm], atol=1e-6, rtol=0)
    torch.testing.assert_close(out_p.eps_lattice, out.eps_lattice, atol=1e-6, rtol=0)
    torch.testing.assert_close(dos_p, dos[perm], atol=1e-6, rtol=0)


def test_the_dos_condition_changes_the_output_and_the_null_condition_ignores_it(cell):
    cond, _ = networks()
    with torch.no_grad():
        cond.null_condition.normal_()
    args = (cell["types"], cell["frac"], cell["lattice"], cell["t"], cell["edge_index"], cell["batch"])
    a = cond(*args, dos=cell["dos"])
    b = cond(*args, dos=cell["dos"] * 2)
    assert not torch.allclose(a.score_coords, b.score_coords)
    off = torch.tensor([False])
    torch.testing.assert_close(cond(*args, dos=cell["dos"], use_condition=off), cond(*args, dos=cell["dos"] * 2, use_condition=off))
    torch.testing.assert_close(cond(*args, dos=None), cond(*args, dos=cell["dos"], use_condition=off))


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="atomic numbers"):
        one_hot_types(torch.tensor([0, 8]))
    cond = CrystalDenoiser(ModelConfig(hidden=16, n_layers=1, n_energies=N_E))
    with pytest.raises(ValueError, match="DOS must have shape"):
        cond(torch.zeros(2, NUM_ELEMENTS), torch.zeros(2, 3), torch.eye(3)[None], torch.tensor([1]), fully_connected_edges(2), torch.zeros(2, dtype=torch.long), dos=torch.zeros(2, N_E + 1))
    with pytest.raises(ValueError, match="conditional"):
        DOSForwardModel(ModelConfig(conditional=True))
    assert types_to_atomic_numbers(one_hot_types(torch.tensor([1, 26, 100]))).tolist() == [1, 26, 100]


def test_periodic_radius_graph_finds_the_same_neighbours_as_pymatgen():
    from pymatgen.core import Lattice, Structure

    from crystaldos.model.radius_graph import periodic_radius_graph

    rutile = Structure(Lattice.tetragonal(4.59, 2.96), ["Ti", "Ti", "O", "O", "O", "O"],
                       [[0, 0, 0], [0.5, 0.5, 0.5], [0.305, 0.305, 0], [0.695, 0.695, 0], [0.805, 0.195, 0.5], [0.195, 0.805, 0.5]])
    skewed = Structure(Lattice.from_parameters(3.1, 4.2, 5.3, 70, 100, 115), ["Na", "Cl", "K"], [[0.1, 0.2, 0.3], [0.6, 0.5, 0.9], [0.3, 0.8, 0.1]])
    structures = [rutile, skewed]
    frac = torch.tensor(sum((s.frac_coords.tolist() for s in structures), []), dtype=torch.float64)
    lattice = torch.tensor(np.stack([s.lattice.matrix for s in structures]), dtype=torch.float64)
    batch = torch.tensor(sum(([g] * len(s) for g, s in enumerate(structures)), []))
    cutoff = 5.0
    edge_index, shifts = periodic_radius_graph(frac, lattice, batch, cutoff, max_neighbours=1000)
    offset = 0
    for g, s in enumerate(structures):
        expected = sorted((i, n.index, round(n.nn_distance, 6)) for i, ns in enumerate(s.get_all_neighbors(cutoff)) for n in ns)
        mine = edge_index[:, batch[edge_index[1]] == g] - offset
        lengths = ((frac[mine[0] + offset] + shifts[batch[edge_index[1]] == g] - frac[mine[1] + offset]) @ lattice[g]).norm(dim=-1)
        found = sorted((int(i), int(j), round(float(d), 6)) for j, i, d in zip(mine[0], mine[1], lengths))
        assert found == expected
        offset += len(s)
    # The cap keeps the nearest neighbours of each atom.
    capped, _ = periodic_radius_graph(frac, lattice, batch, cutoff, max_neighbours=4)
    assert torch.bincount(capped[1]).max() == 4


def test_radius_graph_networks_train_and_differentiate(cell):
    cond, fwd = networks(cutoff=4.5)
    frac = cell["frac"].clone().requires_grad_(True)
    lattice = cell["lattice"].clone().requires_grad_(True)
    out = fwd(cell["types"], frac, lattice, cell["t"], cell["edge_index"], cell["batch"])
    out.sum().backward()
    assert torch.isfinite(frac.grad).all() and frac.grad.abs().sum() > 0
    assert torch.isfinite(lattice.grad).all() and lattice.grad.abs().sum() > 0
    assert ModelConfig.from_dict({k: v for k, v in ModelConfig().to_dict().items() if k not in ("cutoff", "max_neighbours", "n_radial")}).cutoff is None


def test_edge_lengths_make_the_output_depend_on_the_scale_of_the_cell(cell):
    """Without lengths the all-pairs network sees the scale only through L Lᵀ; with them also per bond."""
    plain, _ = networks(None)
    with_lengths, _ = networks("lengths")
    assert sum(p.numel() for p in with_lengths.parameters()) > sum(p.numel() for p in plain.parameters())
    args = (cell["types"], cell["frac"], cell["lattice"], cell["t"], cell["edge_index"], cell["batch"])
    scaled = (cell["types"], cell["frac"], 1.1 * cell["lattice"], cell["t"], cell["edge_index"], cell["batch"])
    a, b = with_lengths(*args, dos=cell["dos"]), with_lengths(*scaled, dos=cell["dos"])
    assert not torch.allclose(a.type_logits, b.type_logits)
    lattice = 4.0 * torch.eye(3, dtype=torch.float64)[None]
    rbf = with_lengths.backbone._minimum_image_rbf(torch.tensor([[0.9, 0.0, 0.0]], dtype=torch.float64),
                                                  lattice @ lattice.transpose(1, 2))
    # 0.9 of a 4 Å axis is 0.4 Å away through the boundary: the basis peaks at the centre nearest 0.4 Å.
    centres = torch.linspace(0.0, 8.0, rbf.shape[1], dtype=torch.float64)
    assert int(rbf.argmax()) == int(torch.argmin((centres - 0.4).abs()))


def test_lattice_scale_features_are_the_shape_and_the_log_volume_per_atom():
    from pymatgen.core import Lattice

    from crystaldos.model.features import lattice_scale_invariants

    fcc = torch.tensor(Lattice.cubic(3.615).matrix @ np.array([[0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]).T).T[None]
    features = lattice_scale_invariants(fcc, torch.tensor([1]))
    assert math.isclose(float(features[0, 9]), math.log(3.615**3 / 4), rel_tol=1e-9)  # Cu: 11.81 Å³ per atom
    scaled = lattice_scale_invariants(1.1 * fcc, torch.tensor([1]))
    torch.testing.assert_close(scaled[0, :9], features[0, :9])  # the shape does not see the size
    assert math.isclose(float(scaled[0, 9] - features[0, 9]), 3 * math.log(1.1), rel_tol=1e-9)
    rotation = random_rotation(torch.Generator().manual_seed(0))
    torch.testing.assert_close(lattice_scale_invariants(fcc @ rotation.T, torch.tensor([1])), features)
    assert math.isclose(float(lattice_scale_invariants(fcc, torch.tensor([4]))[0, 9]), math.log(3.615**3 / 16), rel_tol=1e-9)


def test_the_predicted_dos_is_never_negative_though_the_raw_output_of_a_baseline_model_may_be(cell):
    """With element_baseline the raw output (what the loss and CBG's gradient see) may dip below zero in gaps;
    the DOS a user or a metric gets is clipped at 0 and equals the raw output wherever that is positive."""
    torch.manual_seed(0)
    fwd = DOSForwardModel(ModelConfig(hidden=32, n_layers=2, n_energies=N_E, conditional=False, element_baseline=True)).double().eval()
    # A table that dips below zero, so that the raw output does too (in a trained model the correction can).
    table = torch.linspace(-0.5, 1.5, N_E, dtype=torch.float64).repeat(NUM_ELEMENTS, 1)
    fwd.set_element_baseline(table)
    args = (cell["types"], cell["frac"], cell["lattice"], cell["t"], cell["edge_index"], cell["batch"])
    raw, physical = fwd(*args), fwd.predict_dos(*args)
    assert float(raw.min()) < 0 and float(physical.min()) == 0.0
    positive = raw > 0
    assert torch.equal(physical[positive], raw[positive]) and bool((physical[~positive] == 0).all())


def test_a_layer_computes_its_message_mlp_on_the_concatenated_pair():
    """The layer splits the message MLP's first weight into per-atom and per-edge parts for speed; the result is the
    DiffCSP layer's: the MLP on [x_i, x_j, edge_attr] of every edge j -> i, averaged at i, then the update MLP."""
    from crystaldos.model.layers import PeriodicLayer

    torch.manual_seed(0)
    layer = PeriodicLayer(16, 7).double()
    h, edge_attr = torch.randn(6, 16, dtype=torch.float64), torch.randn(20, 7, dtype=torch.float64)
    edge_index = torch.randint(0, 6, (2, 20))
    x = layer.norm(h)
    messages = layer.message_mlp(torch.cat([x[edge_index[1]], x[edge_index[0]], edge_attr], dim=-1))
    counts = torch.bincount(edge_index[1], minlength=6).clamp(min=1)[:, None]
    mean = torch.zeros(6, 16, dtype=torch.float64).index_add_(0, edge_index[1], messages) / counts
    expected = h + layer.update_mlp(torch.cat([x, mean], dim=-1))
    torch.testing.assert_close(layer(h, edge_index, edge_attr), expected, rtol=1e-10, atol=1e-10)
