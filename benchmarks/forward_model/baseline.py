"""Is the forward model worth its gradient? Its DOS error against the per-element-mean baseline, per noise level.

    python -m benchmarks.forward_model.baseline [--models DIR | --checkpoint FILE] [--data FILE] [--split test] [--device cpu]

Baseline: every atom's DOS predicted as the mean DOS of its element over the training split (elements absent
from training: the mean DOS of all training atoms); it needs no structure and sees the clean types. The
forward model sees the crystal noised to step t (seeded). MAE in states/eV/atom over atoms and energies. The
models issue asks for the forward model at t = 0 to be at least 40 % below the baseline. Printed beside it: the
per-element *median* DOS, the best any per-element table does in MAE (a model trained with forward_loss=l1
starts from it with model.element_baseline=true).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

import crystaldos
from crystaldos.checkpoint import PRETRAINED_DIR, load_checkpoint
from crystaldos.train.report import forward_model_test_errors, per_element_baseline_mae


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=None, help="folder with forward.pt (default: the shipped models)")
    parser.add_argument("--checkpoint", default=None, help="a forward-model checkpoint file, e.g. a run's model.pt")
    parser.add_argument("--data", default=None, help="data file (default: the embedded data set)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--t", type=int, nargs="+", default=[0, 200, 500, 1000])
    parser.add_argument("--device", default="cpu", help="cpu | auto | cuda (where the model runs)")
    args = parser.parse_args()
    ds = crystaldos.load_dataset(args.data)
    split = ds.split(args.split)
    baseline = per_element_baseline_mae(ds.split("train"), split)
    median = per_element_baseline_mae(ds.split("train"), split, "median")
    checkpoint = load_checkpoint(Path(args.checkpoint or Path(args.models or PRETRAINED_DIR) / "forward.pt"), kind="forward")
    model = forward_model_test_errors(checkpoint, split, steps=args.t, device=args.device)
    rows = [{"t": t, "forward model MAE": m, "per-element mean MAE": baseline, "below baseline (%)": 100 * (1 - m / baseline),
             "per-element median MAE": median, "below median (%)": 100 * (1 - m / median)}
            for t, m in zip(model["t"], model["mae"])]
    print(f"{len(split)} crystals of the {args.split} split; states/eV/atom")
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
