"""The data-set build: candidates from pymatgen's prototypes, resumable labelling, assembly and card."""

import gzip
import json
from collections import Counter

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from crystaldos.data.build import assemble, assign_splits, label_chunks
from crystaldos.data.candidates import Candidate, deduplicate, prototype_structures, substituted_structures
from crystaldos.data.dataset import load_dataset
from crystaldos.dos import DosGrid
from crystaldos.labellers.xtb import MAX_Z


@pytest.fixture(scope="module")
def prototypes():
    return prototype_structures()


def test_prototypes_are_ordered_small_and_labellable(prototypes):
    assert len(prototypes) > 150
    for c in prototypes:
        assert c.source == "prototype" and c.structure.is_ordered and len(c.structure) <= 12
        assert all(1 <= el.Z <= MAX_Z for el in c.structure.composition.elements)
    assert len({c.id for c in prototypes}) == len(prototypes)


def test_substitutions_change_chemistry_and_rescale_volume(prototypes):
    parents = [c for c in prototypes if c.structure.composition.reduced_formula in ("NaCl", "ZnS", "Cu")][:3]
    subs = substituted_structures(parents, per_prototype=5)
    assert subs
    by_id = {p.id: p for p in parents}
    for s in subs:
        parent = by_id[s.parent]
        assert s.structure.composition.reduced_formula != parent.structure.composition.reduced_formula
        assert len(s.structure) == len(parent.structure)
        assert "volume" in s.note and "->" in s.note
    # Same prototype given twice: the duplicate is dropped.
    assert len(deduplicate(parents + parents)) == len(parents)


def test_splits_are_seeded_and_proportional():
    a, b = assign_splits(1001, seed=0), assign_splits(1001, seed=0)
    assert (a == b).all() and not (a == assign_splits(1001, seed=1)).all()
    counts = Counter(a.tolist())
    assert counts["train"] == 601 and counts["test"] == 200 and counts["val"] == 200


def _tiny_candidates(work_dir):
    rocksalt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).get_primitive_structure()
    kcl = rocksalt.copy()
    kcl.replace_species({"Na": "K"})
    kcl.scale_lattice(rocksalt.volume * 1.3)
    bad = Structure(Lattice.cubic(3.5), ["U"], [[0, 0, 0]])  # outside GFN1-xTB: must be recorded as failed
    candidates = [
        Candidate("p0", rocksalt, "prototype", "p0", "test"),
        Candidate("p0-s00", kcl, "substituted", "p0", "Na->K"),
        Candidate("p1", bad, "prototype", "p1", "test"),
    ]
    work_dir.mkdir(parents=True, exist_ok=True)
    with gzip.open(work_dir / "candidates.json.gz", "wt") as handle:
        json.dump([c.to_dict() for c in candidates], handle)


def test_label_resume_and_assemble(tmp_path):
    work = tmp_path / "work"
    _tiny_candidates(work)
    grid = DosGrid(n_points=128)
    assert label_chunks(work, grid, jobs=1, chunk_size=2) == 0  # none left
    chunks = sorted((work / "labels").glob("chunk_*"))
    assert [c.name for c in chunks] == ["chunk_0000.errors.json", "chunk_0000.nc", "chunk_0001.errors.json"]
    errors = json.loads((work / "labels" / "chunk_0001.errors.json").read_text())["errors"]
    assert "UnsupportedElementError" in errors["p1"]
    # Resuming does no work again: finished chunks stay byte-identical.
    before = (work / "labels" / "chunk_0000.nc").read_bytes()
    label_chunks(work, grid, jobs=1, chunk_size=2)
    assert (work / "labels" / "chunk_0000.nc").read_bytes() == before

    out = assemble(work, tmp_path / "pkg" / "data.nc", seed=0, command="python -m crystaldos.data.build --test")
    ds = load_dataset(out)
    assert [r.id for r in ds] == ["p0", "p0-s00"] and ds.grid == grid
    assert int(ds.attrs["n_failed"]) == 1 and "UnsupportedElementError" in ds.attrs["failures_by_reason"]
    assert ds.by_id("p0-s00").properties["parent"] == "p0"
    assert np.isfinite(ds.by_id("p0").properties["band_gap_eV"])
    card = (tmp_path / "pkg" / "CARD.md").read_text()
    assert "| structures | 2 (4 sites) |" in card and "python -m crystaldos.data.build --test" in card
    # A converged-labeller card quotes the labeller's measurements (panel, DFT, convergence, cost, energy window).
    for section in ("### Physics panel", "### Against DFT", "### Convergence on crystals", "### Cost", "### Energy window"):
        assert section in card
    assert "| Si        | insulator  |" in card
    assert (tmp_path / "pkg" / "card.png").stat().st_size > 10_000
    # A preview of some chunks: chunk 1 alone holds only the failure.
    preview = load_dataset(assemble(work, tmp_path / "preview" / "data.nc", seed=0, command="preview", chunks=range(0, 1)))
    assert [r.id for r in preview] == ["p0", "p0-s00"] and int(preview.attrs["n_failed"]) == 0
    with pytest.raises(FileNotFoundError, match="numbered 2-3"):
        assemble(work, tmp_path / "none.nc", seed=0, command="", chunks=range(2, 4))
    # A label an older labeller made with the dropped 10000 K retry is left out at assembly, named as a failure.
    import xarray as xr

    chunk = work / "labels" / "chunk_0000.nc"
    with xr.open_dataset(chunk) as stored:
        old = stored.load()
    old["scf_temperature_K"] = old["scf_temperature_K"].copy(data=[3000.0, 10000.0])
    old.to_netcdf(chunk)
    dropped = load_dataset(assemble(work, tmp_path / "dropped" / "data.nc", seed=0, command="dropped"))
    assert [r.id for r in dropped] == ["p0"] and int(dropped.attrs["n_failed"]) == 2
    assert json.loads(dropped.attrs["failures_by_reason"]) == {"UnsupportedElementError": 1, "SCFConvergenceError": 1}
