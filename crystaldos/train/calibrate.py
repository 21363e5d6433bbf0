"""Recompute a released forward model's likelihood calibration on the validation split, in place.

    python -m crystaldos.train.calibrate crystaldos/pretrained/forward.pt [--data FILE] [--batch-size 64]

A release computes the calibration when it is written (:func:`crystaldos.train.loop.forward_model_errors`:
sigma(t) and the fraction of effectively independent energies at each step t). This rewrites it for a release
made before a calibration field existed, with the same function, data split and seed; the weights are untouched.
The checkpoint records what was done in ``train["calibration_split"]`` and ``train["recalibrated"]``.
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

from crystaldos.checkpoint import build_network, checkpoint_grid, load_checkpoint, save_checkpoint


def recalibrate(path: str | Path, data: str | None = None, batch_size: int = 64) -> dict:
    """Rewrite the calibration of the forward-model checkpoint at ``path`` on ``data``'s val split; returns it."""
    from torch_geometric.loader import DataLoader

    from crystaldos.data import load_dataset
    from crystaldos.diffusion import DiffusionConfig, JointDiffusion
    from crystaldos.train.loop import forward_model_errors

    ckpt = load_checkpoint(path, kind="forward")
    dataset = load_dataset(data)
    if not checkpoint_grid(ckpt).matches(dataset.grid):
        raise ValueError(f"{path} was trained on grid {checkpoint_grid(ckpt)}, the data {data or 'default'} use {dataset.grid}")
    network = build_network(ckpt)
    diffusion = JointDiffusion(DiffusionConfig.from_dict(ckpt["diffusion_config"]))
    loader = DataLoader(dataset.split("val").to_graphs(), batch_size=batch_size, shuffle=False)
    calibration = forward_model_errors(network, diffusion, loader)
    ckpt["calibration"] = calibration
    ckpt.setdefault("train", {})["calibration_split"] = "val"
    ckpt["train"]["recalibrated"] = f"{datetime.date.today().isoformat()}: python -m crystaldos.train.calibrate"
    save_checkpoint(ckpt, path)
    return calibration


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a released forward-model checkpoint (rewritten in place)")
    parser.add_argument("--data", default=None, help="data file (default: embedded)")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    calibration = recalibrate(args.checkpoint, args.data, args.batch_size)
    print(f"{'t':>5} {'MAE':>7} {'sigma':>7} {'effective fraction':>19}")
    for row in zip(calibration["t"], calibration["mae"], calibration["rmse"], calibration["effective_fraction"]):
        print(f"{row[0]:5d} {row[1]:7.4f} {row[2]:7.4f} {row[3]:19.4f}")


if __name__ == "__main__":
    main()
