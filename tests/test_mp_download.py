"""`crystaldos data mp`: the Materials Project downloader, offline.

A test double stands in for the Materials Project: it returns real pymatgen objects (the embedded data set's
Structures with their atom-level DOS as a ``CompleteDos`` with site projections). The real client (mp-api) is used
only where no network is needed: the missing-key, bad-key and no-network errors.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import numpy as np
import pytest
import requests
from pymatgen.electronic_structure.dos import CompleteDos

import crystaldos
from crystaldos.data.mp import (
    IN_PROGRESS,
    InvalidAPIKeyError,
    MissingAPIKeyError,
    MPClient,
    NoNetworkError,
    download_mp_dos,
    split_of,
)
from crystaldos.dos import from_complete_dos, to_complete_dos


class FakeMaterialsProject:
    """Serves CompleteDos objects of real crystals; ``broken`` ids lack projections or a site; ``flaky`` fail once."""

    def __init__(self, items, broken=(), flaky=(), fail_after=None):
        self.dos = {f"mp-{1000 + i}": to_complete_dos(item.dos, item.structure, efermi=1.5) for i, item in enumerate(items)}
        for material_id, how in broken:
            cdos = self.dos[material_id]
            if how == "no projections":
                self.dos[material_id] = CompleteDos(cdos.structure, cdos, {})
            else:  # drop the last site's projection
                pdos = dict(cdos.pdos)
                pdos.pop(cdos.structure[-1])
                self.dos[material_id] = CompleteDos(cdos.structure, cdos, pdos)
        self.flaky = set(flaky)
        self.fail_after = fail_after
        self.calls = []

    def search(self, elements, max_sites, limit):
        ids = [m for m, c in self.dos.items()
               if (not max_sites or len(c.structure) <= max_sites)
               and (not elements or set(elements) <= {e.symbol for e in c.structure.composition.elements})]
        return ids[:limit or None]

    def complete_dos(self, material_id):
        self.calls.append(material_id)
        if self.fail_after is not None and len(self.calls) > self.fail_after:
            raise KeyboardInterrupt  # the user presses Ctrl-C mid-download
        if material_id in self.flaky:
            self.flaky.discard(material_id)
            raise requests.ConnectionError("connection reset by peer")
        return self.dos[material_id]


@pytest.fixture(scope="module")
def items():
    return list(crystaldos.load_dataset().split("test")[:8])


def test_download_writes_records_that_load_with_the_right_sites_and_dos(items, tmp_path):
    fake = FakeMaterialsProject(items, flaky=["mp-1002"])
    report = download_mp_dos(tmp_path / "mp", client=fake, progress=False, backoff_s=0.0, chunk_size=3)
    assert report.written == 8 and not report.skipped and report.total == 8
    assert fake.calls.count("mp-1002") == 2  # retried after the transient error
    assert sorted(p.name for p in (tmp_path / "mp").glob("mp_dos_*.jsonl.gz")) == ["mp_dos_00000.jsonl.gz", "mp_dos_00001.jsonl.gz"]

    ds = crystaldos.load_dataset(tmp_path / "mp")
    assert len(ds) == 8
    for i, item in enumerate(items):
        record = ds.by_id(f"mp-{1000 + i}")
        assert record.source == "materials-project" and record.split == split_of(record.id)
        assert [s.specie.symbol for s in record.structure] == [s.specie.symbol for s in item.structure]
        np.testing.assert_allclose(record.structure.frac_coords, item.structure.frac_coords, atol=1e-8)
        expected = from_complete_dos(fake.dos[record.id], ds.grid)
        assert record.dos.sizes == {"site": len(item.structure), "energy": ds.grid.n_points}
        np.testing.assert_allclose(record.dos.values, expected.values, atol=1e-6)
    card = (tmp_path / "mp" / "CARD.md").read_text()
    assert "CC BY 4.0" in card and "Records: 8" in card and "FakeMaterialsProject" in card


def test_a_rerun_skips_what_is_there_and_an_interruption_loses_nothing_written(items, tmp_path):
    out = tmp_path / "mp"
    with pytest.raises(KeyboardInterrupt):
        download_mp_dos(out, client=FakeMaterialsProject(items, fail_after=5), progress=False, chunk_size=4)
    first = crystaldos.load_dataset(out)
    assert len(first) == 5  # one finished chunk of 4 + one line in progress
    # A write cut off mid-line (the machine died) is dropped on the next run, not read as a record.
    with open(out / IN_PROGRESS, "a") as handle:
        handle.write('{"id": "mp-1005", "source": "materials-pro')
    fake = FakeMaterialsProject(items)
    report = download_mp_dos(out, client=fake, progress=False, chunk_size=4)
    assert fake.calls == ["mp-1005", "mp-1006", "mp-1007"] and report.already_there == 5 and report.written == 3
    ds = crystaldos.load_dataset(out)
    assert sorted(r.id for r in ds) == [f"mp-{1000 + i}" for i in range(8)]
    again = FakeMaterialsProject(items)
    assert download_mp_dos(out, client=again, progress=False).written == 0 and again.calls == []


def test_a_crash_between_sealing_a_chunk_and_deleting_the_in_progress_file_duplicates_nothing(items, tmp_path):
    out = tmp_path / "mp"
    download_mp_dos(out, client=FakeMaterialsProject(items), progress=False, chunk_size=4)
    # The machine died after the last chunk was renamed into place but before in_progress.jsonl was deleted.
    with gzip.open(out / "mp_dos_00001.jsonl.gz", "rt") as handle:
        (out / IN_PROGRESS).write_text(handle.read())
    fake = FakeMaterialsProject(items)
    report = download_mp_dos(out, client=fake, progress=False, chunk_size=4)
    assert report.written == 0 and fake.calls == []
    ids = [r.id for r in crystaldos.load_dataset(out)]
    assert sorted(ids) == [f"mp-{1000 + i}" for i in range(8)]  # each once
    assert not (out / IN_PROGRESS).exists() or not (out / IN_PROGRESS).read_text()


def test_incomplete_dos_is_skipped_and_counted_never_written(items, tmp_path):
    fake = FakeMaterialsProject(items[:4], broken=[("mp-1001", "no projections"), ("mp-1003", "missing site")])
    report = download_mp_dos(tmp_path / "mp", client=fake, progress=False)
    assert report.written == 2 and set(report.skipped) == {"mp-1001", "mp-1003"}
    assert report.skipped["mp-1001"].startswith("no atom projections")
    assert report.skipped["mp-1003"].startswith("missing site projections")
    assert sorted(r.id for r in crystaldos.load_dataset(tmp_path / "mp")) == ["mp-1000", "mp-1002"]
    manifest = json.loads((tmp_path / "mp" / "manifest.json").read_text())
    assert set(manifest["skipped"]) == {"mp-1001", "mp-1003"}
    assert "missing site projections: 1" in (tmp_path / "mp" / "CARD.md").read_text()
    # Skipped materials are not fetched again.
    again = FakeMaterialsProject(items[:4])
    download_mp_dos(tmp_path / "mp", client=again, progress=False)
    assert again.calls == []


def test_selection_by_ids_elements_sites_and_limit_and_raw_records(items, tmp_path):
    fake = FakeMaterialsProject(items)
    report = download_mp_dos(tmp_path / "ids", client=fake, material_ids=["mp-1003", "mp-1001", "mp-1003"], progress=False)
    assert report.written == 2 and fake.calls == ["mp-1003", "mp-1001"]
    small = min(len(i.structure) for i in items)
    report = download_mp_dos(tmp_path / "small", client=FakeMaterialsProject(items), max_sites=small, limit=1, progress=False)
    assert report.written == 1 and len(crystaldos.load_dataset(tmp_path / "small")[0].structure) == small
    download_mp_dos(tmp_path / "raw", client=FakeMaterialsProject(items[:2]), raw=True, progress=False, chunk_size=2)
    with gzip.open(tmp_path / "raw" / "mp_dos_00000.jsonl.gz", "rt") as handle:
        line = json.loads(handle.readline())
    assert line["dos"]["@class"] == "CompleteDos"
    assert len(crystaldos.load_dataset(tmp_path / "raw")) == 2


def test_splits_are_a_seeded_hash_near_the_fractions():
    splits = [split_of(f"mp-{i}") for i in range(20000)]
    shares = {name: splits.count(name) / len(splits) for name in ("train", "test", "val")}
    assert abs(shares["train"] - 0.6) < 0.015 and abs(shares["test"] - 0.2) < 0.015
    assert split_of("mp-149") == split_of("mp-149") and [split_of(f"mp-{i}", seed=1) for i in range(50)] != splits[:50]


def test_the_three_errors_with_the_real_client(monkeypatch, tmp_path):
    monkeypatch.delenv("MP_API_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError, match="pass --api-key KEY or set the MP_API_KEY"):
        MPClient()
    with pytest.raises(InvalidAPIKeyError, match="keys are 32 letters and digits, this one has 6"):
        MPClient("abc123")
    # This machine has no internet: the real mp-api client cannot reach the Materials Project.
    with pytest.raises(NoNetworkError, match=r"needs a network connection.*https://api\.materialsproject\.org"):
        download_mp_dos(tmp_path / "mp", api_key="a" * 32, progress=False)
    assert not any((tmp_path / "mp").glob("*.jsonl*"))
    # A key the server rejects (mp-api reports the HTTP status).
    from mp_api.client.core.client import MPRestError

    error = MPClient.translate(MPRestError("REST query returned with error status code 401 on URL https://... with message"))
    assert isinstance(error, InvalidAPIKeyError) and "rejected the API key" in str(error)


def test_the_command_line_names_the_problem_and_never_prints_the_key(tmp_path):
    key = "Z" * 32
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "crystaldos.cli", "data", "mp", "--out", str(tmp_path / "mp"), "--api-key", key,
                           "--limit", "3"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode != 0
    assert "needs a network connection to the Materials Project" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and key not in done.stderr + done.stdout
    assert all(key not in p.read_text() for p in (tmp_path / "mp").glob("*") if p.is_file())
    done = subprocess.run([sys.executable, "-m", "crystaldos.cli", "data", "mp", "--out", str(tmp_path / "mp2")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode != 0 and "no Materials Project API key" in done.stderr


def test_a_download_packs_into_netcdf_for_training(items, tmp_path):
    download_mp_dos(tmp_path / "mp", client=FakeMaterialsProject(items), progress=False)
    done = subprocess.run([sys.executable, "-m", "crystaldos.cli", "data", "pack", str(tmp_path / "mp"), "--out",
                           str(tmp_path / "mp_dos.nc")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    packed, folder = crystaldos.load_dataset(tmp_path / "mp_dos.nc"), crystaldos.load_dataset(tmp_path / "mp")
    assert [r.id for r in packed] == [r.id for r in folder] and [r.split for r in packed] == [r.split for r in folder]
    np.testing.assert_allclose(packed[3].dos.values, folder[3].dos.values, atol=1e-6)
    assert "CC BY 4.0" in packed.attrs["data_card"]
