"""Which variable does guidance help: CBG and CFG applied to the atom types, coordinates or lattice alone.

    python -m benchmarks.guidance.ablation [--limit 64] [--t-start 200] [--steps 100] [--out docs/research/guidance_ablation.png]

Every row is one ``run_experiment`` over the first ``limit`` test crystals from
``t_start`` (seed 0, so all rows share the noise), with the guidance strength given
per variable (``strength={"types": s}``; variables left out are not guided). The
unguided rows (CBG with s = 0 is the unconditional model, CFG with w = 0 the
conditional one) are the baselines each subset is compared with.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from benchmarks.reconstruction_rows import load, parse_args, scored_row

#: guided variables of each row ("-" = none: the baseline).
SUBSETS = [(), ("types",), ("coords",), ("lattice",), ("types", "coords"), ("types", "coords", "lattice")]
STRENGTHS = {"cbg": 0.5, "cfg": 1.0}  # the best strengths of benchmarks/guidance/strength.py
COLUMNS = ["guidance", "guided", "strength", "match rate (%)", "RMSE", "valid (%)", "composition (%)", "site types (%)", "DOS MAE (fwd)"]


def main() -> None:
    args = parse_args(__doc__, "docs/research/guidance_ablation.png")
    sampler, items = load(args)
    rows = [scored_row(sampler, items, args, guidance, {name: strength for name in subset},
                       {"guided": "+".join(subset) or "-", "strength": strength if subset else 0.0})
            for guidance, strength in STRENGTHS.items() for subset in SUBSETS]

    table = pd.DataFrame(rows)
    print(f"\n{len(items)} test crystals, t_start {args.t_start}, {args.steps} reverse steps, seed 0\n")
    print(table[COLUMNS].to_markdown(index=False, floatfmt=".3f"))

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
    labels = [("+".join(s) or "none (baseline)") for s in SUBSETS]
    for ax, column in zip(axes, ["match rate (%)", "site types (%)", "composition (%)"]):
        for offset, (guidance, part) in zip((-0.2, 0.2), table.groupby("guidance", sort=False)):
            name = {"cbg": f"CBG s = {STRENGTHS['cbg']}", "cfg": f"CFG ω = {STRENGTHS['cfg']}"}[guidance]
            ax.barh([i + offset for i in range(len(SUBSETS))], part[column], height=0.4, label=name)
        ax.set(xlabel=column)
    axes[0].set_yticks(range(len(SUBSETS)), labels)
    axes[0].set_ylabel("guided variables")
    fig.suptitle(f"{len(items)} test crystals from t_start = {args.t_start}, {args.steps} reverse steps", fontsize="medium")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=2, frameon=False)
    fig.savefig(args.out, dpi=110)
    print(f"\nfigure: {args.out}")


if __name__ == "__main__":
    main()
