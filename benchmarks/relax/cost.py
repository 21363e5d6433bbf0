"""What the equilibrium build costs per crystal (relax and label, failures included) against the 30 s budget.

    python -m benchmarks.relax.cost                      # reads data/default-v3/labels (cheap)
    python -m benchmarks.relax.cost --data build/stage/data.nc   # also per crystal of an assembled file

A kept crystal stores its relaxation's and its labelling's wall time; chunks written since the build recorded
failures' times (``failed_seconds`` in ``chunk_NNNN.errors.json``) also say what the candidates that were left out
cost, so their cost per kept crystal is the whole bill. Times are one worker's wall time on one core (the build runs
two workers on the machine's two cores).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.relax.build_yield import outcomes

#: The issue's budget: relax and label in at most 30 s per crystal on one core.
BUDGET_S = 30.0


def chunk_costs(work_dir: Path) -> dict[str, float]:
    """{candidate id: seconds} of the failed candidates of the chunks that record them."""
    costs: dict[str, float] = {}
    for path in sorted((work_dir / "labels").glob("chunk_*.errors.json")):
        costs.update(json.loads(path.read_text()).get("failed_seconds", {}))
    return costs


def timed_chunks(work_dir: Path) -> list[int]:
    """The chunks whose every failed candidate has its time recorded (chunks with no failure count too)."""
    numbers = []
    for path in sorted((work_dir / "labels").glob("chunk_*.errors.json")):
        done = json.loads(path.read_text())
        if set(done["errors"]) <= set(done.get("failed_seconds", {})):
            numbers.append(int(path.name[len("chunk_"):].split(".")[0]))
    return numbers


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=Path("data/default-v3"))
    parser.add_argument("--data", type=Path, help="an assembled file: also the cost per crystal it keeps (hull cut)")
    args = parser.parse_args(argv)
    failed, kept = outcomes(args.work_dir)
    relax_s = np.array([p["relax_wall_time_s"] for p in kept.values()])
    label_s = np.array([p["wall_time_s"] for p in kept.values()])
    print(f"{len(failed) + len(kept)} candidates through the build: {len(kept)} relaxed and labelled, {len(failed)} left out\n")
    print(f"kept crystals alone (every chunk): relax {relax_s.mean():.1f} s + label {label_s.mean():.1f} s = "
          f"{(relax_s + label_s).mean():.1f} s mean, median {np.median(relax_s + label_s):.1f} s")

    chunk_numbers = timed_chunks(args.work_dir)
    failed_s = chunk_costs(args.work_dir)
    if not failed_s:
        print("\nno chunk records its failures' times yet (chunks written by a build older than this benchmark)")
        return
    ids = set()
    for k in chunk_numbers:
        path = args.work_dir / "labels" / f"chunk_{k:04d}.errors.json"
        ids |= set(json.loads(path.read_text())["errors"])
    timed_failed = {i: failed_s[i] for i in ids if i in failed_s}
    # The kept crystals of the same chunks: their ids are in the chunks' netCDF files.
    timed_kept = _kept_in_chunks(args.work_dir, chunk_numbers, kept)
    kept_total = sum(kept[i]["relax_wall_time_s"] + kept[i]["wall_time_s"] for i in timed_kept)
    total = kept_total + sum(timed_failed.values())
    n = len(timed_kept) + len(timed_failed)
    print(f"\nchunks {_ranges(chunk_numbers)} record every candidate's time ({n} candidates, {len(timed_kept)} kept):")
    print("| | seconds on one core | budget |\n|:--|--:|--:|")
    print(f"| per candidate attempted | {total / n:.1f} | |")
    print(f"| per crystal relaxed and labelled | {total / max(len(timed_kept), 1):.1f} | {BUDGET_S:.0f} |")
    print(f"| of which spent on candidates left out | {sum(timed_failed.values()) / max(len(timed_kept), 1):.1f} | |")
    if args.data is not None:
        import crystaldos

        # Only the chunks the file was assembled from (a preview may end before the last timed chunk).
        in_file = set(crystaldos.load_dataset(args.data).table().index)
        chunks_in_file = [k for k in chunk_numbers if set(_kept_in_chunks(args.work_dir, [k], kept)) & in_file]
        kept_there = _kept_in_chunks(args.work_dir, chunks_in_file, kept)
        failed_there = {i for k in chunks_in_file
                        for i in json.loads((args.work_dir / "labels" / f"chunk_{k:04d}.errors.json").read_text())["errors"]}
        cost_there = (sum(kept[i]["relax_wall_time_s"] + kept[i]["wall_time_s"] for i in kept_there)
                      + sum(timed_failed.get(i, 0.0) for i in failed_there))
        shipped = in_file & set(kept_there)
        print(f"| per crystal of {args.data} (after its hull cut; {len(shipped)} of its crystals from chunks "
              f"{_ranges(chunks_in_file)}) | {cost_there / max(len(shipped), 1):.1f} | {BUDGET_S:.0f} |")
    by_cause: dict[str, list[float]] = {}
    for i, seconds in timed_failed.items():
        by_cause.setdefault(failed[i], []).append(seconds)
    print("\n| left out by | candidates | mean s | s per kept crystal |\n|:--|--:|--:|--:|")
    for cause, times in sorted(by_cause.items(), key=lambda item: -sum(item[1])):
        print(f"| {cause} | {len(times)} | {np.mean(times):.1f} | {sum(times) / max(len(timed_kept), 1):.1f} |")
    print(f"\nwithin budget: {total / max(len(timed_kept), 1) <= BUDGET_S}")


def _kept_in_chunks(work_dir: Path, numbers: list[int], kept: dict[str, dict]) -> list[str]:
    import h5py

    ids = []
    for k in numbers:
        path = work_dir / "labels" / f"chunk_{k:04d}.nc"
        if path.exists():
            with h5py.File(path, "r") as h5:
                ids += [i.decode() if isinstance(i, bytes) else str(i) for i in h5["structure_id"][:]]
    return [i for i in ids if i in kept]


def _ranges(numbers: list[int]) -> str:
    """'172-180, 185' for [172, ..., 180, 185]."""
    spans, start = [], None
    for i, k in enumerate(numbers):
        start = k if start is None else start
        if i + 1 == len(numbers) or numbers[i + 1] != k + 1:
            spans.append(f"{start}-{k}" if k != start else f"{k}")
            start = None
    return ", ".join(spans)


if __name__ == "__main__":
    main()
