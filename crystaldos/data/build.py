"""Build the embedded default data set (resumable, in chunks).

Regenerate the data file of format 2 with::

    python -m crystaldos.data.build --work-dir data/default-v2 --chunk-size 40 --jobs 2

Stages (each skipped when its output exists in ``--work-dir``):

1. ``candidates.json.gz``: prototypes + substitutions, deduplicated, in a seeded
   order (prototypes first, then substitutions round robin over their parents), see
   :mod:`crystaldos.data.candidates`. ``--target N`` raised after labelling began
   appends candidates (the chunks labelled so far keep theirs).
2. ``labels/chunk_NNNN.nc``: atom-level DOS from the converged labeller
   (:class:`crystaldos.labellers.XTBLabeller`) of each chunk of candidates, with
   ``chunk_NNNN.errors.json`` for the ones that failed. Interrupt at any time; a
   rerun continues with the first missing chunk.
3. The final file (``--out``, default the packaged
   ``crystaldos/data/default/crystaldos_default.nc``): every labelled record,
   a seeded 0.6/0.2/0.2 train/test/val split, provenance attributes, plus the
   data card ``CARD.md`` and ``card.png`` beside it.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from crystaldos.atomic_files import atomic_write, write_text_atomic
from crystaldos.dos import DosGrid

DEFAULT_PATH = Path(__file__).resolve().parent / "default" / "crystaldos_default.nc"
#: Candidates of the format-2 build: about 8,000 labelled crystals at its ~85 % yield.
DEFAULT_TARGET = 9600
SPLIT_FRACTIONS = {"train": 0.6, "test": 0.2, "val": 0.2}
#: The labelling grid of the rebuild (``DosGrid()``'s default): the format-1 grid's spacing (20/255 eV), extended
#: down by 191 points.
WIDE_GRID = DosGrid()


def make_candidates(
    work_dir: Path,
    seed: int,
    max_sites: int = 20,
    per_prototype: int = 24,
    target: int | None = DEFAULT_TARGET,
    cache_dir: Path | None = Path("build/cache"),
) -> Path:
    """Stage 1: write ``candidates.json.gz``.

    Real prototypes from pymatgen and (with ``cache_dir``) the AFLOW Encyclopedia, their
    substitutions, deduplicated; all prototypes plus a prototype-balanced seeded sample of
    substitutions, ``target`` in all (None: every one). Drop counts go to ``candidates.stats.json``.

    A no-op when the file already holds ``target`` candidates or more. With fewer (a top-up: the target
    raised after labelling began), the generation is rerun: the seeded selection of a larger target
    starts with that of the smaller one, so the file's candidates must come first in it, else
    :class:`CandidatesMismatchError` names the first that differs (e.g. another pymatgen moved a
    substitution). The new candidates are appended: labelled chunks keep theirs, new chunks follow.
    """
    from crystaldos.data.candidates import Candidate, deduplicate, real_prototypes, select, substituted_structures

    path = work_dir / "candidates.json.gz"
    existing = None
    if path.exists():
        with gzip.open(path, "rt") as handle:
            saved_candidates = json.load(handle)
        if target is not None and len(saved_candidates) >= target:  # a no-op builds no Structure objects
            return path
        existing = [Candidate.from_dict(d) for d in saved_candidates]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cached = work_dir / "prototypes.json.gz"  # the slow part (primitive cells of ~1,400 crystals)
        if cached.exists():
            with gzip.open(cached, "rt") as handle:
                saved = json.load(handle)
            prototypes, dropped = [Candidate.from_dict(d) for d in saved["prototypes"]], saved["dropped"]
        else:
            prototypes, dropped = real_prototypes(max_sites, cache_dir)
            prototypes = deduplicate(prototypes)
            with atomic_write(cached) as tmp, gzip.open(tmp, "wt") as handle:
                json.dump({"prototypes": [c.to_dict() for c in prototypes], "dropped": dropped}, handle)
        substituted = substituted_structures(prototypes, per_prototype)
        unique = deduplicate(prototypes + substituted)
    ordered = select(unique, target or len(unique), seed)
    if existing is not None:
        _check_prefix(existing, ordered)
        if len(ordered) == len(existing):
            return path  # every candidate there is is already in the file
    stats = {
        "prototypes_dropped": dropped,
        "prototypes": len(prototypes),
        "substitutions_generated": len(substituted),
        "unique": len(unique),
        "selected": len(ordered),
        **({"topped_up_from": len(existing)} if existing is not None else {}),
        "by_origin": {o: sum(c.origin == o for c in ordered) for o in sorted({c.origin for c in ordered})},
    }
    write_text_atomic(work_dir / "candidates.stats.json", json.dumps(stats, indent=1))
    with atomic_write(path) as tmp, gzip.open(tmp, "wt") as handle:
        json.dump([c.to_dict() for c in ordered], handle)
    return path


class CandidatesMismatchError(RuntimeError):
    """A rerun of the candidate generation does not reproduce the candidates already in the work folder."""


def _check_prefix(existing: list, regenerated: list) -> None:
    """Refuse a top-up unless the regenerated selection starts with the file's candidates, same ids and cells."""
    for i, (old, new) in enumerate(zip(existing, regenerated)):
        same = old.id == new.id and len(old.structure) == len(new.structure) and np.allclose(
            old.structure.lattice.matrix, new.structure.lattice.matrix, atol=1e-6)
        if not same:
            raise CandidatesMismatchError(
                f"candidate {i} of the work folder is {old.id} ({old.structure.composition.reduced_formula}), the rerun "
                f"gives {new.id} ({new.structure.composition.reduced_formula}): the generation changed (another pymatgen "
                "or smact?), so a top-up would not continue this build; keep the candidate list as it is")
    if len(regenerated) < len(existing):
        raise CandidatesMismatchError(f"the rerun gives {len(regenerated)} candidates, fewer than the {len(existing)} in the work folder")


