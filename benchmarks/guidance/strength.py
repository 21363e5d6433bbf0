"""Reconstruction quality vs guidance strength (CFG omega, CBG s), printed as a table and plotted.

    python -m benchmarks.guidance.strength [--limit 64] [--t-start 200] [--steps 100] [--out docs/research/guidance_strength.png]

Each strength is one ``run_experiment`` over the first ``limit`` test crystals from
``t_start`` (seed 0), so the rows differ only in the guidance weight. Strength 0 is the
conditional model alone for CFG and the unconditional model alone for CBG. CBG runs twice:
on the separately trained unconditional model (the published method) and on the CFG model's
null branch (``unconditional="cfg-null"``), which tells a weak unconditional network apart
from a weak guidance gradient.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from benchmarks.reconstruction_rows import load, parse_args, scored_row

#: (label, guidance, unconditional score) -> strengths
SERIES = {
    ("cfg", "cfg", "separate"): [0.0, 0.5, 1.0, 2.0, 4.0],
    ("cbg", "cbg", "separate"): [0.0, 0.5, 1.0, 2.0, 5.0],
    ("cbg (cfg-null)", "cbg", "cfg-null"): [0.0, 0.5, 1.0, 2.0, 5.0],
}
LABELS = {"cfg": "CFG (strength = ω)", "cbg": "CBG (strength = s)", "cbg (cfg-null)": "CBG on the CFG null branch (s)"}


def main() -> None:
    args = parse_args(__doc__, "docs/research/guidance_strength.png")
    sampler, items = load(args)
    rows = [scored_row(sampler, items, args, guidance, strength, {"series": label, "strength": strength}, unconditional)
            for (label, guidance, unconditional), strengths in SERIES.items() for strength in strengths]

    table = pd.DataFrame(rows).assign(guidance=lambda t: t["series"])
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
