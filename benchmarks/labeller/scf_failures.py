"""Try tblite SCF settings on the crystals whose GFN2-xTB SCF failed in the format-2 build.

    python -m benchmarks.labeller.scf_failures '{"guess": 1}'                          # EEQ start charges
    python -m benchmarks.labeller.scf_failures '{"T": 5000, "guess": 2}' aflow-227     # some crystals only
    python -m benchmarks.labeller.scf_failures '{"anneal": [0.0633, 30, 50]}'          # start at 20000 K, anneal to T
    python -m benchmarks.labeller.scf_failures '{"restart_every": 30, "restarts": 8}'  # fresh mixer every 30 cycles

Settings (JSON): T (K, default 3000), damp (mixer damping), mem (Broyden memory), guess (tblite's initial
guess: 0 SAD, 1 EEQ, ...), anneal ([start Eh, hold, cycles]), acc (tblite accuracy), iter (max cycles, default
250), restart_every / restarts (run in blocks from the last charges; prints atom 0's charge after each block).
The crystals are those in ``data/default-v2/labels/chunk_*.errors.json`` (or the IDs given), as the
labeller runs them: the >= 8 Å Gamma-point supercell of the primitive cell. One line per crystal.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

WORK_DIR = Path("data/default-v2")


def failed_ids() -> list[str]:
    ids = []
    for path in sorted((WORK_DIR / "labels").glob("chunk_*.errors.json")):
        ids += [i for i, m in json.loads(path.read_text())["errors"].items() if m.startswith("SCFConvergenceError")]
    return ids


def calculator(structure, settings: dict):
    """The labeller's supercell Calculator of the primitive cell, with the extra tblite settings applied."""
    from crystaldos.labellers.xtb import XTBLabeller, primitive_site_map

    primitive, _ = primitive_site_map(structure)
    labeller = XTBLabeller(method=settings.get("method", "GFN2-xTB"), accuracy=settings.get("acc", 1.0))
    calc, _, numbers, _ = labeller.supercell_calculator(
        primitive, settings.get("T", 3000), settings.get("damp", 0.4), settings.get("length", 8.0),
        settings.get("restart_every", settings.get("iter", 250)))
    for key, name in (("mem", "mixer-memory"), ("guess", "guess")):
        if key in settings:
            calc.set(name, settings[key])
    if "anneal" in settings:
        calc.set("annealing", tuple(settings["anneal"]))
    return calc, len(primitive), len(numbers)


def main() -> None:
    from tblite.interface import Result

    from crystaldos.data.build import load_candidates

    settings = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    candidates = {c.id: c for c in load_candidates(WORK_DIR)}
    ids = sys.argv[2:] or failed_ids()
    converged = 0
    for candidate_id in ids:
        structure = candidates[candidate_id].structure
        calc, n_primitive, n_supercell = calculator(structure, settings)
        result, log, ok = Result(), [], False
        start = time.perf_counter()
        for _ in range(settings.get("restarts", 1)):
            try:
                calc.singlepoint(result)
                ok = True
            except Exception:  # noqa: BLE001 - tblite raises on non-convergence; the charges are still in result
                pass
            log.append(f"q0={result.get('charges')[0]:+.2f}")
            if ok:
                break
        converged += ok
        print(f"{candidate_id:12s} {structure.composition.reduced_formula:14s} primitive {n_primitive:3d} supercell {n_supercell:4d} "
              f"{time.perf_counter() - start:6.1f} s  {'converged' if ok else 'FAILED'}  {' '.join(log)}", flush=True)
    print(f"\n{converged} of {len(ids)} converged with {settings}")


if __name__ == "__main__":
    main()
