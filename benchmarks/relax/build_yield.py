"""What relaxing first changes in the data build: failures by cause for the same candidates before (data format 2,
unrelaxed) and after (the equilibrium build, relaxed with CHGNet), and the relaxation's statistics and cost.

    python -m benchmarks.relax.build_yield            # reads data/default-v2 and data/default-v3 (cheap)
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np


def outcomes(work_dir: Path) -> tuple[dict[str, str], dict[str, dict]]:
    """({id: error cause} of the failed candidates, {id: properties} of the labelled ones) of a build's chunks."""
    import h5py

    failed, kept = {}, {}
    for path in sorted((work_dir / "labels").glob("chunk_*.errors.json")):
        failed.update({i: m.split(":")[0] for i, m in json.loads(path.read_text())["errors"].items()})
        nc = path.with_name(path.name.replace(".errors.json", ".nc"))
        if nc.exists():
            with h5py.File(nc, "r") as h5:
                ids = [i.decode() if isinstance(i, bytes) else str(i) for i in h5["structure_id"][:]]
                columns = {k: h5[k][:] for k in h5 if k.startswith("relax_") or k in ("wall_time_s",)}
            for n, i in enumerate(ids):
                kept[i] = {k: float(v[n]) for k, v in columns.items()}
    return failed, kept


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, default=Path("data/default-v2"))
    parser.add_argument("--after", type=Path, default=Path("data/default-v3"))
    args = parser.parse_args(argv)
    failed_before, kept_before = outcomes(args.before)
    failed_after, kept_after = outcomes(args.after)
    ids = sorted(set(failed_after) | set(kept_after))
    print(f"{len(ids)} candidates through the equilibrium build so far ({len(kept_after)} kept, {len(failed_after)} left out)\n")
    before = Counter(failed_before.get(i, "labelled") for i in ids if i in failed_before or i in kept_before)
    after = Counter(failed_after.get(i, "labelled") for i in ids)
    print("| outcome | unrelaxed (format 2) | relaxed first |\n|:--|--:|--:|")
    for cause in sorted(set(before) | set(after), key=lambda c: (c != "labelled", c)):
        print(f"| {cause} | {before.get(cause, 0)} | {after.get(cause, 0)} |")
    scf = [i for i in ids if i in kept_after or failed_after.get(i) not in ("VolumeChangeError", "NotConvergedError",
                                                                           "StructureChangedError", "ImplausibleCellError")]
    share = lambda failed: 100 * np.mean([failed.get(i) == "SCFConvergenceError" for i in scf])  # noqa: E731
    print(f"\nSCF failures among the {len(scf)} crystals that reached the labeller: {share(failed_after):.1f} % relaxed, "
          f"{share(failed_before):.1f} % of the same candidates unrelaxed")
    both = [i for i in kept_after]
    dv = np.array([kept_after[i]["relax_volume_change"] for i in both])
    steps = np.array([kept_after[i]["relax_steps"] for i in both])
    relax_s = np.array([kept_after[i]["relax_wall_time_s"] for i in both])
    label_s = np.array([kept_after[i]["wall_time_s"] for i in both])
    print(f"\nkept crystals: |volume change| median {100 * np.median(np.abs(dv)):.1f} %, 90th percentile "
          f"{100 * np.percentile(np.abs(dv), 90):.1f} % ({100 * dv.min():+.0f} ... {100 * dv.max():+.0f} %); steps median "
          f"{np.median(steps):.0f} (max {steps.max():.0f})")
    print(f"cost per kept crystal on one core: relax {relax_s.mean():.1f} s + label {label_s.mean():.1f} s = "
          f"{(relax_s + label_s).mean():.1f} s mean (median {np.median(relax_s + label_s):.1f} s; budget 30 s)")


if __name__ == "__main__":
    main()
