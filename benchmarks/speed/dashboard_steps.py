"""How many reverse steps should the dashboard take by default? Quality and time against steps.

    python -m benchmarks.speed.dashboard_steps --split val --limit 64 --steps 20 50 100 200 all --t-start 200 1000

For the first ``limit`` crystals of the split (val by default: defaults are chosen there; one sample each, seed 0,
shipped models), CBG and CFG at the dashboard's default strengths (1.0) from each t_start with each number of
strided reverse steps ("all" = t_start steps): match rate (%), site-type accuracy (%) and median |volume error| (%). Then the wall time of one dashboard Run
(CBG then CFG, one sample, the split's first crystal) with the threads this process has (set OMP_NUM_THREADS).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from benchmarks.tables import show_row, show_table

import crystaldos
from crystaldos import Sampler
from crystaldos.metrics import score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="val", choices=["train", "val", "test"])
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--steps", nargs="+", default=["20", "50", "100", "200", "all"])
    parser.add_argument("--t-start", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--spacing", default="logsnr", choices=["logsnr", "uniform"], help="where the strided steps fall")
    args = parser.parse_args()
    sampler = Sampler.from_pretrained(device="cpu")
    items = list(crystaldos.load_dataset().split(args.split)[: args.limit])
    rows = []
    for t_start in args.t_start:
        for steps_text in args.steps:
            steps = t_start if steps_text == "all" else int(steps_text)
            if steps > t_start:
                continue
            row = {"t_start": t_start, "steps": steps}
            for guidance in ("cbg", "cfg"):
                results = sampler.reconstruct([i.structure for i in items], [i.dos for i in items], guidance=guidance,
                                              t_start=t_start, steps=steps, seed=0, progress=False, spacing=args.spacing)
                scores = [score(r.structure, i.structure, r.dos_pred, i.dos) for r, i in zip(results, items)]
                row[f"{guidance} match (%)"] = 100 * np.mean([s.matched for s in scores])
                row[f"{guidance} site types (%)"] = 100 * np.mean([s.site_type_accuracy for s in scores])
                row[f"{guidance} median |dV| (%)"] = float(np.nanmedian([abs(s.volume_error_pct) for s in scores]))
            start = time.perf_counter()
            for guidance in ("cbg", "cfg"):
                sampler.reconstruct(items[0].structure, items[0].dos, guidance=guidance, t_start=t_start, steps=steps, progress=False,
                                    spacing=args.spacing)
            row["one Run (s)"] = time.perf_counter() - start
            rows.append(row)
            show_row(rows, "%.1f")
    show_table(rows, f"{len(items)} {args.split} crystals, one sample each, strengths 1.0, {args.spacing} spacing, {torch.get_num_threads()} thread(s); "
                     f"'one Run' = CBG + CFG for {items[0].formula} ({len(items[0].structure)} atoms)", ".1f")


if __name__ == "__main__":
    main()
