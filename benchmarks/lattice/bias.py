"""Is the denoiser's clean-lattice estimate biased for particular crystals? Signed one-step volume errors.

    python -m benchmarks.lattice.bias build/learning_curves_v2_lsf/fraction_1/run/model.pt \
        --data build/preview_v2_37.nc --ids aflow-164 aflow-238-s00 aflow-172 pmg-Si

Each crystal is noised to step t with ``--draws`` seeded noise draws (one batch) and the CFG denoiser's one-step
estimate L0_hat = (L_t - sqrt(1 - abar) eps_hat) / sqrt(abar) is compared with the truth: the mean signed and the
median absolute volume error (%), beside the same for "no denoising" (eps_hat = 0), which is unbiased. A mean
far from 0 is a bias that the reverse steps accumulate (docs/research/lattice.md, section 7).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from benchmarks.lattice.denoising import one_step_volume_errors
from benchmarks.tables import show_row, show_table

import crystaldos
from crystaldos.checkpoint import build_network, load_checkpoint
from crystaldos.data import collate
from crystaldos.diffusion import DiffusionConfig, JointDiffusion


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a CFG model.pt")
    parser.add_argument("--data", default=None, help="data file (default: the embedded data set)")
    parser.add_argument("--ids", nargs="+", required=True, help="structure ids of the data set")
    parser.add_argument("--steps", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--draws", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    checkpoint = load_checkpoint(args.checkpoint, kind="cfg")
    model = build_network(checkpoint).eval()
    diffusion = JointDiffusion(DiffusionConfig.from_dict(checkpoint["diffusion_config"]))
    dataset = crystaldos.load_dataset(args.data)
    items = {item.id: (split, item) for split in ("train", "val", "test") for item in dataset.split(split)}
    unknown = [i for i in args.ids if i not in items]
    if unknown:
        raise SystemExit(f"no structures {unknown} in {args.data or 'the embedded data set'}")
    rows = []
    for structure_id in args.ids:
        split, item = items[structure_id]
        batch = collate([item] * args.draws)
        for t_value in args.steps:
            denoised, plain, _, _ = one_step_volume_errors(model, diffusion, batch, t_value, seed=0)
            rows.append({"crystal": f"{item.structure.composition.reduced_formula} ({structure_id}, {split})", "t": t_value,
                         "denoiser: mean dV (%)": float(np.mean(denoised)), "denoiser: median |dV| (%)": float(np.median(np.abs(denoised))),
                         "no denoising: mean dV (%)": float(np.mean(plain)), "no denoising: median |dV| (%)": float(np.median(np.abs(plain)))})
            show_row(rows)
    show_table(rows, f"{args.checkpoint}: one-step clean-lattice estimates, {args.draws} noise draws per crystal and step", floatfmt=".1f")


if __name__ == "__main__":
    main()
