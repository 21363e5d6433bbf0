"""Is the forward model worth its gradient? Its DOS error against the per-element-mean baseline, per noise level.

    python benchmarks/forward_baseline.py [--models DIR] [--split test]

Baseline: every atom's DOS predicted as the mean DOS of its element over the training split (elements absent
from training: the mean DOS of all training atoms); it needs no structure and sees the clean types. The
forward model sees the crystal noised to step t (seeded). MAE in states/eV/atom over atoms and energies. The
models issue asks for the forward model at t = 0 to be at least 40 % below the baseline.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from torch_geometric.loader import DataLoader

import crystaldos
from crystaldos import Sampler
from crystaldos.data.graph import structure_to_data
from crystaldos.train.loop import forward_model_errors
from crystaldos.train.report import per_element_baseline_mae


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=None)
    parser.add_argument("--split", default="test")
    parser.add_argument("--t", type=int, nargs="+", default=[0, 200, 500, 1000])
    args = parser.parse_args()
    ds = crystaldos.load_dataset()
    items = list(ds.split(args.split))
    baseline = per_element_baseline_mae(ds.split("train"), items)
    sampler = Sampler.from_pretrained(args.models, device="cpu")
    loader = DataLoader([structure_to_data(i.structure, np.asarray(i.dos.values)) for i in items], batch_size=64)
    model = forward_model_errors(sampler.forward_model, sampler.diffusion, loader, steps=args.t)
    rows = [{"t": t, "forward model MAE": m, "per-element mean MAE": baseline, "below baseline (%)": 100 * (1 - m / baseline)}
            for t, m in zip(model["t"], model["mae"])]
    print(f"{len(items)} crystals of the {args.split} split; states/eV/atom")
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
