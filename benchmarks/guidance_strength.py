"""Reconstruction quality vs guidance strength (CFG omega, CBG s), printed as a table and plotted.

    python benchmarks/guidance_strength.py [--limit 64] [--t-start 200] [--steps 100] [--out docs/guidance_strength.png]

Each strength is one ``run_experiment`` over the first ``limit`` test crystals from
``t_start`` (seed 0), so the rows differ only in the guidance weight. Strength 0 is the
conditional model alone for CFG and the unconditional model alone for CBG. CBG runs twice:
on the separately trained unconditional model (the published method) and on the CFG model's
null branch (``unconditional="cfg-null"``), which tells a weak unconditional network apart
from a weak guidance gradient.
"""

from __future__ import annotations

import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

import crystaldos
from crystaldos import Sampler
from crystaldos.evaluate import run_experiment, summary_table

#: (label, guidance, unconditional score) -> strengths
SERIES = {
    ("cfg", "cfg", "separate"): [0.0, 0.5, 1.0, 2.0, 4.0],
    ("cbg", "cbg", "separate"): [0.0, 0.5, 1.0, 2.0, 5.0],
    ("cbg (cfg-null)", "cbg", "cfg-null"): [0.0, 0.5, 1.0, 2.0, 5.0],
}
LABELS = {"cfg": "CFG (strength = ω)", "cbg": "CBG (strength = s)", "cbg (cfg-null)": "CBG on the CFG null branch (s)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--t-start", type=int, default=200)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="docs/guidance_strength.png")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sampler = Sampler.from_pretrained()
    items = crystaldos.load_dataset().split("test")[: args.limit]
    rows = []
    for (label, guidance, unconditional), strengths in SERIES.items():
        for strength in strengths:
            ds = run_experiment(sampler, items, guidances=[guidance], t_starts=[args.t_start], strengths={guidance: strength},
                                steps=args.steps, seed=0, progress=False, unconditional=unconditional)
            row = summary_table(ds).iloc[0].to_dict()
            rows.append({**row, "guidance": label, "strength": strength})
            print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in rows[-1].items()}), flush=True)

    import pandas as pd

    table = pd.DataFrame(rows)
    columns = ["guidance", "strength", "match rate (%)", "RMSE", "valid (%)", "site types (%)", "DOS MAE (fwd)"]
    print(f"\n{len(items)} test crystals, t_start {args.t_start}, {args.steps} reverse steps, seed 0\n")
    print(table[columns].to_markdown(index=False, floatfmt=".3f"))

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for guidance, part in table.groupby("guidance", sort=False):
        label = LABELS[guidance]
        for ax, column in zip(axes, ["match rate (%)", "site types (%)", "DOS MAE (fwd)"]):
            ax.plot(part["strength"], part[column], "o-", label=label)
            ax.set(xlabel="guidance strength", ylabel=column)
    fig.suptitle(f"{len(items)} test crystals from t_start = {args.t_start}, {args.steps} reverse steps", fontsize="medium")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=len(SERIES), frameon=False)
    fig.savefig(args.out, dpi=110)
    print(f"\nfigure: {args.out}")


if __name__ == "__main__":
    main()
