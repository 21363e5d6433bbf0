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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.relax.build_yield import outcomes

#: The issue's budget: relax and label in at most 30 s per crystal on one core.
BUDGET_S = 30.0


@dataclass
class Chunk:
    """One finished chunk: its failed candidates ({id: seconds or None when not recorded}) and its kept crystals' ids."""

    failed: dict[str, float | None]
    kept: list[str]

    @property
    def timed(self) -> bool:
        """Every candidate's time is known (a kept crystal's is in its properties)."""
        return all(seconds is not None for seconds in self.failed.values())


def read_chunks(work_dir: Path) -> dict[int, Chunk]:
    """{k: Chunk} of the build's finished chunks, each file read once."""
    import h5py

    from crystaldos.data.build import _chunk_number, _chunk_path

    chunks = {}
    for path in sorted((work_dir / "labels").glob("chunk_*.errors.json")):
        k = _chunk_number(path)
        done = json.loads(path.read_text())
        seconds = done.get("failed_seconds", {})
        kept = []
        nc = _chunk_path(work_dir / "labels", k)
        if nc.exists():
            with h5py.File(nc, "r") as h5:
                kept = [i.decode() if isinstance(i, bytes) else str(i) for i in h5["structure_id"][:]]
        chunks[k] = Chunk({i: seconds.get(i) for i in done["errors"]}, kept)
    return chunks


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

    chunks = read_chunks(args.work_dir)
    timed = {k: chunk for k, chunk in chunks.items() if chunk.timed}
    if not any(chunk.failed for chunk in timed.values()):
        print("\nno chunk records its failures' times yet (chunks written by a build older than this benchmark)")
        return

    def cost(selected: dict[int, Chunk]) -> tuple[float, list[str], dict[str, float]]:
        """Seconds spent on the chunks' candidates, their kept ids and their failed candidates' seconds."""
        kept_ids = [i for chunk in selected.values() for i in chunk.kept]
        failed_s = {i: s for chunk in selected.values() for i, s in chunk.failed.items()}
        seconds = sum(kept[i]["relax_wall_time_s"] + kept[i]["wall_time_s"] for i in kept_ids) + sum(failed_s.values())
        return seconds, kept_ids, failed_s

    total, timed_kept, timed_failed = cost(timed)
    n = len(timed_kept) + len(timed_failed)
    print(f"\nchunks {_ranges(sorted(timed))} record every candidate's time ({n} candidates, {len(timed_kept)} kept):")
    print("| | seconds on one core | budget |\n|:--|--:|--:|")
    print(f"| per candidate attempted | {total / n:.1f} | |")
    print(f"| per crystal relaxed and labelled | {total / max(len(timed_kept), 1):.1f} | {BUDGET_S:.0f} |")
    print(f"| of which spent on candidates left out | {sum(timed_failed.values()) / max(len(timed_kept), 1):.1f} | |")
    if args.data is not None:
        import crystaldos

        # Only the chunks the file was assembled from (a preview may end before the last timed chunk).
        in_file = set(crystaldos.load_dataset(args.data).table().index)
        there = {k: chunk for k, chunk in timed.items() if set(chunk.kept) & in_file}
        cost_there, kept_there, _ = cost(there)
        shipped = in_file & set(kept_there)
        print(f"| per crystal of {args.data} (after its hull cut; {len(shipped)} of its crystals from chunks "
              f"{_ranges(sorted(there))}) | {cost_there / max(len(shipped), 1):.1f} | {BUDGET_S:.0f} |")
    by_cause: dict[str, list[float]] = {}
    for i, seconds in timed_failed.items():
        by_cause.setdefault(failed[i], []).append(seconds)
    print("\n| left out by | candidates | mean s | s per kept crystal |\n|:--|--:|--:|--:|")
    for cause, times in sorted(by_cause.items(), key=lambda item: -sum(item[1])):
        print(f"| {cause} | {len(times)} | {np.mean(times):.1f} | {sum(times) / max(len(timed_kept), 1):.1f} |")
    print(f"\nwithin budget: {total / max(len(timed_kept), 1) <= BUDGET_S}")


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
