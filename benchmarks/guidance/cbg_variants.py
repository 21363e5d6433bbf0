"""Classifier-based guidance, plain vs DPS-style, against the unguided model: reconstruction from t_start.

    python -m benchmarks.guidance.cbg_variants [--split val] [--limit 64] [--t-start 200] [--strengths 1 4] [--steps N]

Plain CBG adds s * grad log p(y | S_t) with the forward model at step t (the published method); CBG-DPS
adds s * grad_{S_t} log p(y | S0_hat(S_t)), the forward model at t = 0 on the unconditional denoiser's
predicted clean crystal, differentiated through the denoiser. Same test crystals, seed and schedule for
every row; "none" is the unguided unconditional model (the baseline a guidance must beat). The sampler's
defaults (crystaldos.sampler) for everything else. Choose on --split val; report on test.
"""

from __future__ import annotations

import argparse
import time

import torch

import crystaldos
from crystaldos import Sampler
from crystaldos.evaluate import run_experiment, summary_table
from benchmarks.tables import show_row, show_table

COLUMNS = ["match rate (%)", "composition (%)", "site types (%)", "|dV| (%)", "median |dV| (%)", "V within 5 % (%)", "DOS MAE (fwd)",
           "s / structure"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--limit", type=int, default=64, help="first N crystals of the split")
    parser.add_argument("--t-start", type=int, nargs="+", default=[200])
    parser.add_argument("--strengths", type=float, nargs="+", default=[1.0, 4.0])
    parser.add_argument("--variables", nargs="+", default=["types", "coords", "lattice"], choices=["types", "coords", "lattice"],
                        help="guide only these variables")
    parser.add_argument("--guidances", nargs="+", default=["cbg", "cbg-dps"], choices=["cbg", "cbg-dps"])
    parser.add_argument("--no-baseline", action="store_true", help="skip the unguided row")
    parser.add_argument("--steps", type=int, default=None, help="reverse steps (default t_start)")
    parser.add_argument("--models", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    sampler = Sampler.from_pretrained(args.models, device="cpu")
    items = list(crystaldos.load_dataset().split(args.split))[: args.limit]
    settings = ([] if args.no_baseline else [("none", 0.0)]) + [(g, s) for s in args.strengths for g in args.guidances]
    rows = []
    for guidance, strength in settings:
        started = time.perf_counter()
        per_variable = {v: strength for v in args.variables}
        ds = run_experiment(sampler, items, guidances=(guidance,), t_starts=tuple(args.t_start), strengths={guidance: per_variable},
                            steps=args.steps, seed=args.seed, progress=False)
        for _, row in summary_table(ds).iterrows():
            rows.append({"guidance": guidance, "s": strength, "guided": "+".join(args.variables) if guidance != "none" else "-",
                         "t_start": int(row["t_start"]), "n": int(row["n"]),
                         **{c: row[c] for c in COLUMNS}})
            show_row(rows)
        print(f"  ({time.perf_counter() - started:.0f} s)", flush=True)
    show_table(rows, f"CBG variants, first {len(items)} {args.split} crystals, seed {args.seed}, "
                     f"{args.steps or 't_start'} reverse steps")


if __name__ == "__main__":
    main()
