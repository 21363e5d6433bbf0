"""The reconstruction experiment end to end on a few test crystals with the shipped models."""

import json
import re
import subprocess
import sys

import h5py
import pytest
import xarray as xr
from pymatgen.core import Structure

import crystaldos
from crystaldos.evaluate import choose_crystals


def test_evaluate_cli_writes_results_report_and_figures(tmp_path):
    out = tmp_path / "eval"
    result = subprocess.run(
        [sys.executable, "-m", "crystaldos.cli", "evaluate", "--split", "val", "--random", "3", "--t-start", "20", "5",
         "--steps", "5", "--out", str(out), "--no-progress"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ds = xr.open_dataset(out / "results.nc", engine="h5netcdf")
    n_energies = crystaldos.load_dataset().grid.n_points  # the embedded data's grid, whichever format it is
    assert dict(ds.sizes) == {"guidance": 2, "t_start": 2, "structure": 3, "energy": n_energies}
    assert list(ds.guidance.values) == ["cbg", "cfg"] and list(ds.t_start.values) == [20, 5]
    # --random 3: three val crystals drawn with the seed, in split order; the split's size is kept for the captions.
    val = crystaldos.load_dataset().split("val")
    assert list(ds.structure.values) == [i.id for i in choose_crystals(val, random=3, seed=0)]
    assert int(ds.attrs["split_size"]) == len(val)
    # From t_start = 5 the shipped models give the input back: every crystal matches (CBG's likelihood
    # gradient still moves atoms by up to ~0.15 (V/N)^(1/3) at s = 1, so only CFG's RMSE is held tight).
    assert float(ds.matched.sel(t_start=5).mean()) == 1.0
    assert float(ds.rmse.sel(t_start=5, guidance="cfg").max()) < 0.05
    # The generated structures are stored compressed and come back as the pymatgen JSON that was written.
    with h5py.File(out / "results.nc") as raw:
        assert raw["generated"].compression == "gzip" and raw["dos_pred_total"].compression == "gzip"
    first = Structure.from_dict(json.loads(str(ds.generated.values[0, 0, 0])))
    assert len(first) == int(ds.n_atoms.values[0])
    report = (out / "report.md").read_text()
    assert "| guidance" in report and "match rate" in report and "crystaldos evaluate" in report
    assert f"3 of the {len(val)} val crystals;" in report  # the split it scored (sampler defaults are chosen on val, the table is test)
    # CBG and CFG on the same crystals, compared crystal by crystal: from t_start = 5 both match all three.
    paired_row = r"\|\s*5\s*\|\s*cbg\s*\|\s*cfg\s*\|\s*3\s*\|\s*100\.0\s*\|\s*100\.0\s*\|\s*3\s*\|\s*0\s*\|\s*0\s*\|\s*1\s*\|"
    assert "## Paired comparison" in report and re.search(paired_row, report), report
    for png in ("summary.png", "examples.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Every finished batch is kept (a killed run resumes), tied to the models that made it.
    settings = json.loads((out / "parts" / "settings.json").read_text())
    assert set(settings["models"]) == {"cfg.pt", "uncond.pt", "forward.pt"}
    assert len(list((out / "parts").glob("*.nc"))) == 4


def test_a_random_choice_of_crystals_is_seeded_keeps_split_order_and_refuses_bad_counts():
    val = crystaldos.load_dataset().split("val")
    ids = [i.id for i in choose_crystals(val, random=20, seed=0)]
    order = {item.id: k for k, item in enumerate(val)}
    assert len(set(ids)) == 20 and ids == sorted(ids, key=order.get)
    assert ids == [i.id for i in choose_crystals(val, random=20, seed=0)]
    assert ids != [i.id for i in choose_crystals(val, random=20, seed=1)]
    assert ids != [i.id for i in val[:20]]  # not the split's first crystals
    assert [i.id for i in choose_crystals(val, limit=4)] == [i.id for i in val[:4]]
    for bad in ({"random": 0}, {"random": len(val) + 1}, {"random": 3, "limit": 3}):
        with pytest.raises(ValueError, match="--random"):
            choose_crystals(val, **bad)


def test_experiment_records_which_unconditional_score_cbg_used():
    import crystaldos
    from crystaldos import Sampler
    from crystaldos.evaluate import run_experiment, summary_table

    sampler = Sampler.from_pretrained(device="cpu")
    items = crystaldos.load_dataset().split("test")[:2]
    runs = {u: run_experiment(sampler, items, guidances=["none"], t_starts=[50], steps=5, progress=False, unconditional=u,
                              family_seen=[True, False])
            for u in ("separate", "cfg-null")}
    assert {u: ds.attrs["unconditional"] for u, ds in runs.items()} == {"separate": "separate", "cfg-null": "cfg-null"}
    # Match rates by prototype family, seen in training or not: each group's own rate.
    row = summary_table(runs["separate"]).iloc[0]
    matched = runs["separate"].matched.values[0, 0]
    assert row["match seen (%, n=1)"] == 100 * matched[0] and row["match unseen (%, n=1)"] == 100 * matched[1]
    # Two different networks under the same noise: different generated crystals.
    assert not (runs["separate"].generated.values == runs["cfg-null"].generated.values).all()


def test_an_interrupted_experiment_resumes_from_its_finished_batches(tmp_path):
    import pytest

    import crystaldos
    from crystaldos import Sampler
    from crystaldos.evaluate import TimeLimitReached, run_experiment
    from crystaldos.experiments.parts import PartsMismatchError

    sampler = Sampler.from_pretrained(device="cpu")
    items = crystaldos.load_dataset().split("test")[:3]
    settings = dict(guidances=["cfg"], t_starts=[20], steps=4, batch_size=2, progress=False)
    in_memory = run_experiment(sampler, items, **settings)
    parts = tmp_path / "parts"
    kept = run_experiment(sampler, items, parts=parts, **settings)
    assert sorted(p.name for p in parts.glob("*.nc")) == ["cfg_t20_b00000.nc", "cfg_t20_b00002.nc"]
    timeless = ["sampling_time_s"]
    xr.testing.assert_identical(kept.drop_vars(timeless), in_memory.drop_vars(timeless))

    class CountingSampler:
        """The sampler, counting the crystals it is asked to reconstruct."""

        def __init__(self):
            self.asked = []

        def reconstruct(self, structures, *args, **kwargs):
            self.asked.append(len(structures))
            return sampler.reconstruct(structures, *args, **kwargs)

    # Killed before the second batch was written: only that batch (one crystal) is sampled again.
    (parts / "cfg_t20_b00002.nc").unlink()
    counting = CountingSampler()
    resumed = run_experiment(counting, items, parts=parts, **settings)
    assert counting.asked == [1]
    xr.testing.assert_identical(resumed.drop_vars(timeless), in_memory.drop_vars(timeless))
    # Another guidance into the same folder (e.g. on another machine) adds its parts and reuses the CFG ones.
    counting = CountingSampler()
    both = run_experiment(counting, items, parts=parts, **settings | {"guidances": ["cfg", "none"]})
    assert counting.asked == [2, 1]
    xr.testing.assert_identical(both.generated.sel(guidance=["cfg"]), in_memory.generated)
    # Parts of other settings or other crystals are never mixed in.
    with pytest.raises(PartsMismatchError, match="steps: 4 there, 5 now"):
        run_experiment(sampler, items, parts=parts, **settings | {"steps": 5})
    with pytest.raises(PartsMismatchError, match="items_sha256"):
        run_experiment(sampler, items[1:], parts=parts, **settings)
    # A time limit (a lent machine's minutes) starts no batch once it has passed: what is done stays in the parts.
    counting = CountingSampler()
    with pytest.raises(TimeLimitReached, match="4 parts finished"):
        run_experiment(counting, items, parts=parts, time_limit_minutes=1e-9, **settings | {"guidances": ["cfg", "none", "cbg"]})
    assert counting.asked == []
    with pytest.raises(ValueError, match="needs a parts folder"):
        run_experiment(sampler, items, time_limit_minutes=1.0, **settings)
    # The sampler's defaults (chosen on val, docs/research/lattice.md section 13) are recorded: auto lattice steps (DDIM from
    # t_start = 20), no corrector, tied types.
    assert (in_memory.attrs["lattice_step"], in_memory.attrs["step_lr"], in_memory.attrs["tie_types"]) == ("auto", 0.0, 1)
    # Ancestral lattice steps reach the sampler: the same atoms' noise, other cells, and the results say which.
    with pytest.raises(PartsMismatchError, match="lattice_step: \"auto\" there, \"ddpm\" now"):
        run_experiment(sampler, items, parts=parts, **settings | {"lattice_step": "ddpm"})
    ddpm = run_experiment(sampler, items, lattice_step="ddpm", **settings)
    assert ddpm.attrs["lattice_step"] == "ddpm"
    assert not (ddpm.generated.values == in_memory.generated.values).all()
    # So does the corrector's step (DiffCSP's 1e-5), and the parts folder keeps the two apart.
    with pytest.raises(PartsMismatchError, match="step_lr: 0.0 there, 1e-05 now"):
        run_experiment(sampler, items, parts=parts, **settings | {"step_lr": 1e-5})
    corrector = run_experiment(sampler, items, step_lr=1e-5, **settings)
    assert corrector.attrs["step_lr"] == 1e-5
    assert not (corrector.generated.values == in_memory.generated.values).all()
    with pytest.raises(ValueError, match="step_lr must be a finite number >= 0"):
        run_experiment(sampler, items, step_lr=-1e-5, **settings)
    # Tied types are a setting of their own: recorded, and never mixed with untied parts.
    with pytest.raises(PartsMismatchError, match="tie_types"):
        run_experiment(sampler, items, parts=parts, **settings | {"tie_types": False})
    free = run_experiment(sampler, items, tie_types=False, **settings)
    assert free.attrs["tie_types"] == 0


def test_the_device_evaluation_script_carries_its_parts_from_call_to_call(tmp_path):
    """scripts/device_evaluate.sh as two calls on a lent machine would run it, here on the CPU: the first does CFG,
    the second brings the first's parts, samples only the unguided batches and writes the report for both."""
    import os
    import tarfile
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    script = ["bash", str(root / "scripts" / "device_evaluate.sh"), "--device", "cpu", "--limit", "3", "--batch-size", "2",
              "--t-start", "20", "--steps", "4"]
    base = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "MINUTES": "8"}
    first, second = tmp_path / "first", tmp_path / "second"
    done = subprocess.run(script + ["--guidance", "cfg"], env=base | {"OUT": str(first), "WORKDIR": str(tmp_path / "w1")},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    with tarfile.open(first / "parts.tar.xz") as tar:
        assert sorted(n for n in tar.getnames() if n.endswith(".nc")) == ["./cfg_t20_b00000.nc", "./cfg_t20_b00002.nc"]
    done = subprocess.run(script + ["--guidance", "cfg", "none"], capture_output=True, text=True, timeout=600,
                          env=base | {"OUT": str(second), "WORKDIR": str(tmp_path / "w2"), "PARTS_IN": str(first / "parts.tar.xz")})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "resuming" in (tmp_path / "w2" / "evaluate.log").read_text() and "4 parts" in done.stdout
    assert sorted(p.name for p in second.iterdir()) == ["examples.png", "parts.tar.xz", "report.md", "results.nc", "summary.png"]
    ds = xr.open_dataset(second / "results.nc", engine="h5netcdf")
    assert list(ds.guidance.values) == ["cfg", "none"] and ds.sizes["structure"] == 3


def test_rows_carried_from_an_earlier_table_equal_a_fresh_run_with_the_new_forward_model(tmp_path):
    """A release that changes only forward.pt: the CFG rows of the old table, carried into the new run's parts with
    their forward-model DOS columns recomputed, are what sampling them again with the new models gives."""
    import copy

    import numpy as np
    import pytest
    import torch

    from crystaldos import Sampler
    from crystaldos.evaluate import SCORE_FIELDS, run_experiment
    from crystaldos.experiments.carry_rows import carry_rows, check_compatible
    from crystaldos.experiments.parts import PartsMismatchError, PartStore

    old_sampler = Sampler.from_pretrained(device="cpu")
    new_sampler = copy.deepcopy(old_sampler)
    with torch.no_grad():
        for p in new_sampler.forward_model.parameters():
            p.mul_(1.2)
    items = list(crystaldos.load_dataset().split("test")[:3])
    settings = dict(t_starts=[20], steps=4, batch_size=2, progress=False)
    old = run_experiment(old_sampler, items, guidances=["cfg"], **settings)
    parts = tmp_path / "parts"
    run_experiment(new_sampler, items, guidances=["cbg"], parts=parts, models={"forward.pt": "new"}, **settings)
    stored = json.loads((parts / "settings.json").read_text())
    check_compatible(old, stored, items, ["cfg"])
    written = carry_rows(old, items, ["cfg"], PartStore(parts, stored), new_sampler, batch_size=2)
    assert written == ["cfg_t20_b00000", "cfg_t20_b00002"]
    assembled = run_experiment(new_sampler, items, guidances=["cbg", "cfg"], parts=parts, models={"forward.pt": "new"}, **settings)
    fresh = run_experiment(new_sampler, items, guidances=["cfg"], **settings)
    carried, expected = assembled.sel(guidance="cfg"), fresh.sel(guidance="cfg")
    assert (carried.generated.values == expected.generated.values).all()
    for field in SCORE_FIELDS:
        np.testing.assert_allclose(carried[field].values, expected[field].values, rtol=1e-5, equal_nan=True, err_msg=field)
    # The forward-model columns did change with the forward model; the matches did not.
    assert not np.allclose(carried.dos_site_mae.values, old.sel(guidance="cfg").dos_site_mae.values)
    np.testing.assert_array_equal(carried.matched.values, old.sel(guidance="cfg").matched.values)
    # A table sampled otherwise is refused.
    with pytest.raises(PartsMismatchError, match="steps"):
        check_compatible(old.assign_attrs(steps=8), stored, items, ["cfg"])
    with pytest.raises(PartsMismatchError, match="other crystals"):
        check_compatible(old, stored, items[::-1], ["cfg"])


def test_a_models_folder_without_an_unconditional_model_serves_cbg_from_the_null_branch(tmp_path):
    """--unconditional cfg-null needs only cfg.pt and forward.pt; the default ('separate') names the missing file."""
    import shutil

    from crystaldos.checkpoint import PRETRAINED_DIR

    models = tmp_path / "models"
    models.mkdir()
    for name in ("cfg.pt", "forward.pt"):
        shutil.copy(PRETRAINED_DIR / name, models / name)
    command = [sys.executable, "-m", "crystaldos.cli", "evaluate", "--models", str(models), "--split", "val", "--limit", "2",
               "--t-start", "5", "--steps", "5", "--guidance", "cbg", "none", "--no-progress"]
    done = subprocess.run(command + ["--unconditional", "cfg-null", "--out", str(tmp_path / "a")], capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    ds = xr.open_dataset(tmp_path / "a" / "results.nc", engine="h5netcdf")
    assert list(ds.guidance.values) == ["cbg", "none"] and ds.attrs["unconditional"] == "cfg-null"
    refused = subprocess.run(command + ["--out", str(tmp_path / "b")], capture_output=True, text=True, timeout=600, check=False)
    assert refused.returncode == 2 and "uncond.pt does not exist" in refused.stderr and "Traceback" not in refused.stderr
