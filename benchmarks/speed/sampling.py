"""Sampling throughput of the shipped models, printed as tables.

    python -m benchmarks.speed.sampling [--batch-sizes 1 8 32] [--steps 50 200] [--threads 2] [--step-lr 1e-5 0]
                                        [--models FOLDER --data FILE]   # e.g. format-2 models on format-2 crystals
                                        [--crystals N]   # the same N seeded test crystals at every batch size

1. crystals/s for guidance none / CFG / CBG vs batch size and reverse steps
   (reconstruction from t_start = T of test crystals; every step is a corrector
   and a predictor pass, or only the predictor's with ``--step-lr 0``);
2. the cost of one guided step: CBG (unconditional pass + forward-model gradient)
   relative to CFG (one doubled pass) and to the unguided pass.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import crystaldos
from crystaldos import Sampler
from crystaldos.sampler import DEFAULT_STEP_LR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--steps", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--step-lr", type=float, nargs="+", default=[DEFAULT_STEP_LR],
                        help="Langevin corrector steps to time (0: no corrector, one network pass per step)")
    parser.add_argument("--models", default=None, help="folder with cfg.pt, uncond.pt, forward.pt (default: the shipped)")
    parser.add_argument("--data", default=None, help="data file whose test crystals are sampled (default: the embedded)")
    parser.add_argument("--crystals", type=int, default=None,
                        help="sample the same N test crystals (seeded choice) in batches of each size, so that batch sizes "
                             "compare at equal cell sizes (default: one batch of the first crystals)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sampler = Sampler.from_pretrained(args.models)
    items = list(crystaldos.load_dataset(args.data).split("test"))
    if args.crystals:
        items = [items[i] for i in np.random.default_rng(0).choice(len(items), args.crystals, replace=False)]
    T = sampler.diffusion.timesteps
    print(f"threads {args.threads}; mean atoms per crystal {sum(len(i.structure) for i in items) / len(items):.1f}\n")
    print("| guidance | step_lr | batch | steps | seconds per batch | crystals/s | ms per step |\n| --- | --- | --- | --- | --- | --- | --- |")
    per_step = {}
    for step_lr in args.step_lr:
        for steps in args.steps:
            for batch in args.batch_sizes:
                if args.crystals:
                    batches = [items[b : b + batch] for b in range(0, len(items), batch)]
                else:
                    batches = [(items * (batch // len(items) + 1))[:batch]]
                for guidance in ("none", "cfg", "cbg"):
                    start = time.perf_counter()
                    for chosen in batches:
                        sampler.reconstruct([i.structure for i in chosen], [i.dos for i in chosen], guidance=guidance,
                                            t_start=T, steps=steps, step_lr=step_lr, progress=False)
                    seconds = (time.perf_counter() - start) / len(batches)  # per batch
                    per_step[(guidance, step_lr, batch, steps)] = seconds / steps
                    print(f"| {guidance} | {step_lr:g} | {batch} | {steps} | {seconds:.2f} | {batch / seconds:.2f} | "
                          f"{1000 * seconds / steps:.1f} |", flush=True)
    print("\n| step_lr | batch | steps | CBG / CFG step cost | CBG / unguided | CFG / unguided |\n| --- | --- | --- | --- | --- | --- |")
    for step_lr in args.step_lr:
        for steps in args.steps:
            for batch in args.batch_sizes:
                n, c, b = (per_step[(g, step_lr, batch, steps)] for g in ("none", "cfg", "cbg"))
                print(f"| {step_lr:g} | {batch} | {steps} | {b / c:.2f} | {b / n:.2f} | {c / n:.2f} |")


if __name__ == "__main__":
    main()
