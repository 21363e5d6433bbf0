"""How many SCF iterations do labelled crystals need, and how much of the build goes to SCFs that never converge?

    python -m benchmarks.labeller.scf_iterations --labels data/default-v3/labels --n 24 --seed 0

``XTBLabeller.scf_attempts`` tries the Gamma-point supercell SCF at most twice: the configured temperature with at
most 100 iterations, then a retry (more smearing, stronger damping) with at most 250. A crystal whose SCF never
converges pays all 350 iterations and is dropped; one that converges on the retry pays 100 first. The caps were set
without measuring what converging SCFs need.

For ``--n`` seeded crystals of the labelled chunks that converged at the first attempt, and ``--n`` that converged
on the retry (their relaxed structures, as stored), reruns each attempt's SCF with tblite's iteration log and
counts the iterations. Prints the distributions, the seconds per iteration, and the share of SCF iterations the
chunks' failures take under the current caps.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import io
import json
import re
import time
from pathlib import Path

import numpy as np

#: An iteration line of tblite's SCF log: iteration number, energy, energy change, density change.
ITERATION_LINE = re.compile(r"^\s*(\d+)\s+-?\d+\.\d+\s+-?\d\.\d+E[-+]\d+\s+-?\d\.\d+E[-+]\d+\s*$", re.MULTILINE)


def scf_iterations(labeller, structure, temperature: float, damping: float, cap: int) -> tuple[int, bool, float]:
    """(iterations, converged, seconds) of one Gamma-point supercell SCF of ``structure`` as the labeller runs it."""
    calc, *_ = labeller.supercell_calculator(structure, temperature, damping, labeller.min_length, cap)
    calc.set("verbosity", 1)
    log = io.StringIO()
    start = time.perf_counter()
    converged = True
    with contextlib.redirect_stdout(log):
        try:
            calc.singlepoint()
        except Exception:  # noqa: BLE001 - tblite raises TBLiteRuntimeError (and others) when the SCF fails
            converged = False
    iterations = [int(n) for n in ITERATION_LINE.findall(log.getvalue())]
    return (max(iterations) if iterations else 0), converged, time.perf_counter() - start


def main() -> None:
    from benchmarks.tables import show_table
    from crystaldos.data.store import open_netcdf, xarray_to_records
    from crystaldos.labellers import XTBLabeller

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", default="data/default-v3/labels", help="folder of labelled chunks")
    parser.add_argument("--n", type=int, default=24, help="crystals of each kind (first attempt, retry)")
    parser.add_argument("--max-sites", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dampings", type=float, nargs="*", default=[],
                        help="also run the first attempt's SCF with these mixer dampings (same temperature and cap)")
    parser.add_argument("--out", type=Path, default=None, help="write the per-crystal rows here (JSON lines)")
    args = parser.parse_args()

    files = sorted(glob.glob(f"{args.labels}/chunk_*.nc"))
    records, failures = [], 0
    for f in files:
        chunk = open_netcdf(f)
        labeller = XTBLabeller.for_dataset(chunk.attrs)
        records += xarray_to_records(chunk)
        errors = json.loads(Path(f).with_suffix(".errors.json").read_text())["errors"]
        failures += sum(message.startswith("SCFConvergenceError") for message in errors.values())
    attempts = labeller.scf_attempts()
    (t1, d1, _, cap1), (t2, d2, _, cap2) = attempts[:2]
    first = [r for r in records if np.isclose(r.properties.get("scf_temperature_K", np.nan), t1) and len(r.structure) <= args.max_sites]
    retried = [r for r in records if np.isclose(r.properties.get("scf_temperature_K", np.nan), t2) and len(r.structure) <= args.max_sites]
    n_first_all = sum(np.isclose(r.properties.get("scf_temperature_K", np.nan), t1) for r in records)
    n_retry_all = len(records) - n_first_all
    rng = np.random.default_rng(args.seed)
    rows = []
    for kind, pool in (("first attempt", first), ("retry", retried)):
        for index in rng.permutation(len(pool))[: args.n]:
            record = pool[index]
            n1, ok1, s1 = scf_iterations(labeller, record.structure, t1, d1, cap1)
            row = {"kind": kind, "id": record.id, "sites": len(record.structure), "first iterations": n1,
                   "first converged": ok1, "first s": s1}
            if not ok1:
                n2, ok2, s2 = scf_iterations(labeller, record.structure, t2, d2, cap2)
                row.update({"retry iterations": n2, "retry converged": ok2, "retry s": s2})
            for damping in args.dampings:
                n, ok, _ = scf_iterations(labeller, record.structure, t1, damping, cap1)
                row[f"damping {damping} iterations"] = n if ok else None
            rows.append(row)
            print(row, flush=True)
            if args.out:
                with open(args.out, "a") as handle:
                    handle.write(json.dumps(row) + "\n")

    per_iteration = np.median([r["first s"] / max(r["first iterations"], 1) for r in rows])
    firsts = np.array([r["first iterations"] for r in rows if r["first converged"]])
    retries = np.array([r["retry iterations"] for r in rows if r.get("retry converged")])
    summary = []
    for name, values in (("first attempt, converged", firsts), ("retry, converged", retries)):
        if len(values):
            summary.append({"SCF": name, "crystals": len(values), "converged": len(values), "median": np.median(values),
                            "90th pct": np.percentile(values, 90), "max": values.max()})
    for damping in args.dampings:
        for kind in ("first attempt", "retry"):
            values = [r[f"damping {damping} iterations"] for r in rows if r["kind"] == kind]
            done = np.array([v for v in values if v is not None])
            summary.append({"SCF": f"{kind} crystals, first attempt at damping {damping}", "crystals": len(values),
                            "converged": len(done), "median": np.median(done) if len(done) else np.nan,
                            "90th pct": np.percentile(done, 90) if len(done) else np.nan,
                            "max": done.max() if len(done) else np.nan})
    show_table(summary, f"SCF iterations of labelled crystals (caps {cap1} and {cap2}; {per_iteration:.2f} s per "
                        "iteration, median over the first attempts)")
    # Iterations the chunks spent, under the current caps, with the sample's medians for the converging SCFs.
    first_median = np.median(firsts) if len(firsts) else cap1
    retry_median = np.median(retries) if len(retries) else cap2
    spent = {"first attempt converged": n_first_all * first_median,
             "retry converged": n_retry_all * (cap1 + retry_median),
             "never converged (dropped)": failures * (cap1 + cap2)}
    total = sum(spent.values())
    print(f"\n{len(files)} chunks: {n_first_all} crystals converged at once, {n_retry_all} on the retry, {failures} never;")
    for name, value in spent.items():
        print(f"  {name}: {value:.0f} iterations ({100 * value / total:.0f} % of the SCF iterations)")


if __name__ == "__main__":
    main()
