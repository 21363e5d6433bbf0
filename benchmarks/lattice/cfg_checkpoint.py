"""The lattice of one CFG checkpoint on its own: the six-crystal lattice test and the first test crystals, from t_start.

    python -m benchmarks.lattice.cfg_checkpoint runs/cfg/model.pt [--lattice-step ddim] [--limit 64] [--t-start 200]
    python -m benchmarks.lattice.cfg_checkpoint runs/v2/model.pt --data build/preview_v2_37.nc --forward runs/fwd_v2/model.pt

For controlled training runs (e.g. ``crystaldos train --kind cfg --steps 3000 --out-dir runs/a`` against the same
with ``--set diffusion.lattice_noise_atoms=8``): CFG (omega = 1) needs no other network, so the checkpoint is
sampled on its own, with its own diffusion settings (the shipped forward model only fills the sampler's slot).
Prints the lattice-test table (each crystal's 4 samples and their volume errors) and, for the first ``--limit``
test crystals of the embedded data set (or of ``--data``, whose labeller then labels the textbook crystals and
whose DOS grid ``--forward`` must share), the match rate, median |volume error| and share within 5 %.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import crystaldos
from crystaldos.checkpoint import PRETRAINED_DIR
from crystaldos.evaluate import lattice_panel_rows
from crystaldos.labellers import XTBLabeller
from crystaldos.metrics import lattice_errors, match
from crystaldos.sampler import DEFAULT_LATTICE_STEP, DEFAULT_STEP_LR, DEFAULT_TIE_TYPES, LATTICE_STEPS, Sampler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="a CFG model.pt")
    parser.add_argument("--lattice-step", default=DEFAULT_LATTICE_STEP, choices=LATTICE_STEPS)
    parser.add_argument("--step-lr", type=float, default=DEFAULT_STEP_LR, help="Langevin corrector step on X (0: none)")
    parser.add_argument("--tie-types", action=argparse.BooleanOptionalAction, default=DEFAULT_TIE_TYPES, help="sites with identical target DOS get one type")
    parser.add_argument("--limit", type=int, default=64, help="first N test crystals")
    parser.add_argument("--t-start", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=None, help="data file the checkpoint was trained on (default: embedded)")
    parser.add_argument("--forward", type=Path, default=PRETRAINED_DIR / "forward.pt", help="forward model on its DOS grid")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sampler = Sampler.from_checkpoints(args.checkpoint, args.forward, device="cpu")
    dataset = crystaldos.load_dataset(args.data)
    print(f"{args.checkpoint}: diffusion {sampler.diffusion.config.to_dict()}; lattice step {args.lattice_step}, "
          f"t_start {args.t_start}, seed {args.seed}")
    table = lattice_panel_rows(sampler, XTBLabeller.for_dataset(dataset.attrs), 4, args.t_start, args.seed, args.lattice_step,
                               args.step_lr, args.tie_types)
    print(table.to_markdown(index=False))
    print(f"lattice test: {int((table['within 5 %'] >= 3).sum())} of 6 crystals pass; "
          f"{int(table['within 5 %'].sum())} of 24 samples within 5 %")
    items = list(dataset.split("test"))[: args.limit]
    results = sampler.reconstruct([i.structure for i in items], [i.dos for i in items], guidance="cfg", t_start=args.t_start,
                                  seed=args.seed, progress=False, lattice_step=args.lattice_step, step_lr=args.step_lr,
                                  tie_types=args.tie_types)
    volume = np.abs([lattice_errors(r.structure, i.structure)["volume_error_pct"] for r, i in zip(results, items)])
    matched = [match(r.structure, i.structure)[0] for r, i in zip(results, items)]
    print(f"first {len(items)} test crystals: match {100 * np.mean(matched):.1f} %, median |dV| {np.median(volume):.1f} %, "
          f"within 5 % {100 * np.mean(volume <= 5):.1f} %")


if __name__ == "__main__":
    main()
