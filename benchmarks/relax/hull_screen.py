"""How much labelling does the build's hull screen save? Replays it on the labelled chunks of the equilibrium build.

    python -m benchmarks.relax.hull_screen --work-dir data/default-v3 [--chunks 0:129]

Every labelled crystal of the chunks gets its energy above the hull of all of them (as the assembly computes it,
before the cut); those above the cut are the crystals the assembly leaves out. Then, chunk by chunk, as the build
would have screened it (:class:`crystaldos.data.stability.PartialHull`, with the cached elemental references and the
crystals of the chunks before it, one chunk of lag as the build queues one chunk ahead), it counts how many of them
the screen catches and how much of the labelling time (``wall_time_s``, one core) they took. A crystal the screen
refuses but the final hull keeps would be a bug: it is counted, and must be 0.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> None:
    from crystaldos.data.build import _chunk_number, _chunk_path
    from crystaldos.data.stability import (
        MAX_E_ABOVE_HULL,
        PartialHull,
        elemental_references,
        energies_above_hull,
        lowest_elemental_energies,
    )
    from crystaldos.data.store import PackedRecords, open_netcdf

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=Path("data/default-v3"))
    parser.add_argument("--chunks", default=None, metavar="FIRST:LAST", help="only these chunks (inclusive)")
    args = parser.parse_args(argv)
    labels = args.work_dir / "labels"
    numbers = sorted(_chunk_number(p) for p in labels.glob("chunk_*.nc"))
    if args.chunks:
        first, _, last = args.chunks.partition(":")
        numbers = [k for k in numbers if int(first) <= k <= int(last)]
    rows = []  # (chunk, composition, relaxed eV/atom, label seconds)
    for k in numbers:
        ds = open_netcdf(_chunk_path(labels, k))
        records = PackedRecords(ds)
        for i, (energy, seconds) in enumerate(zip(ds["relax_energy_per_atom_eV"].values, ds["wall_time_s"].values)):
            rows.append((k, records.structure(i).composition, float(energy), float(seconds)))
    chunk = np.array([r[0] for r in rows])
    energies = np.array([r[2] for r in rows])
    seconds = np.array([r[3] for r in rows])
    cache = args.work_dir / "elemental_references.json"
    compositions = [r[1] for r in rows]
    elements = sorted({el.symbol for c in compositions for el in c.elements})
    # As the assembly: the cached trial crystals, and the set's own elemental crystals where they lie lower.
    references = elemental_references(elements, None, cache, lowest_elemental_energies(compositions, energies), progress=False)
    final = energies_above_hull(compositions, energies, references)
    cut = final > MAX_E_ABOVE_HULL

    caught = np.zeros(len(rows), bool)
    hull = PartialHull.from_cache(cache)
    added = 0
    for k in numbers:
        # The build queues a chunk while the one before it is still running: it sees the chunks up to k - 2.
        while added < len(rows) and chunk[added] <= k - 2:
            hull.add(rows[added][1], rows[added][2])
            added += 1
        for i in np.nonzero(chunk == k)[0]:
            screen = hull.screen(rows[i][1])
            caught[i] = screen is not None and screen.energy_above_hull(rows[i][1], energies[i]) > screen.cut
    wrong = int((caught & ~cut).sum())
    print(f"{len(numbers)} chunks, {len(rows)} labelled crystals; {int(cut.sum())} ({cut.mean():.1%}) lie above the cut of "
          f"{MAX_E_ABOVE_HULL} eV/atom on the hull of all of them")
    print(f"labelling time: {seconds.sum() / 3600:.1f} core-hours; the crystals above the cut took {seconds[cut].sum() / 3600:.2f} "
          f"({seconds[cut].sum() / seconds.sum():.1%}), mean {seconds[cut].mean():.1f} s against {seconds[~cut].mean():.1f} s")
    print(f"the screen catches {int(caught.sum())} of them ({caught.sum() / max(cut.sum(), 1):.1%}), saving "
          f"{seconds[caught].sum() / 3600:.2f} core-hours = {seconds[caught].sum() / seconds.sum():.1%} of the labelling time")
    print(f"refused by the screen but kept by the final hull: {wrong} (must be 0)")


if __name__ == "__main__":
    main()
