"""What the reconstruction benchmarks share: the command line, the models and crystals, one scored row.

Each row is one :func:`crystaldos.evaluate.run_experiment` over the first ``--limit`` test
crystals from ``--t-start`` with seed 0, so rows differ only in the guidance settings.
"""

from __future__ import annotations

import argparse
import json

import torch

import crystaldos
from crystaldos import Sampler
from crystaldos.evaluate import run_experiment, summary_table


def parse_args(doc: str, default_out: str) -> argparse.Namespace:
    """``--limit`` crystals, ``--t-start``, ``--steps``, ``--threads`` and the figure path ``--out``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--t-start", type=int, default=200)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=default_out)
    return parser.parse_args()


def load(args: argparse.Namespace):
    """The shipped models and the first ``args.limit`` test crystals."""
    torch.set_num_threads(args.threads)
    return Sampler.from_pretrained(), crystaldos.load_dataset().split("test")[: args.limit]


def scored_row(sampler, items, args, guidance: str, strength, labels: dict, unconditional: str = "separate") -> dict:
    """One setting's summary row (match rate, RMSE, validity, DOS errors) plus the columns in ``labels``, printed as JSON."""
    ds = run_experiment(sampler, items, guidances=[guidance], t_starts=[args.t_start], strengths={guidance: strength},
                        steps=args.steps, seed=0, progress=False, unconditional=unconditional)
    row = {**summary_table(ds).iloc[0].to_dict(), "guidance": guidance, **labels}
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    return row
