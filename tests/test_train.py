"""Training runs, resume, checkpoints (format and errors), the forward model's gradients and DDP."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import crystaldos
from crystaldos.checkpoint import CheckpointError, build_network, load_checkpoint, save_checkpoint
from crystaldos.data import collate, write_netcdf
from crystaldos.diffusion import JointDiffusion
from crystaldos.dos import DosGrid
from crystaldos.model import one_hot_types
from crystaldos.train import TrainConfig, train

TINY = ["model.hidden=32", "model.n_layers=2", "model.time_dim=16", "log_every=5", "val_every=5", "checkpoint_every=5", "val_batches=1"]


def _subset_file(tmp_path_factory, name: str, n_test: int) -> str:
    """16 train + 8 val (+ n_test test) crystals of the embedded data set, as a data file of their own."""
    ds = crystaldos.load_dataset()
    records = list(ds.split("train")[:16]) + list(ds.split("val")[:8]) + list(ds.split("test")[:n_test])
    return str(write_netcdf(records, tmp_path_factory.mktemp("data") / name, ds.grid, dict(ds.attrs)))


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    return _subset_file(tmp_path_factory, "small.nc", 0)


@pytest.fixture(scope="module")
def small_data_with_test(tmp_path_factory):
    """With 8 test crystals: for scripts that also evaluate on the test split."""
    return _subset_file(tmp_path_factory, "small_with_test.nc", 8)


def tiny_config(data, out_dir, kind="cfg", steps=10, extra=()):
    return TrainConfig.from_sources(None, TINY + list(extra), kind=kind, data=data, out_dir=str(out_dir), steps=steps, batch_size=8, num_threads=1)


def test_loss_decreases_on_a_tiny_overfit_run(small_data, tmp_path):
    path = train(tiny_config(small_data, tmp_path, "cfg", steps=150, extra=["lr=0.003", "ema_decay=0.9"]), progress=False)
    history = load_checkpoint(path)["train"]["history"]
    first, last = history[0]["train_loss"], history[-1]["train_loss"]
    assert last < 0.6 * first, (first, last)
    assert (tmp_path / "history.csv").read_text().count("\n") == len(history) + 1


def test_release_checkpoint_format_and_round_trip(small_data, tmp_path):
    path = train(tiny_config(small_data, tmp_path, "uncond", steps=5), progress=False)
    raw = torch.load(path, weights_only=True)  # the documented loader works on its own
    assert raw["format"] == "crystaldos-checkpoint" and raw["kind"] == "uncond"
    assert raw["vocabulary"] == list(range(1, 101))
    ckpt = load_checkpoint(path, kind="uncond", grid=crystaldos.load_dataset(small_data).grid)
    network = build_network(ckpt)
    assert not network.config.conditional
    for name, tensor in network.state_dict().items():
        torch.testing.assert_close(tensor, ckpt["state_dict"][name])
    # Saving the loaded checkpoint again gives the same network.
    again = load_checkpoint(save_checkpoint(ckpt, tmp_path / "again.pt"))
    assert again["model_config"] == ckpt["model_config"]


def test_resume_continues_from_the_saved_step(small_data, tmp_path):
    constant_lr = ["lr_final_fraction=1.0"]  # the cosine schedule depends on the total step count
    train(tiny_config(small_data, tmp_path, "uncond", steps=5, extra=constant_lr), progress=False)
    state = load_checkpoint(tmp_path / "train_state.pt")
    assert state["train"]["step"] == 5
    path = train(tiny_config(small_data, tmp_path, "uncond", steps=10, extra=constant_lr), progress=False)
    ckpt = load_checkpoint(path)
    assert ckpt["train"]["step"] == 10
    assert [row["step"] for row in ckpt["train"]["history"]] == [5, 10]
    # Stopped half-way through an epoch (5 steps of 2 batches each) and resumed, it draws the batches and noise
    # of a run that was never interrupted: the same weights.
    uninterrupted = load_checkpoint(train(tiny_config(small_data, tmp_path / "once", "uncond", steps=10, extra=constant_lr),
                                          progress=False))
    for name, weights in uninterrupted["state_dict"].items():
        torch.testing.assert_close(weights, ckpt["state_dict"][name], rtol=0, atol=0, msg=name)
    # A different architecture in the same run directory is refused, not silently mixed.
    with pytest.raises(CheckpointError, match="model"):
        train(tiny_config(small_data, tmp_path, "uncond", steps=12, extra=["model.hidden=48"]), progress=False)


def test_bad_checkpoints_are_named(small_data, tmp_path):
    path = train(tiny_config(small_data, tmp_path, "uncond", steps=5), progress=False)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a crystaldos checkpoint"):
        load_checkpoint(foreign)
    ckpt = torch.load(path, weights_only=True)
    torch.save(ckpt | {"format_version": 99}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="DOS grid"):
        load_checkpoint(path, grid=DosGrid(n_points=128))
    with pytest.raises(CheckpointError, match="expected 'cfg'"):
        load_checkpoint(path, kind="cfg")
    assert path.exists() and load_checkpoint(path)  # the good file is untouched


def test_a_release_without_the_effective_fraction_is_recalibrated_in_place(small_data, tmp_path):
    """python -m crystaldos.train.calibrate: a forward release written before the field existed gets it back, with
    the same sigma(t) as the release computed and the same weights; a data set on another grid is refused."""
    from crystaldos.train.calibrate import main as calibrate_main

    path = train(tiny_config(small_data, tmp_path, "forward", steps=5), progress=False)
    released = load_checkpoint(path, kind="forward")
    old = dict(released)
    old["calibration"] = {k: v for k, v in released["calibration"].items() if k != "effective_fraction"}
    save_checkpoint(old, path)
    calibrate_main([str(path), "--data", small_data, "--batch-size", "8"])  # the run's batch: the same noise draws
    again = load_checkpoint(path, kind="forward")
    assert set(again["calibration"]) == set(released["calibration"])
    for key, values in released["calibration"].items():
        assert again["calibration"][key] == pytest.approx(values), key
    assert all(torch.equal(again["state_dict"][k], v) for k, v in released["state_dict"].items())
    assert again["train"]["calibration_split"] == "val" and "crystaldos.train.calibrate" in again["train"]["recalibrated"]
    elsewhere = dict(again)
    elsewhere["grid"] = DosGrid(n_points=128).to_attrs()  # a release made on another grid than the data's
    save_checkpoint(elsewhere, tmp_path / "other_grid.pt")
    with pytest.raises(ValueError, match="was trained on grid"):
        calibrate_main([str(tmp_path / "other_grid.pt"), "--data", small_data])


def test_forward_model_gradients_wrt_coordinates_lattice_and_types_are_finite(small_data, tmp_path):
    path = train(tiny_config(small_data, tmp_path, "forward", steps=5), progress=False)
    ckpt = load_checkpoint(path, kind="forward")
    assert len(ckpt["calibration"]["t"]) == len(ckpt["calibration"]["rmse"]) and min(ckpt["calibration"]["rmse"]) > 0
    assert len(ckpt["calibration"]["effective_fraction"]) == len(ckpt["calibration"]["t"])
    assert all(0 < f <= 1 for f in ckpt["calibration"]["effective_fraction"])
    model = build_network(ckpt)
    batch = collate(crystaldos.load_dataset(small_data).split("val")[:3])
    diffusion = JointDiffusion()
    t = torch.tensor([0, 200, 800])
    noisy = diffusion.noise(one_hot_types(batch.atom_types), batch.frac_coords, batch.lattice, t, batch.batch)
    types, frac, lattice = (x.clone().requires_grad_(True) for x in (noisy.types, noisy.frac_coords, noisy.lattice))
    pred = model(types, frac, lattice, t, batch.edge_index, batch.batch)
    assert pred.shape == batch.dos.shape and bool((pred >= 0).all())
    log_likelihood = -((pred - batch.dos) ** 2).sum()
    grads = torch.autograd.grad(log_likelihood, (types, frac, lattice))
    for g, x in zip(grads, (types, frac, lattice)):
        assert g.shape == x.shape and bool(torch.isfinite(g).all()) and float(g.abs().sum()) > 0


def test_config_files_and_overrides(tmp_path):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("kind: forward\nsteps: 7\nema_decay: 9e-1\nmodel:\n  hidden: 48\n")
    config = TrainConfig.from_sources(yaml_file, ["model.n_layers=3", "lr=0.01"], batch_size=4)
    assert (config.kind, config.steps, config.model.hidden, config.model.n_layers, config.lr, config.batch_size) == ("forward", 7, 48, 3, 0.01, 4)
    # YAML 1.1 reads 1e-4 and 9e-1 (no dot) as text; numeric settings take them as numbers.
    assert config.ema_decay == 0.9 and TrainConfig.from_sources(None, ["lr=1e-4"]).lr == 1e-4
    with pytest.raises(ValueError, match="'lr' must be a number"):
        TrainConfig.from_sources(None, ["lr=fast"])
    with pytest.raises(ValueError, match="'model.gram_scale' must be a number"):
        TrainConfig.from_sources(None, ["model.gram_scale=big"])
    assert config.model.conditional is False
    assert TrainConfig.from_dict(config.to_dict()) == config
    for bad in (["model.width=3"], ["nonsense=1"], ["lr"]):
        with pytest.raises(ValueError):
            TrainConfig.from_sources(None, bad)
    with pytest.raises(ValueError, match="kind"):
        TrainConfig(kind="classifier")


def test_two_process_ddp_keeps_replicas_identical(small_data, tmp_path):
    """torchrun with 2 CPU processes (gloo): DDP averages gradients, so both replicas end equal."""
    torchrun = Path(sys.executable).with_name("torchrun")
    args = [str(torchrun), "--nproc_per_node", "2", "--standalone", "-m", "crystaldos.train", "--kind", "cfg", "--data", small_data,
            "--out-dir", str(tmp_path), "--steps", "6", "--batch-size", "4", "--num-threads", "1", "--no-progress"]
    for item in TINY:
        args += ["--set", item]
    # Own session + faulthandler: a hang (e.g. in the workers' teardown) is aborted as a whole
    # process group, and the failure shows every process's Python stack instead of a bare timeout.
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="1")
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGABRT)
        output, _ = process.communicate()
        pytest.fail(f"torchrun did not finish in 240 s; stacks at abort:\n{output[-6000:]}")
    assert process.returncode == 0, output[-3000:]
    ckpt = load_checkpoint(tmp_path / "model.pt")
    assert ckpt["train"]["world_size"] == 2
    a, b = ckpt["train"]["replica_checksums"]
    assert a == b
    assert ckpt["train"]["step"] == 6


def test_radius_graph_models_train_save_and_sample(small_data, tmp_path):
    # The large-cell option: a radius graph over periodic images instead of all pairs in the cell.
    extra = ["model.cutoff=5.0", "model.max_neighbours=24"]
    paths = {kind: train(tiny_config(small_data, tmp_path / kind, kind, steps=5, extra=extra), progress=False) for kind in ("cfg", "uncond", "forward")}
    for kind, path in paths.items():
        assert load_checkpoint(path)["model_config"]["cutoff"] == 5.0
        (tmp_path / f"{kind}.pt").write_bytes(Path(path).read_bytes())
    sampler = crystaldos.Sampler.from_pretrained(tmp_path, device="cpu")
    item = crystaldos.load_dataset().split("test")[0]
    for guidance in ("cfg", "cbg"):
        result = sampler.reconstruct(item.structure, item.dos, guidance=guidance, t_start=50, steps=3, progress=False)[0]
        assert len(result.structure) == len(item.structure)


def test_device_auto_and_a_missing_gpu_is_named():
    from crystaldos.device import resolve_device

    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto")
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            crystaldos.Sampler.from_pretrained(device="cuda")


def test_the_gpu_training_script_stops_carries_its_state_to_a_fresh_machine_and_releases(small_data_with_test, tmp_path):
    """scripts/device_train.sh as it would run on lent GPU machines, on the CPU with a handful of steps: a first call
    stops every run at its time limit and brings the training state back (KEEP_STATE=1); a second, on a fresh
    machine (an empty runs folder), continues from that state (RESUME_FROM) to the recipe's steps and releases the
    three networks with the report; a third trains nothing, because the releases already hold those settings."""
    root = Path(__file__).resolve().parent.parent
    first, out = tmp_path / "first", tmp_path / "out"
    base = {**os.environ, "DEVICE": "cpu", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "SCALE": "0.0005",
            "DATA": small_data_with_test}
    script = ["bash", str(root / "scripts" / "device_train.sh"), "--set", "model.hidden=32", "--set", "model.n_layers=2",
              "--set", "forward:weight_decay=0.1", "--steps", "forward=8000"]
    # A time limit far below one step's time: every run stops at its first check.
    done = subprocess.run(script + ["--set", "time_limit_minutes=0.000001", "--set", "log_every=2"],
                          env=base | {"OUT": str(first), "RUNS": str(tmp_path / "runs1"), "KEEP_STATE": "1"},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert len(list(first.iterdir())) <= 8 and (first / "cfg.state.pt").exists()
    # Stopped runs are not released: no half-trained checkpoint can stand in for a finished one.
    assert "not released" in done.stdout and not (first / "cfg.pt").exists()
    assert load_checkpoint(first / "forward.state.pt")["train"]["step"] == 2

    out.mkdir()
    # Hand-written measurements beside the report (docs/research/learning_curves.md) are carried into it.
    (out / "learning_curves.md").write_text("## Learning curves\n\nmeasured by hand\n")
    done = subprocess.run(script, env=base | {"OUT": str(out), "RUNS": str(tmp_path / "runs2"), "RESUME_FROM": str(first)},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.count("resuming") == 3
    # At most 8 files come back from the device machine: the three release checkpoints and the report.
    assert sorted(p.name for p in out.iterdir()) == ["cfg.pt", "forward.pt", "learning_curves.md", "training.md",
                                                     "training_curves.png", "uncond.pt"]
    for kind in ("cfg", "uncond", "forward"):
        history = load_checkpoint(out / f"{kind}.pt")["train"]["history"]
        planned = {"cfg": 10, "uncond": 10, "forward": 4}[kind]  # the format2 recipe's 20,000 steps x SCALE; forward as set
        assert history[0]["step"] == 2 and history[-1]["step"] == planned, (kind, [h["step"] for h in history])
    sampler = crystaldos.Sampler.from_pretrained(out, device="cpu")
    cfg = sampler.checkpoints["cfg"]
    assert cfg["config"]["model"]["hidden"] == 32 and cfg["config"]["model"]["edge_lengths"]  # the recipe's settings
    # Settings and step counts scoped to one network reach that network only.
    forward = sampler.checkpoints["forward"]
    assert forward["config"]["weight_decay"] == 0.1 and forward["config"]["model"]["hidden"] == 32
    assert sampler.checkpoints["uncond"]["config"]["weight_decay"] == 0.0
    assert "finished in" in done.stdout and "not released" not in done.stdout
    report = (out / "training.md").read_text()
    assert "per-element mean MAE" in report and report.rstrip().endswith("measured by hand")

    # Again on an empty runs folder: the releases already in OUT hold the settings and steps, so nothing trains
    # (the repository keeps the shipped weights once, in crystaldos/pretrained, not again under runs/).
    weights = {p.name: p.read_bytes() for p in out.glob("*.pt")}
    again = subprocess.run(script, env=base | {"OUT": str(out), "RUNS": str(tmp_path / "runs3")},
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert again.stdout.count("not started again") == 3, again.stdout[-2000:]
    assert {p.name: p.read_bytes() for p in out.glob("*.pt")} == weights


def test_the_forward_sweep_script_smoke_runs_on_cpu(small_data_with_test, tmp_path):
    """scripts/device_forward_sweep.sh with two tiny variants on the CPU: tables for both splits, histories, weights."""
    root = Path(__file__).resolve().parent.parent
    data = small_data_with_test
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "DATA": str(data), "STEPS": "3", "MINUTES": "5", "DEVICE": "cpu",
           "PYTHON": sys.executable, "RUNS": str(tmp_path / "runs"), "OMP_NUM_THREADS": "1", "KEEP_WEIGHTS": "1",
           "VARIANTS": "small|model.hidden=32 model.n_layers=2 forward_max_t=0\nnoisy|model.hidden=32 model.n_layers=2 forward_max_t=50"}
    done = subprocess.run(["bash", str(root / "scripts" / "device_forward_sweep.sh")], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["forward_sweep.md", "forward_sweep_runs.tar", "noisy.pt", "small.pt"]
    tables = (out / "forward_sweep.md").read_text()
    assert tables.count("crystals of the train split") == 2 and tables.count("crystals of the test split") == 2
    assert "3 of 3 steps" in tables and "forward_max_t 50" in tables
    assert load_checkpoint(out / "small.pt", kind="forward")["train"]["config"]["forward_loss"] == "l1"


def test_train_fraction_takes_a_seeded_share_of_the_training_split(small_data, tmp_path):
    half = load_checkpoint(train(tiny_config(small_data, tmp_path / "half", steps=2, extra=["train_fraction=0.5"]), progress=False))
    largest = max(len(item.structure) for item in crystaldos.load_dataset(small_data).split("train"))
    assert half["train"]["data"]["n_train"] == 8 and half["train"]["data"]["n_sites_range"][1] <= largest
    with pytest.raises(ValueError, match=r"train_fraction must lie in \(0, 1\]"):
        train(tiny_config(small_data, tmp_path / "bad", steps=2, extra=["train_fraction=0"]), progress=False)


def test_element_mean_table_by_hand():
    from crystaldos.model.forward_model import element_mean_dos_table

    dos = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 4.0]])
    table = element_mean_dos_table(torch.tensor([1, 1, 8]), dos)
    assert table.shape == (100, 2)
    torch.testing.assert_close(table[0], torch.tensor([2.0, 1.0]))  # H: mean of its two atoms
    torch.testing.assert_close(table[7], torch.tensor([0.0, 4.0]))  # O
    torch.testing.assert_close(table[25], dos.mean(0))  # Fe, absent: the mean of all atoms
    three = torch.tensor([[1.0, 0.0], [3.0, 2.0], [8.0, 1.0], [0.0, 4.0]])
    median = element_mean_dos_table(torch.tensor([1, 1, 1, 8]), three, "median")
    torch.testing.assert_close(median[0], torch.tensor([3.0, 1.0]))  # H: energy-wise median of its three atoms
    torch.testing.assert_close(median[25], torch.tensor([1.0, 1.0]))  # absent: torch's lower median of all four
    with pytest.raises(ValueError, match="statistic"):
        element_mean_dos_table(torch.tensor([1]), dos[:1], "mode")


def test_forward_model_with_element_baseline_starts_at_the_per_element_mean(small_data, tmp_path):
    """model.element_baseline: the released model carries the training split's per-element mean DOS, and before
    its correction has learnt anything (lr ~ 0) it predicts exactly that mean for every clean atom."""
    from crystaldos.model.forward_model import element_mean_dos_table

    path = train(tiny_config(small_data, tmp_path, "forward", steps=2, extra=["model.element_baseline=true", "lr=1e-12"]), progress=False)
    model = build_network(load_checkpoint(path, kind="forward")).eval()
    ds = crystaldos.load_dataset(small_data)
    graphs = ds.split("train").to_graphs()
    table = element_mean_dos_table(torch.cat([g.atom_types for g in graphs]), torch.cat([g.dos for g in graphs]))
    batch = collate(list(ds.split("val")))
    with torch.no_grad():
        pred = model(one_hot_types(batch.atom_types), batch.frac_coords, batch.lattice, torch.zeros(batch.num_graphs, dtype=torch.long),
                     batch.edge_index, batch.batch)
    torch.testing.assert_close(pred, table[batch.atom_types - 1], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="element_baseline"):
        build_network(load_checkpoint(train(tiny_config(small_data, tmp_path / "plain", "forward", steps=1), progress=False))).set_element_baseline(table)


def test_forward_model_can_train_on_clean_crystals_only(small_data):
    """forward_max_t = 0: every training step sees the clean crystal, so the loss is the t = 0 error exactly."""
    from crystaldos.train.loop import batch_losses, build_model

    config = tiny_config(small_data, "/tmp/unused", "forward", extra=["forward_max_t=0"])
    model = build_model(config).eval()
    batch = collate(list(crystaldos.load_dataset(small_data).split("train")[:4]))
    diffusion = JointDiffusion()
    with torch.no_grad():
        loss = batch_losses(model, diffusion, batch, "forward", generator=torch.Generator().manual_seed(0),
                            forward=config.forward_objective)["dos"]
        clean = model(one_hot_types(batch.atom_types), batch.frac_coords, batch.lattice, torch.zeros(batch.num_graphs, dtype=torch.long),
                      batch.edge_index, batch.batch)
    scale = model.config.dos_scale
    torch.testing.assert_close(loss, torch.nn.functional.mse_loss(clean / scale, batch.dos / scale))
    for bad in (-1, 1001):
        with pytest.raises(ValueError, match="forward_max_t"):
            tiny_config(small_data, "/tmp/unused", "forward", extra=[f"forward_max_t={bad}"])


def test_forward_model_takes_a_share_of_each_batch_at_t0(small_data):
    """forward_clean_fraction: that share of the crystals is noised to t = 0, the rest as before; 0 leaves the
    random stream untouched (earlier runs reproduce), and a share outside 0 ... 1 is refused."""
    from crystaldos.train.config import ForwardObjective
    from crystaldos.train.loop import batch_losses, build_model

    class RecordingDiffusion(JointDiffusion):
        def noise(self, types, frac_coords, lattice, t, batch, generator=None):
            self.steps = t.clone()
            return super().noise(types, frac_coords, lattice, t, batch, generator)

    model = build_model(tiny_config(small_data, "/tmp/unused", "forward")).eval()
    records = list(crystaldos.load_dataset(small_data).split("train"))
    batch = collate((records * (400 // len(records) + 1))[:400])
    steps = {}
    with torch.no_grad():
        for share in (None, 0.0, 0.5, 1.0):
            diffusion = RecordingDiffusion()
            extra = {} if share is None else {"forward": ForwardObjective(clean_fraction=share)}
            batch_losses(model, diffusion, batch, "forward", generator=torch.Generator().manual_seed(0), **extra)
            steps[share] = diffusion.steps
    assert torch.equal(steps[None], steps[0.0])
    assert int((steps[0.0] == 0).sum()) <= 3
    assert 160 <= int((steps[0.5] == 0).sum()) <= 240  # binomial(400, 0.5): mean 200, sd 10
    assert int((steps[0.5] > 500).sum()) >= 60  # the rest still covers the whole schedule
    assert int((steps[1.0] != 0).sum()) == 0
    with pytest.raises(ValueError, match="forward_clean_fraction"):
        tiny_config(small_data, "/tmp/unused", "forward", extra=["forward_clean_fraction=1.5"])


def test_forward_model_l1_loss_is_the_mean_absolute_error(small_data):
    """forward_loss = "l1": on clean crystals the loss is the MAE of the prediction (in units of dos_scale), not
    the MSE; an unknown loss name is refused by the config."""
    from crystaldos.train.config import ForwardObjective
    from crystaldos.train.loop import batch_losses, build_model

    config = tiny_config(small_data, "/tmp/unused", "forward", extra=["forward_max_t=0", "forward_loss=l1"])
    model = build_model(config).eval()
    batch = collate(list(crystaldos.load_dataset(small_data).split("train")[:4]))
    with torch.no_grad():
        parts = {name: batch_losses(model, JointDiffusion(), batch, "forward", generator=torch.Generator().manual_seed(0),
                                    forward=ForwardObjective(max_t=0, loss=name))["dos"] for name in ("l1", "mse")}
        clean = model(one_hot_types(batch.atom_types), batch.frac_coords, batch.lattice, torch.zeros(batch.num_graphs, dtype=torch.long),
                      batch.edge_index, batch.batch)
    error = (clean - batch.dos) / model.config.dos_scale
    torch.testing.assert_close(parts["l1"], error.abs().mean())
    torch.testing.assert_close(parts["mse"], error.square().mean())
    with pytest.raises(ValueError, match="forward_loss"):
        tiny_config(small_data, "/tmp/unused", "forward", extra=["forward_loss=huber"])
    assert config.forward_objective == ForwardObjective(max_t=0, loss="l1")


def test_a_time_limit_releases_early_and_the_rerun_continues(small_data, tmp_path):
    # 1e-6 min is past at the first check (step log_every = 5): the run stops there, releases, and can resume.
    limited = tiny_config(small_data, tmp_path, "forward", steps=40, extra=["time_limit_minutes=0.000001"])
    released = load_checkpoint(train(limited, progress=False))
    assert released["train"]["step"] == 5
    assert load_checkpoint(tmp_path / "train_state.pt")["train"]["step"] == 5
    finished = load_checkpoint(train(tiny_config(small_data, tmp_path, "forward", steps=12), progress=False))
    assert finished["train"]["step"] == 12
    with pytest.raises(ValueError, match="time_limit_minutes"):
        tiny_config(small_data, tmp_path, "forward", extra=["time_limit_minutes=0"])


def test_patience_stops_once_the_best_validation_is_old_and_releases_it(small_data, tmp_path):
    # The keep_best set-up below: a constant learning rate, so that the stopped run follows the long run's path.
    extra = ["keep_best=true", "lr=0.01", "lr_final_fraction=1.0", "ema_decay=0.5", "model.element_baseline=true"]
    long = load_checkpoint(train(tiny_config(small_data, tmp_path / "long", "forward", steps=60, extra=extra), progress=False))
    val = {h["step"]: h["val_loss"] for h in long["train"]["history"] if "val_loss" in h}
    patience = 10
    # Where patience ends it: the first validation whose lowest loss so far is `patience` steps old.
    stop = next(s for s in sorted(val) if s - min((t for t in val if t <= s), key=val.get) >= patience)
    best = min((t for t in val if t <= stop), key=val.get)
    assert stop < 60, val  # on 16 training crystals at this learning rate the validation loss turns up
    patient = tiny_config(small_data, tmp_path / "patient", "forward", steps=60, extra=[*extra, f"patience_steps={patience}"])
    stopped = load_checkpoint(train(patient, progress=False))
    assert stopped["train"]["stopped_early"] == stopped["train"]["step"] == stop
    assert stopped["train"]["released_step"] == best
    short = load_checkpoint(train(tiny_config(small_data, tmp_path / "short", "forward", steps=best, extra=extra[1:]), progress=False))
    for name, weights in short["state_dict"].items():
        torch.testing.assert_close(weights, stopped["state_dict"][name], msg=name)
    # Run again, a stopped run is finished: it trains no further.
    again = load_checkpoint(train(patient, progress=False))
    assert again["train"]["step"] == stop and again["train"]["released_step"] == best
    # ... and the release command does not start it again, though it has fewer steps than planned.
    from crystaldos.train.release import finished_runs, planned_config, training_commands, unfinished_runs

    plan = _release_args(overrides=[*TINY, *extra, f"patience_steps={patience}"], steps=("forward=60",), runs=tmp_path / "runs",
                         data=small_data)
    planned = load_checkpoint(train(planned_config(training_commands(plan)["forward"]), progress=False))["train"]
    assert planned["stopped_early"] == planned["step"] < 60
    assert finished_runs(plan) == {"forward": planned["step"]} and "forward" not in unfinished_runs(plan)  # released
    with pytest.raises(ValueError, match="patience_steps"):
        tiny_config(small_data, tmp_path, "forward", extra=["patience_steps=10"])  # without keep_best


def _release_args(recipe="format1", overrides=(), steps=(), runs="r", data=None, out=None):
    """What `python -m crystaldos.train.release` parses from --recipe, --set and --steps (other options at defaults;
    ``out`` None: no release folder to fall back on)."""
    import argparse

    return argparse.Namespace(runs=str(runs), scale=1.0, data=data, device=None, recipe=recipe, overrides=list(overrides),
                              steps=list(steps), out=out)


def test_release_does_not_start_again_a_run_whose_model_has_its_settings_and_steps(small_data, tmp_path):
    from crystaldos.train.release import finished_runs, planned_config, training_commands, unfinished_runs

    def args(overrides=(), steps=("forward=3",)):
        return _release_args(overrides=[*TINY, *overrides], steps=steps, runs=tmp_path, data=small_data)

    assert finished_runs(args()) == {}
    train(planned_config(training_commands(args(["time_limit_minutes=5"]))["forward"]), progress=False)
    (tmp_path / "forward" / "train_state.pt").unlink()  # a finished run needs only its release file
    assert finished_runs(args()) == {"forward": 3}  # where and how long it may run are not what it learnt
    assert finished_runs(args(steps=("forward=4",))) == {}  # more steps planned
    assert unfinished_runs(args(steps=("forward=4",)))["forward"] == 3  # (as a time limit leaves a run: not released)
    assert finished_runs(args(["forward:weight_decay=0.5"])) == {}  # other settings
    assert finished_runs(args(["model.hidden=48"])) == {}
    # A run trained before a setting existed had its default: it is still finished, unless the plan sets another value.
    release = tmp_path / "forward" / "model.pt"
    ckpt = torch.load(release, weights_only=True)
    del ckpt["train"]["config"]["forward_clean_fraction"], ckpt["train"]["config"]["model"]["edge_lengths"]
    torch.save(ckpt, release)
    assert finished_runs(args()) == {"forward": 3}
    assert finished_runs(args(["forward:forward_clean_fraction=0.5"])) == {}
    # The same data at another path counts; another data set does not.
    ds = crystaldos.load_dataset(small_data)
    moved = write_netcdf(list(ds), tmp_path / "moved.nc", ds.grid, dict(ds.attrs))
    assert finished_runs(_release_args(overrides=TINY, steps=("forward=3",), runs=tmp_path, data=str(moved))) == {"forward": 3}
    other = write_netcdf(list(ds), tmp_path / "other.nc", ds.grid, dict(ds.attrs) | {"title": "another data set"})
    assert finished_runs(_release_args(overrides=TINY, steps=("forward=3",), runs=tmp_path, data=str(other))) == {}
    # Without a model.pt in the runs folder, the release already in --out counts (the shipped weights, kept once).
    released = tmp_path / "released"
    released.mkdir()
    (tmp_path / "forward" / "model.pt").rename(released / "forward.pt")
    assert finished_runs(args()) == {}
    assert finished_runs(_release_args(overrides=TINY, steps=("forward=3",), runs=tmp_path, data=small_data, out=released)) == {
        "forward": 3}


def test_release_settings_scoped_to_one_network_and_bad_scopes_named():
    from crystaldos.train.release import training_commands

    def commands(overrides, steps=()):
        return training_commands(_release_args(overrides=overrides, steps=steps))

    built = commands(["model.hidden=256", "forward:weight_decay=0.1", "data_path=a:b"], ["cfg=12000"])
    assert built["forward"].count("--set") == 3 and "weight_decay=0.1" in built["forward"]
    assert "weight_decay=0.1" not in built["cfg"] and "data_path=a:b" in built["cfg"] and "model.hidden=256" in built["uncond"]
    assert built["cfg"][built["cfg"].index("--steps") + 1] == "12000"
    assert built["uncond"][built["uncond"].index("--steps") + 1] == "8000"
    with pytest.raises(SystemExit, match="unknown network 'foward'"):
        commands(["foward:weight_decay=0.1"])
    with pytest.raises(SystemExit, match="--steps cfg:100"):
        commands([], ["cfg:100"])


def test_format2_recipe_builds_valid_configs_with_common_diffusion_and_yields_to_the_command_line():
    from crystaldos.train.config import TrainConfig
    from crystaldos.train.release import training_commands

    def configs(overrides=(), steps=()):
        built = training_commands(_release_args("format2", overrides, steps))
        settings = {kind: [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--set"] for kind, cmd in built.items()}
        steps = {kind: int(cmd[cmd.index("--steps") + 1]) for kind, cmd in built.items()}
        return {kind: TrainConfig.from_sources(overrides=values, kind=kind) for kind, values in settings.items()}, steps

    made, steps = configs()
    assert steps == {"cfg": 20_000, "uncond": 20_000, "forward": 12_000}
    # CBG pairs the unconditional denoiser with the forward model: their diffusion must be the same.
    assert made["cfg"].diffusion == made["uncond"].diffusion == made["forward"].diffusion
    assert made["cfg"].diffusion.lattice_noise_atoms == 8 and all(c.keep_best for c in made.values())
    assert all(c.model.lattice_scale_features and c.model.edge_lengths for c in made.values())
    assert made["forward"].forward_loss == "l1" and made["forward"].model.element_baseline
    assert made["forward"].weight_decay == 0.1 and made["cfg"].weight_decay == 0.0
    # What the command line says comes after the recipe and wins.
    made, steps = configs(["keep_best=false", "forward:weight_decay=0.01"], ["cfg=500"])
    assert not made["cfg"].keep_best and made["forward"].weight_decay == 0.01 and steps["cfg"] == 500
    with pytest.raises(SystemExit, match="--recipe format3: unknown"):
        training_commands(_release_args("format3"))


def test_keep_best_releases_the_weights_of_the_lowest_validation_loss_and_remembers_them_on_resume(small_data, tmp_path):
    # A constant learning rate, so that a run's first k steps are the same whatever its length.
    extra = ["keep_best=true", "lr=0.01", "lr_final_fraction=1.0", "ema_decay=0.5", "model.element_baseline=true"]
    long = load_checkpoint(train(tiny_config(small_data, tmp_path / "long", "forward", steps=60, extra=extra), progress=False))
    val = {h["step"]: h["val_loss"] for h in long["train"]["history"] if "val_loss" in h}
    best_step = min(val, key=val.get)
    assert long["train"]["released_step"] == best_step == long["train"]["best"]["step"] and long["train"]["step"] == 60
    assert best_step < 60, val  # on 16 training crystals at this learning rate the validation loss turns up
    # The same run stopped at the best step releases the same weights.
    short = load_checkpoint(train(tiny_config(small_data, tmp_path / "short", "forward", steps=best_step, extra=extra[1:]),
                                  progress=False))
    for name, weights in long["state_dict"].items():
        torch.testing.assert_close(weights, short["state_dict"][name], msg=name)
    # Interrupted half-way and resumed: the best weights survive in the training state.
    train(tiny_config(small_data, tmp_path / "resumed", "forward", steps=30, extra=extra), progress=False)
    resumed = load_checkpoint(train(tiny_config(small_data, tmp_path / "resumed", "forward", steps=60, extra=extra), progress=False))
    assert resumed["train"]["released_step"] == best_step
    for name, weights in long["state_dict"].items():
        torch.testing.assert_close(weights, resumed["state_dict"][name], msg=name)
    # Resumed with keep_best off, a run releases its last weights, not the best ones it kept before.
    train(tiny_config(small_data, tmp_path / "switched", "forward", steps=best_step, extra=extra), progress=False)
    switched = load_checkpoint(train(tiny_config(small_data, tmp_path / "switched", "forward", steps=60,
                                                 extra=["keep_best=false", *extra[1:]]), progress=False))
    assert switched["train"]["released_step"] == 60
    assert any(not torch.equal(weights, switched["state_dict"][name]) for name, weights in long["state_dict"].items())
