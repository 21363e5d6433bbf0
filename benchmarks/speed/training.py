"""Training speed (steps/s) of the three networks at the shipped size, printed as a table.

    python -m benchmarks.speed.training [--threads 1 2] [--steps 30] [--data path] [--recipe equilibrium]

Times forward + backward + AdamW on real batches of the data set's training split (fully connected cells); the
first steps are warm-up. ``--recipe`` times a release recipe's settings (``crystaldos.train.release.RECIPES``:
lattice features, bond lengths), as ``make pretrained`` trains them.
"""

from __future__ import annotations

import argparse
import time

import torch

import crystaldos
from crystaldos.data import collate
from crystaldos.diffusion import JointDiffusion
from crystaldos.train import TrainConfig, batch_losses
from crystaldos.train.loop import build_model, dos_std


def measure(kind: str, batch_size: int, threads: int, steps: int, data: str | None, hidden: int, layers: int,
            recipe: str | None = None) -> tuple[float, int]:
    torch.set_num_threads(threads)
    overrides = []
    if recipe is not None:
        from crystaldos.train.release import RECIPES, overrides_by_kind

        # The recipe's model and diffusion settings for this network (not its optimiser's or its stopping rule's).
        overrides = [item for item in overrides_by_kind(list(RECIPES[recipe].overrides))[kind]
                     if item.startswith(("model.", "diffusion."))]
    config = TrainConfig.from_sources(None, overrides, kind=kind, batch_size=batch_size)
    config.model.hidden, config.model.n_layers = hidden, layers
    ds = crystaldos.load_dataset(data).split("train")
    records = list(ds[: batch_size * 4])
    records = (records * (batch_size * 4 // len(records) + 1))[: batch_size * 4]  # small data sets repeat
    config.model.n_energies = ds.grid.n_points
    config.model.dos_scale = dos_std([collate(records)])
    model = build_model(config)
    diffusion = JointDiffusion(config.diffusion)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batches = [collate(records[i * batch_size : (i + 1) * batch_size]) for i in range(4)]
    generator = torch.Generator().manual_seed(0)
    for i in range(steps + 5):
        if i == 5:
            start = time.perf_counter()
        parts = batch_losses(model, diffusion, batches[i % 4], kind, 0.2, generator)
        optimizer.zero_grad()
        parts["loss"].backward()
        optimizer.step()
    return steps / (time.perf_counter() - start), sum(p.numel() for p in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--data", default=None)
    parser.add_argument("--recipe", default=None, help="time a release recipe's model settings, e.g. equilibrium")
    args = parser.parse_args()
    print("| model | parameters | threads | batch | steps/s | crystals/s |\n| --- | --- | --- | --- | --- | --- |")
    for kind in ("cfg", "uncond", "forward"):
        for threads in args.threads:
            rate, n_params = measure(kind, args.batch_size, threads, args.steps, args.data, args.hidden, args.layers,
                                       args.recipe)
            print(f"| {kind} | {n_params:,} | {threads} | {args.batch_size} | {rate:.2f} | {rate * args.batch_size:.0f} |", flush=True)


if __name__ == "__main__":
    main()
