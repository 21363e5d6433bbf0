"""Design as a benchmark (crystaldos.experiments.design_rows): k samples of a real val crystal screened, relaxed and
relabelled; one line per crystal kept so that a rerun resumes; the table and the report section read them."""

import json

import pytest

import crystaldos
from crystaldos import Sampler
from crystaldos.experiments.design_rows import design_section, run_design_rows, summarise


class NoSampling:
    """A sampler that must not be asked: every crystal is already in the store."""

    def generate(self, *args, **kwargs):
        raise AssertionError("a finished crystal was sampled again")


@pytest.fixture(scope="module")
def small_val_crystal():
    val = crystaldos.load_dataset().split("val")
    return next(item for item in val if item.id == "aflow-287")  # In, one atom: relaxes and labels in seconds


def test_design_rows_score_every_sample_and_resume_from_their_store(small_val_crystal, tmp_path):
    store = tmp_path / "design_k2_seed0.jsonl"
    sampler = Sampler.from_pretrained(device="cpu")
    [record] = run_design_rows(sampler, [small_val_crystal], k=2, seed=0, store=store, jobs=1, progress=False)
    assert record["id"] == "aflow-287" and [row["sample"] for row in record["rows"]] == [0, 1]
    for row in record["rows"]:  # each sample either a scored candidate or a drop with its stage and reason
        assert ("match" in row and row["d_site"] >= 0 and row["energy_per_atom"] < 0) or (row["stage"] and row["reason"])
    assert json.loads(store.read_text()) == record
    again = run_design_rows(NoSampling(), [small_val_crystal], k=2, seed=0, store=store, jobs=1, progress=False)
    assert again == [record]

    [k1, k2] = summarise([record], [1, 2])
    assert k2["oracle of k (relaxed)"] >= k2["top-1 by site"] and k2["oracle of k (relaxed)"] >= k1["oracle of k (relaxed)"]
    assert k2["kept (%)"] == 100 * sum("match" in row for row in record["rows"]) / 2
    section = design_section([record], 2, 0, jobs=1)
    assert "## Design from the DOS alone" in section and "top-1 by site" in section and "Cost per crystal" in section
