"""Design as a benchmark: for each target crystal, k samples from its DOS alone, screened, relaxed and relabelled as
:meth:`crystaldos.Sampler.design` does, and whether the ranking picks a crystal that matches the target.

Used by ``crystaldos evaluate --design-limit N`` (the report's design section) and ``benchmarks/design/topk.py``.
A sample counts as right when its relaxed crystal matches the target (StructureMatcher 0.5 / 10° / 0.3).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

#: The sample counts the table reports, up to the k drawn.
TABLE_KS = (1, 2, 4, 8, 16, 32)


def design_outcomes(sampler, item, k: int, seed: int, relaxer, labeller, jobs: int = 2, retry: bool = False) -> dict:
    """The k samples of one target crystal (a data set item): each one's match before and after relaxation, its
    three DOS distances to the target, its energy and relaxation steps, or the stage and reason it was dropped; and
    the seconds spent (``retry``: as :func:`crystaldos.design.verify`).

    Returns:
        ``{"id", "formula", "n_sites", "rows": [one dict per sample, in sample order], "seconds": {...}}`` (JSON-ready).
    """
    from crystaldos.design import DISTANCES, dos_distance, verify
    from crystaldos.metrics import match

    start = time.perf_counter()
    samples = sampler.generate(len(item.structure), item.dos, n_samples=k, seed=seed, progress=False)
    sampled = time.perf_counter()
    candidates, dropped = verify(samples, item.dos, relaxer, labeller, "site", jobs=jobs, progress=False, retry=retry)
    rows = [{"sample": d.sample_index, "raw_match": bool(match(d.structure, item.structure)[0]), "stage": d.stage,
             "reason": d.reason[:200]} for d in dropped]
    for c in candidates:
        rows.append({"sample": int(c.sample.settings["sample"]), "raw_match": bool(match(c.sample.structure, item.structure)[0]),
                     "match": bool(match(c.structure, item.structure)[0]), "energy_per_atom": c.energy_per_atom,
                     "steps": int(c.relaxation.steps),
                     **{f"d_{name}": dos_distance(c.dos, item.dos, name) for name in DISTANCES}})
    rows.sort(key=lambda r: r["sample"])
    return {"id": item.id, "formula": item.formula, "n_sites": len(item.structure), "rows": rows,
            "seconds": {"sample": sampled - start, "relax and label": time.perf_counter() - sampled}}


def _top1(result: dict, k: int, key: str) -> bool:
    kept = [s for s in result["rows"][:k] if "match" in s]
    return bool(min(kept, key=lambda s: s[key])["match"]) if kept else False


def summarise(results: list[dict], ks) -> list[dict]:
    """Match rates (%) over the crystals for each k: the first sample (raw and relaxed), the top-1 of k by each
    distance and by energy, the oracle of k (relaxed and raw), and the share of samples kept."""
    from crystaldos.design import DISTANCES

    table = []
    for k in ks:
        row = {"k": k, "crystals": len(results),
               "first sample, raw": 100 * np.mean([r["rows"][0]["raw_match"] for r in results]),
               "first sample, relaxed": 100 * np.mean([bool(r["rows"][0].get("match", False)) for r in results])}
        for name in DISTANCES:
            row[f"top-1 by {name}"] = 100 * np.mean([_top1(r, k, f"d_{name}") for r in results])
        row["top-1 by energy"] = 100 * np.mean([_top1(r, k, "energy_per_atom") for r in results])
        row["oracle of k (relaxed)"] = 100 * np.mean([any(s.get("match", False) for s in r["rows"][:k]) for r in results])
        row["oracle of k (raw)"] = 100 * np.mean([any(s["raw_match"] for s in r["rows"][:k]) for r in results])
        row["kept (%)"] = 100 * np.mean([sum("match" in s for s in r["rows"][:k]) / k for r in results])
        table.append(row)
    return table


def run_design_rows(sampler, items, k: int, seed: int, store: str | Path, relaxer=None, labeller=None, jobs: int = 2,
                    progress: bool = True, retry: bool = False) -> list[dict]:
    """:func:`design_outcomes` for every item, kept one line per crystal in ``store`` (JSON lines) so that a killed
    run resumes; returns the outcomes in item order."""
    from tqdm.auto import tqdm

    if relaxer is None:
        from crystaldos.design import design_relaxer

        relaxer = design_relaxer()
    if labeller is None:
        from crystaldos.labellers import XTBLabeller

        labeller = XTBLabeller.for_dataset(items[0].dos.attrs)
    store = Path(store)
    store.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if store.exists():
        for line in store.read_text().splitlines():
            record = json.loads(line)
            done[record["id"]] = record
    for item in tqdm(list(items), desc="design", disable=not progress):
        if item.id in done:
            continue
        record = design_outcomes(sampler, item, k, seed, relaxer, labeller, jobs, retry)
        with store.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        done[item.id] = record
    return [done[item.id] for item in items]


def design_section(results: list[dict], k: int, seed: int, jobs: int) -> str:
    """The report's markdown section: the table for every k up to ``k`` and the cost per crystal."""
    import pandas as pd

    table = pd.DataFrame(summarise(results, [n for n in TABLE_KS if n <= k])).set_index("k")
    seconds = np.array([sum(r["seconds"].values()) for r in results])
    return (f"\n\n## Design from the DOS alone\n\nThe first {len(results)} crystals: {k} samples from pure noise each (CFG, "
            f"seed {seed}), screened, relaxed with CHGNet and relabelled as `Sampler.design` does; right = the relaxed "
            f"candidate matches the crystal (StructureMatcher 0.5 / 10 / 0.3).\n\n{table.to_markdown(floatfmt='.1f')}\n\n"
            f"Cost per crystal ({jobs} worker processes): median {np.median(seconds):.0f} s, mean {seconds.mean():.0f} s "
            f"(sampling {np.mean([r['seconds']['sample'] for r in results]):.0f} s, relaxing and labelling "
            f"{np.mean([r['seconds']['relax and label'] for r in results]):.0f} s).\n")