SPLITS_FILE = "splits.json"


def reorder_candidates(work_dir: Path, source: Path, seed: int, fractions: dict[str, float] = SPLIT_FRACTIONS) -> Path:
    """Stage 1 of an equilibrium build: another build's candidates (``source``, a ``candidates.json.gz``) in rounds
    over their prototype families, and the family split fixed before any crystal is labelled (``splits.json``).

    Every prefix of finished chunks is then a balanced, family-split data set. A no-op when the work folder has
    its candidates already.
    """
    from crystaldos.data.candidates import Candidate, order_by_family, split_families

    path = work_dir / "candidates.json.gz"
    if path.exists():
        return path
    with gzip.open(source, "rt") as handle:
        candidates = [Candidate.from_dict(d) for d in json.load(handle)]
    ordered = order_by_family(candidates, seed)
    assignment = split_families(ordered, fractions, seed)
    work_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(work_dir / SPLITS_FILE, json.dumps(
        {"kind": "family", "seed": seed, "fractions": fractions, "families": assignment}, indent=0))
    stats = {"source": str(source), "candidates": len(ordered), "families": len(assignment),
             "families_by_split": {s: sum(v == s for v in assignment.values()) for s in fractions}}
    write_text_atomic(work_dir / "candidates.stats.json", json.dumps(stats, indent=1))
    with atomic_write(path) as tmp, gzip.open(tmp, "wt") as handle:
        json.dump([c.to_dict() for c in ordered], handle)
    return path


