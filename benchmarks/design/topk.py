"""Does ranking relaxed, relabelled samples by their DOS pick the right crystal? Top-1 of k against the first sample
and the oracle of k, for each ranking distance.

For each of the first ``--limit`` crystals of a split: k samples from pure noise (``Sampler.generate``, CFG, the
sampler's defaults), every one screened, relaxed and relabelled as ``Sampler.design`` does; a sample counts as right
when its relaxed crystal matches the target (StructureMatcher 0.5 / 10° / 0.3, volumes scaled). Per crystal the
samples are saved (resumable) in ``--out``; the table is printed and written beside them.

    python -m benchmarks.design.topk --split val --limit 32 --k 8 --out docs/research/design_val
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np


def run_crystal(sampler, item, k: int, seed: int, relaxer, labeller, jobs: int) -> dict:
    """Samples of one crystal: match before and after relaxation, the three distances, energy, stage dropped."""
    from crystaldos.design import DISTANCES, dos_distance, verify
    from crystaldos.metrics import match

    start = time.perf_counter()
    samples = sampler.generate(len(item.structure), item.dos, n_samples=k, seed=seed, progress=False)
    sampled = time.perf_counter()
    candidates, dropped = verify(samples, item.dos, relaxer, labeller, "site", jobs=jobs, progress=False)
    rows = [{"sample": d.sample_index, "raw_match": bool(match(d.structure, item.structure)[0]), "stage": d.stage,
             "reason": d.reason[:200]} for d in dropped]
    for c in candidates:
        rows.append({"sample": int(c.sample.settings["sample"]), "raw_match": bool(match(c.sample.structure, item.structure)[0]),
                     "match": bool(match(c.structure, item.structure)[0]), "energy_per_atom": c.energy_per_atom,
                     **{f"d_{name}": dos_distance(c.dos, item.dos, name) for name in DISTANCES}})
    rows.sort(key=lambda r: r["sample"])
    return {"id": item.id, "formula": item.formula, "n_sites": len(item.structure), "rows": rows,
            "seconds": {"sample": sampled - start, "relax and label": time.perf_counter() - sampled}}


def summarise(results: list[dict], ks: list[int]) -> list[dict]:
    """Match rates (%) over crystals: first sample (raw and relaxed), top-1 of k by each distance, oracle of k."""
    from crystaldos.design import DISTANCES

    table = []
    for k in ks:
        row = {"k": k, "crystals": len(results)}
        first_raw = [r["rows"][0]["raw_match"] for r in results]
        first_relaxed = [bool(r["rows"][0].get("match", False)) for r in results]
        row["first sample, raw"] = 100 * np.mean(first_raw)
        row["first sample, relaxed"] = 100 * np.mean(first_relaxed)
        for name in DISTANCES:
            picks = []
            for r in results:
                kept = [s for s in r["rows"][:k] if "match" in s]
                picks.append(bool(min(kept, key=lambda s: s[f"d_{name}"])["match"]) if kept else False)
            row[f"top-1 by {name}"] = 100 * np.mean(picks)
        lowest_energy = []
        for r in results:
            kept = [s for s in r["rows"][:k] if "match" in s]
            lowest_energy.append(bool(min(kept, key=lambda s: s["energy_per_atom"])["match"]) if kept else False)
        row["top-1 by energy"] = 100 * np.mean(lowest_energy)
        row["oracle of k (relaxed)"] = 100 * np.mean([any(s.get("match", False) for s in r["rows"][:k]) for r in results])
        row["oracle of k (raw)"] = 100 * np.mean([any(s["raw_match"] for s in r["rows"][:k]) for r in results])
        row["kept (%)"] = 100 * np.mean([sum("match" in s for s in r["rows"][:k]) / k for r in results])
        table.append(row)
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=32)
    parser.add_argument("--k", type=int, default=8, help="samples per crystal (the table gives every power of 2 up to it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("docs/research/design_val"))
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    import pandas as pd
    import torch

    import crystaldos
    from crystaldos import Sampler
    from crystaldos.labellers import XTBLabeller
    from crystaldos.relax import Relaxer

    torch.set_num_threads(1)
    dataset = crystaldos.load_dataset()
    items = dataset.split(args.split)[: args.limit]
    sampler = Sampler.from_pretrained(device="cpu")
    relaxer, labeller = Relaxer(match_start=False, max_volume_change=None), XTBLabeller.for_dataset(dataset.attrs)
    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / f"samples_k{args.k}_seed{args.seed}.jsonl"
    done = {json.loads(line)["id"]: json.loads(line) for line in store.read_text().splitlines()} if store.exists() else {}
    from tqdm.auto import tqdm

    for item in tqdm(list(items), desc="crystals"):
        if item.id in done:
            continue
        result = run_crystal(sampler, item, args.k, args.seed, relaxer, labeller, args.jobs)
        with store.open("a") as handle:
            handle.write(json.dumps(result) + "\n")
        done[item.id] = result
    results = [done[item.id] for item in items]
    ks = [k for k in (1, 2, 4, 8, 16, 32) if k <= args.k]
    table = pd.DataFrame(summarise(results, ks)).set_index("k")
    seconds = np.array([sum(r["seconds"].values()) for r in results])
    text = (f"{args.split} split, first {len(results)} crystals, k = {args.k} samples from noise each (CFG, seed {args.seed}), "
            f"relaxed with {relaxer.describe()['relax_model']} and relabelled; match = StructureMatcher(0.5, 10, 0.3) of the "
            f"relaxed candidate against the data set's crystal.\n\n{table.to_markdown(floatfmt='.1f')}\n\n"
            f"Cost per crystal (k = {args.k}, {args.jobs} worker processes): median {np.median(seconds):.0f} s, mean "
            f"{seconds.mean():.0f} s (sampling {np.mean([r['seconds']['sample'] for r in results]):.0f} s, relax and label "
            f"{np.mean([r['seconds']['relax and label'] for r in results]):.0f} s).\n")
    print(text)
    (args.out / f"table_k{args.k}_seed{args.seed}.md").write_text(text)


if __name__ == "__main__":
    main()