def top_up_candidates(work_dir: Path, prototypes_from: Path, target: int, seed: int, per_prototype: int = 48) -> Path:
    """Append new substitutions to an equilibrium build's candidates until it holds ``target`` (labelled chunks keep
    theirs: the file's candidates stay its prefix).

    The prototypes are another build's (``prototypes_from/prototypes.json.gz``); their substitutions are generated
    again with ``per_prototype`` children each (more than the source build took), and a child is new when its id is
    not in the file and no candidate there with its formula matches it (StructureMatcher). The new ones go in rounds
    over their families (seed ``seed + 1``), each family keeping its split from ``splits.json``.
    A no-op when the file already holds ``target`` candidates.
    """
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from crystaldos.data.candidates import Candidate, deduplicate, order_by_family, substituted_structures

    path = work_dir / "candidates.json.gz"
    existing = load_candidates(work_dir)
    if len(existing) >= target:
        return path
    with gzip.open(prototypes_from / "prototypes.json.gz", "rt") as handle:
        prototypes = [Candidate.from_dict(d) for d in json.load(handle)["prototypes"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        children = deduplicate(substituted_structures(prototypes, per_prototype))
    known = {c.id for c in existing}
    by_formula: dict[str, list] = {}
    for c in existing:
        by_formula.setdefault(c.structure.composition.reduced_formula, []).append(c.structure)
    matcher = StructureMatcher()
    new = [c for c in children if c.id not in known and not any(
        matcher.fit(c.structure, other) for other in by_formula.get(c.structure.composition.reduced_formula, []))]
    added = _balanced_by_split(work_dir, existing, order_by_family(new, seed + 1), target)
    stats_path = work_dir / "candidates.stats.json"
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    # ``topped_up_from`` stays the length of the list the family split was fixed on (the first top-up's start);
    # each top-up is recorded in ``top_ups``.
    top_ups = stats.get("top_ups", [])
    top_ups.append({"from": len(existing), "prototypes_from": str(prototypes_from), "per_prototype": per_prototype,
                    "new_unique_substitutions": len(new), "added": len(added)})
    stats |= {"candidates": len(existing) + len(added), "topped_up_from": stats.get("topped_up_from", len(existing)),
              "top_ups": top_ups}
    write_text_atomic(stats_path, json.dumps(stats, indent=1))
    with atomic_write(path) as tmp, gzip.open(tmp, "wt") as handle:
        json.dump([c.to_dict() for c in existing + added], handle)
    return path


def _balanced_by_split(work_dir: Path, existing: list, ordered: list, target: int) -> list:
    """The first of ``ordered`` (new candidates, in build order) that bring the whole list to ``target`` with each
    split as near its fraction as the pool allows: families with many substitutions (more often in train) would
    otherwise tilt the split. Without a fixed split (no :data:`SPLITS_FILE`), simply the first ones."""
    from collections import Counter

    from crystaldos.data.candidates import family_of, split_of_family

    n_add = target - len(existing)
    splits_file = work_dir / SPLITS_FILE
    if not splits_file.exists():
        return ordered[:n_add]
    table = json.loads(splits_file.read_text())
    families, fractions = table["families"], table["fractions"]
    split = {id(c): split_of_family(family_of(c), families, fractions) for c in ordered}
    have = Counter(split_of_family(family_of(c), families, fractions) for c in existing)
    want = {name: max(0, round(fraction * target) - have[name]) for name, fraction in fractions.items()}
    chosen = set()
    for c in ordered:
        if want[split[id(c)]] > 0:
            want[split[id(c)]] -= 1
            chosen.add(id(c))
    for c in ordered:  # a split whose pool ran short: the rest in build order
        if len(chosen) >= n_add:
            break
        chosen.add(id(c))
    return [c for c in ordered if id(c) in chosen][:n_add]


def load_candidates(work_dir: Path):
    from crystaldos.data.candidates import Candidate

    with gzip.open(work_dir / "candidates.json.gz", "rt") as handle:
        return [Candidate.from_dict(d) for d in json.load(handle)]


class ChunkMismatchError(RuntimeError):
    """A finished chunk does not hold the candidates its number gives at this chunk size."""


def _check_finished_chunks(out_dir: Path, candidates: list, chunk_size: int, finished: list[int], limit: int | None) -> None:
    """Every finished chunk must hold its own candidates (labelled or failed), and all of those the run asks for.

    Catches a rerun with another ``--chunk-size`` (chunk k would be skipped while holding other crystals)
    and a chunk finished short (``--limit``, or before a top-up) that would otherwise never be completed.
    """
    import h5py  # reads the ids alone: 100x faster than opening each chunk with xarray

    chunks = {}  # k -> (its candidates at this chunk size, the ids it holds)
    for k in finished:
        path = _chunk_path(out_dir, k)
        done = set(json.loads(path.with_suffix(".errors.json").read_text())["errors"])
        if path.exists():
            with h5py.File(path, "r") as h5:
                done |= {i.decode() if isinstance(i, bytes) else str(i) for i in h5["structure_id"][:]}
        chunks[k] = ([c.id for c in candidates[k * chunk_size : (k + 1) * chunk_size]], done)
    for k, (own, done) in chunks.items():  # first: another chunk size (the cause of short chunks too, then)
        if not done <= set(own):
            raise ChunkMismatchError(
                f"{_chunk_path(out_dir, k).name} holds crystals that are not chunk {k}'s at chunk size {chunk_size} (e.g. "
                f"{sorted(done - set(own))[0]}): label with the chunk size the build started with")
    for k, (own, done) in chunks.items():
        wanted = set(own[: None if limit is None else max(0, limit - k * chunk_size)])
        if not wanted <= done:
            path = _chunk_path(out_dir, k)
            raise ChunkMismatchError(
                f"{path.name} was finished without {len(wanted - done)} of its candidates (e.g. {sorted(wanted - done)[0]}; "
                f"labelled with --limit, or before the candidate list grew): delete {path.stem}.* to label chunk {k} whole")


STOP_FILE = "STOP"


def label_chunks(
    work_dir: Path,
    grid: DosGrid,
    jobs: int = 2,
    chunk_size: int = 50,
    limit: int | None = None,
    labeller=None,
    executor=None,
    chunks: range | None = None,
    relaxer=None,
    hull_screen: bool = True,
) -> int:
    """Stage 2: label candidates chunk by chunk; finished chunks are skipped. Returns the chunks left (after a STOP).

    A chunk is finished when its ``chunk_NNNN.errors.json`` exists; it is written after the
    chunk's netCDF file, so a run killed at any moment loses at most the chunks in flight. Work
    flows across chunk boundaries (the next chunk is queued while the last crystals of the
    current one finish), so no worker idles behind a chunk's slowest crystal. Create a file
    ``STOP`` in ``work_dir`` to finish the chunks in flight and stop cleanly (it is removed).

    Args:
        labeller: default: ``XTBLabeller(grid=grid)`` (the converged labeller).
        executor: a ``concurrent.futures``-style executor (e.g. a ``dask.distributed.Client``)
            to spread the work over many machines; default a local pool of ``jobs`` processes
            kept for the whole run.
        chunks: label only these chunk indices (e.g. another machine takes ``range(100, 140)``); the
            chunk size must then be the same everywhere, since chunk k holds candidates k*size ... (k+1)*size-1.
        relaxer: a :class:`crystaldos.relax.Relaxer`: each crystal is relaxed first (in the same worker) and the
            relaxed crystal is labelled and stored; crystals whose relaxation is refused are counted by cause.
        hull_screen: with a relaxer, a relaxed crystal already more than the cut above the hull of the crystals
            labelled before it (and of the cached elemental references) is not labelled
            (:class:`crystaldos.data.stability.PartialHull`): the assembly would leave it out anyway.
    """
    from collections import deque

    from tqdm.auto import tqdm

    from crystaldos.labellers.xtb import XTBLabeller, local_pool

    all_candidates = load_candidates(work_dir)
    candidates = all_candidates[:limit]
    labeller = labeller or XTBLabeller(grid=grid)
    out_dir = work_dir / "labels"
    out_dir.mkdir(parents=True, exist_ok=True)
    stop_file = work_dir / STOP_FILE
    n_chunks = (len(candidates) + chunk_size - 1) // chunk_size
    finished = sorted(_chunk_number(p) for p in out_dir.glob("chunk_*.errors.json"))  # also those beyond this run's list
    _check_finished_chunks(out_dir, all_candidates, chunk_size, finished, limit)
    todo = [k for k in range(n_chunks) if (chunks is None or k in chunks) and k not in finished]
    pool = local_pool(jobs) if executor is None and jobs > 1 else None
    runner = executor or pool
    in_flight: deque = deque()
    hull = _partial_hull(work_dir, out_dir, finished) if relaxer is not None and hull_screen else None
    if hull is not None:
        print(f"hull screen: {len(hull.energies)} labelled crystals, references for {len(hull.references)} elements")

    def queue_next() -> None:
        # A chunk finished meanwhile elsewhere (another machine's, unpacked here) is not labelled again.
        while todo and _chunk_path(out_dir, todo[0]).with_suffix(".errors.json").exists():
            todo.pop(0)
            bar.update()
        if not todo or stop_file.exists():
            return
        k = todo.pop(0)
        chunk = candidates[k * chunk_size : (k + 1) * chunk_size]
        structures = [c.structure for c in chunk]
        screens = [hull.screen(s.composition) if hull is not None else None for s in structures]
        if runner is None:  # one process: label when collected, so chunks are written in turn
            in_flight.append((k, chunk, [_Deferred(labeller, s, relaxer, screen) for s, screen in zip(structures, screens)]))
        elif relaxer is not None:
            from crystaldos.relax import relax_and_label

            in_flight.append((k, chunk, [runner.submit(relax_and_label, relaxer, labeller, s, screen)
                                         for s, screen in zip(structures, screens)]))
        else:
            in_flight.append((k, chunk, labeller.submit_many(structures, runner)))

    bar = tqdm(total=len(todo), desc="chunks")
    try:
        queue_next()
        queue_next()  # one chunk ahead keeps every worker busy across the boundary
        while in_flight:
            k, chunk, futures = in_flight.popleft()
            results = [f.result() for f in futures]
            _write_chunk(_chunk_path(out_dir, k), chunk, results, labeller, grid, relaxer)
            if hull is not None:  # the next chunks are screened against these crystals too
                for result in results:
                    if isinstance(result, tuple):  # relaxed and labelled: in the set's phase diagram
                        hull.add(result[0].structure.composition, result[0].energy_per_atom)
            bar.update()
            queue_next()
    finally:
        bar.close()
        for _, _, futures in in_flight:
            for future in futures:
                future.cancel()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    if stop_file.exists():
        stop_file.unlink()
        print(f"stopped on {stop_file}; {len(todo)} chunks left")
    return len(todo)


def _partial_hull(work_dir: Path, out_dir: Path, finished: list[int]):
    """The :class:`~crystaldos.data.stability.PartialHull` of the cached elemental references and the relaxed crystals
    of the finished chunks."""
    from crystaldos.data.stability import PartialHull
    from crystaldos.data.store import PackedRecords, open_netcdf

    hull = PartialHull.from_cache(work_dir / "elemental_references.json")
    for k in finished:
        path = _chunk_path(out_dir, k)
        if not path.exists():  # a chunk without a labelled crystal
            continue
        ds = open_netcdf(path)
        if "relax_energy_per_atom_eV" not in ds:
            continue
        records = PackedRecords(ds)
        for i, energy in enumerate(ds["relax_energy_per_atom_eV"].values):
            hull.add(records.structure(i).composition, float(energy))
    return hull


class _Deferred:
    """A labelling task run in this process when its ``result`` is asked for (the one-process path)."""

    def __init__(self, labeller, structure, relaxer=None, screen=None) -> None:
        self.labeller, self.structure, self.relaxer, self.screen = labeller, structure, relaxer, screen

    def result(self):
        from crystaldos.labellers.xtb import label_or_error

        if self.relaxer is not None:
            from crystaldos.relax import relax_and_label

            return relax_and_label(self.relaxer, self.labeller, self.structure, self.screen)
        return label_or_error(self.labeller, self.structure)

    def cancel(self) -> bool:
        return False


def _chunk_path(out_dir: Path, k: int) -> Path:
    return out_dir / f"chunk_{k:04d}.nc"


def _chunk_number(path: Path) -> int:
    """k of a chunk's file (``chunk_0042.nc`` or ``chunk_0042.errors.json`` -> 42), the inverse of :func:`_chunk_path`."""
    return int(path.name.removeprefix("chunk_").split(".")[0])


def _write_chunk(path: Path, chunk: list, results: list, labeller, grid: DosGrid, relaxer=None) -> None:
    """Write a chunk's labelled crystals (netCDF, atomic) and then its errors file, the marker that it is done.

    ``results``: per candidate its DOS, a ``(RelaxResult, DOS)`` pair (the relaxed crystal is stored), or the error.
    """
    from crystaldos.data.records import CrystalDOS
    from crystaldos.data.store import write_netcdf

    records, errors, seconds = [], {}, {}
    for candidate, result in zip(chunk, results):
        if isinstance(result, Exception):  # LabellingError or RelaxationError
            errors[candidate.id] = f"{type(result).__name__}: {result}"
            if hasattr(result, "seconds"):  # what the failure cost (a kept crystal's cost is in its properties)
                seconds[candidate.id] = round(result.seconds, 2)
            continue
        structure, relaxation = candidate.structure, None
        if isinstance(result, tuple):
            relaxation, result = result
            structure = relaxation.structure
        properties = {
            name: float(result.attrs[name])
            for name in ("band_gap_eV", "efermi_eV", "energy_per_atom_eV", "wall_time_s", "supercell_atoms",
                         "scf_temperature_K", "scf_damping",  # which SCF retry converged (chunks 0-4 predate these)
                         "equivalent_site_spread")  # removed by the orbit average (chunks before session 17 lack it)
            if name in result.attrs
        }
        if relaxation is not None:
            properties.update(relaxation.properties())
        properties.update(parent=candidate.parent, note=candidate.note, prototype=candidate.prototype, origin=candidate.origin)
        records.append(CrystalDOS(candidate.id, structure, result, source=candidate.source, properties=properties))
    if records:
        attrs = labeller.describe() | (relaxer.describe() if relaxer is not None else {})
        write_netcdf(records, path, grid, attrs, dos_storage="float16")  # atomic (tmp file + rename)
    done = {"errors": errors} | ({"failed_seconds": seconds} if seconds else {})
    write_text_atomic(path.with_suffix(".errors.json"), json.dumps(done, indent=1))  # the done marker


def assign_splits(n: int, seed: int, fractions: dict[str, float] = SPLIT_FRACTIONS) -> np.ndarray:
    """Seeded split labels for ``n`` items in the given proportions (train/test/val)."""
    rng = np.random.default_rng(seed)
    names = list(fractions)
    counts = [int(round(fractions[name] * n)) for name in names[:-1]]
    counts.append(n - sum(counts))
    labels = np.concatenate([[name] * c for name, c in zip(names, counts)])
    return labels[rng.permutation(n)]


def assemble(work_dir: Path, out: Path, seed: int, command: str, chunks: range | None = None) -> Path:
    """Stage 3: merge the chunks (all, or those numbered in ``chunks``: a preview of a build under way),
    split, write the data file and its card."""
    from crystaldos.data.card import write_card
    from crystaldos.data.store import open_netcdf, write_netcdf, xarray_to_records

    labels = work_dir / "labels"

    def selected(suffix: str) -> list[Path]:
        if chunks is None:
            return sorted(labels.glob(f"chunk_*{suffix}"))
        return [p for p in (_chunk_path(labels, k).with_suffix(suffix) for k in chunks) if p.exists()]

    chunk_files = selected(".nc")
    if not chunk_files:
        raise FileNotFoundError(f"no labelled chunks{'' if chunks is None else f' numbered {chunks.start}-{chunks.stop - 1}'} "
                                f"in {labels}; run the labelling stage first")
    from crystaldos.labellers.symmetry import SYMPREC
    from crystaldos.labellers.xtb import LabellingError, XTBLabeller

    errors: dict[str, str] = {}
    for f in selected(".errors.json"):
        errors.update(json.loads(f.read_text())["errors"])
    # Chunks labelled before a check was added still pass through it here.
    labeller = XTBLabeller()
    records = []
    for chunk in map(open_netcdf, chunk_files):
        converged = chunk.attrs.get("labeller_sampling", "gamma") == "kmesh"
        for record in xarray_to_records(chunk):
            try:
                labeller.check_spectrum(record.structure, record.properties["band_gap_eV"])
                labeller.check_scf_settings(record.properties)
                if converged:  # labels made before the labeller averaged over equivalent sites; idempotent after
                    record.dos = labeller.symmetrise(record.structure, record.dos)
                    # A label averaged when it was made recorded the spread it had then; this one would be 0.
                    recorded = record.properties.get("equivalent_site_spread", np.nan)
                    if not np.isfinite(recorded):  # absent (NaN where other records of the file have it)
                        record.properties["equivalent_site_spread"] = float(record.dos.attrs["equivalent_site_spread"])
                records.append(record)
            except LabellingError as err:
                errors[record.id] = f"{type(err).__name__}: {err}"
    first = open_netcdf(chunk_files[0])
    grid = DosGrid.from_attrs(first.attrs)
    split_kind = assign_record_splits(records, work_dir, seed)
    hull_text = add_hull_energies(records, work_dir)
    records = drop_above_hull(records, errors)
    from crystaldos import __version__

    # Settings of the newest chunk: it carries every check the labeller has (older ones may lack some).
    attrs = {k: v for k, v in open_netcdf(chunk_files[-1]).attrs.items() if k.startswith(("labeller_", "relax_"))}
    method = attrs.get("labeller_method", "GFN1-xTB")
    if attrs.get("labeller_sampling", "gamma") == "kmesh":
        # The assembly's own symmetry settings, which chunks labelled before them lack.
        attrs.update(labeller_max_equivalent_spread=labeller.max_equivalent_spread, labeller_symmetry_symprec=SYMPREC)
        dos_text = (f"tblite {method}, Bloch sums of two-centre matrices on a k-mesh of {attrs.get('labeller_k_density', '?')} "
                    "points per 1/Å with the SCF potential of a Gamma-point supercell of the primitive cell, Mulliken projection, "
                    "averaged over symmetry-equivalent sites")
    else:
        dos_text = f"tblite {method}, Gamma-point supercells, Mulliken projection"
    origins = sorted({str(r.properties.get("origin", "")) for r in records} - {""})
    from crystaldos.data.sources import SOURCE_CREDITS

    structures_text = "; ".join(SOURCE_CREDITS.get(o, o) for o in origins) or (
        "pymatgen's AFLOW prototype library and util/structures")
    attrs.update(
        title=f"crystaldos embedded default: atom-level {method} DOS of real prototype crystals and substitutions",
        build_command=command,
        seed=seed,
        split_fractions=json.dumps(SPLIT_FRACTIONS),
        split_kind=split_kind,
        n_candidates=len(records) + len(errors),  # attempted so far (all of them once every chunk is labelled)
        n_candidates_total=len(load_candidates(work_dir)),
        n_failed=len(errors),
        failures_by_reason=json.dumps(count_reasons(errors)),
        crystaldos_version=__version__,
        created=time.strftime("%Y-%m-%d"),
        provenance=(
            f"structures: {structures_text} (source=prototype), and their substitutions with DLSVolumePredictor volumes "
            f"(source=substituted; the parent's id and AFLOW label in parent and prototype)"
            + (f"; relaxed (positions and cell) with {attrs['relax_model']} (Deng et al., Nat. Mach. Intell. 5, 1031 (2023); "
               f"weights from the chgnet wheel, BSD-3-Clause) to {attrs['relax_fmax']} eV/Å"
               if "relax_model" in attrs else "")
            + hull_text
            + f"; DOS: {dos_text}"
        ),
        origins=json.dumps(origins),
    )
    path = write_netcdf(records, out, grid, attrs, dos_storage="float16")
    write_card(open_netcdf(path), out.parent, path)
    return path


def add_hull_energies(records: list, work_dir: Path) -> str:
    """Give every relaxed record its energy above the hull of the set's own phase diagram (``e_above_hull_eV``,
    :mod:`crystaldos.data.stability`; elemental references cached in ``elemental_references.json``). Returns a
    sentence for the provenance ("" when the records were not relaxed)."""
    energies = [r.properties.get("relax_energy_per_atom_eV") for r in records]
    if not records or any(e is None or not np.isfinite(e) for e in energies):
        return ""
    from crystaldos.data.stability import elemental_references, energies_above_hull, lowest_elemental_energies
    from crystaldos.relax import Relaxer

    compositions = [r.structure.composition for r in records]
    elements = sorted({el.symbol for c in compositions for el in c.elements})
    known = lowest_elemental_energies(compositions, energies)
    references = elemental_references(elements, Relaxer(), work_dir / "elemental_references.json", known)
    for record, e_hull in zip(records, energies_above_hull(compositions, energies, references)):
        record.properties["e_above_hull_eV"] = float(e_hull)
    from crystaldos.data.stability import MAX_E_ABOVE_HULL

    return ("; energy above the hull of the set's own phase diagram (its relaxed energies and the lowest of simple "
            f"elemental crystals per element) in e_above_hull_eV, crystals above {MAX_E_ABOVE_HULL} eV/atom left out")


def drop_above_hull(records: list, errors: dict[str, str]) -> list:
    """The records within :data:`~crystaldos.data.stability.MAX_E_ABOVE_HULL` of the hull (all of them when they
    carry no hull energy); the others are counted in ``errors`` by id."""
    from crystaldos.data.stability import MAX_E_ABOVE_HULL

    kept = []
    for record in records:
        e_hull = record.properties.get("e_above_hull_eV")
        if e_hull is not None and e_hull > MAX_E_ABOVE_HULL:
            errors[record.id] = (f"AboveHullError: {record.structure.composition.reduced_formula} lies {e_hull:.3f} eV/atom "
                                 f"above the set's hull (cut {MAX_E_ABOVE_HULL} eV/atom)")
        else:
            kept.append(record)
    return kept


def assign_record_splits(records: list, work_dir: Path, seed: int) -> str:
    """Set each record's split: by prototype family from the work folder's ``splits.json`` when it has one (whole
    families in val and test), else a seeded random split over crystals. Returns the split kind ("family"/"random")."""
    splits_file = work_dir / SPLITS_FILE
    if not splits_file.exists():
        for record, split in zip(records, assign_splits(len(records), seed)):
            record.split = str(split)
        return "random"
    from crystaldos.data.candidates import split_of_family

    table = json.loads(splits_file.read_text())
    for record in records:
        family = str(record.properties.get("prototype") or "") or str(record.properties.get("parent") or "") or record.id
        record.split = split_of_family(family, table["families"], table["fractions"])
    return table["kind"]


def count_reasons(errors: dict[str, str]) -> dict[str, int]:
    """How many messages per reason, the text before the first colon ("SCFConvergenceError: ..." -> SCFConvergenceError)."""
    counts: dict[str, int] = {}
    for message in errors.values():
        reason = message.split(":")[0]
        counts[reason] = counts.get(reason, 0) + 1
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m crystaldos.data.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=Path("build/default"), help="intermediate files (resumable)")
    parser.add_argument("--out", type=Path, default=DEFAULT_PATH, help="final netCDF file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="labelling worker processes")
    parser.add_argument("--chunk-size", type=int, default=50)
    parser.add_argument("--limit", type=int, default=None, help="label only the first N candidates")
    parser.add_argument("--chunks", type=str, default=None, metavar="FIRST:LAST",
                        help="label (or assemble) only chunks FIRST ... LAST (inclusive), e.g. on a second machine or "
                             "for a preview of a build under way")
    parser.add_argument("--target", type=int, default=DEFAULT_TARGET,
                        help="candidates in all; raised after labelling began, it appends candidates (a top-up)")
    parser.add_argument("--stage", choices=["all", "candidates", "label", "assemble"], default="all")
    parser.add_argument("--relax", action="store_true",
                        help="relax every crystal with CHGNet (crystaldos.relax) before labelling it; store the relaxed crystal")
    parser.add_argument("--no-hull-screen", dest="hull_screen", action="store_false",
                        help="with --relax: label every relaxed crystal, also those already above the hull cut of the "
                             "crystals labelled before them (the assembly leaves them out either way)")
    parser.add_argument("--top-up-from", type=Path, default=None, metavar="WORK_DIR",
                        help="with --candidates-from: append new substitutions of WORK_DIR's prototypes until the "
                             "candidates number --target (labelled chunks keep theirs)")
    parser.add_argument("--per-prototype", type=int, default=48, help="substitutions per prototype of a top-up")
    parser.add_argument("--candidates-from", type=Path, default=None, metavar="CANDIDATES_JSON_GZ",
                        help="take another build's candidates, in rounds over prototype families, with whole families "
                             "held out in val and test (the split is fixed before labelling, in splits.json)")
    # Labels are computed on a window that also keeps the deep valence levels, -25 ... +10 eV at the
    # spacing of the standard -10 ... +10 eV / 256-point grid, so that either window can be cut from
    # them exactly when the file is assembled (benchmarks/forward_model/element_identification.py decides).
    parser.add_argument("--e-min", type=float, default=WIDE_GRID.e_min)
    parser.add_argument("--e-max", type=float, default=WIDE_GRID.e_max)
    parser.add_argument("--n-points", type=int, default=WIDE_GRID.n_points)
    parser.add_argument("--sigma", type=float, default=DosGrid.sigma)
    args = parser.parse_args(argv)
    grid = DosGrid(e_min=args.e_min, e_max=args.e_max, n_points=args.n_points, sigma=args.sigma)
    command = "python -m crystaldos.data.build " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    if args.stage in ("all", "candidates"):
        if args.candidates_from is not None:
            print(f"candidates: {reorder_candidates(args.work_dir, args.candidates_from, args.seed)}")
            if args.top_up_from is not None:
                path = top_up_candidates(args.work_dir, args.top_up_from, args.target, args.seed, args.per_prototype)
                print(f"topped up: {path} ({len(load_candidates(args.work_dir))} candidates)")
        else:
            print(f"candidates: {make_candidates(args.work_dir, args.seed, target=args.target)}")
    chunks = None
    if args.chunks:
        first, _, last = args.chunks.partition(":")
        chunks = range(int(first), int(last or first) + 1)
    if args.stage in ("all", "label"):
        relaxer = None
        if args.relax:
            from crystaldos.relax import Relaxer

            relaxer = Relaxer()
        left = label_chunks(args.work_dir, grid, args.jobs, args.chunk_size, args.limit, chunks=chunks, relaxer=relaxer,
                            hull_screen=args.hull_screen)
        if left and args.stage == "all":
            print(f"not assembling: {left} chunks are not labelled yet (rerun to continue; --stage assemble --chunks FIRST:LAST "
                  "assembles a preview of those labelled)")
            return
    if args.stage in ("all", "assemble"):
        print(f"wrote {assemble(args.work_dir, args.out, args.seed, command, chunks)}")


if __name__ == "__main__":
    main()
