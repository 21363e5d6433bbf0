"""Where does the lattice go wrong? One-step clean-lattice estimates of the CFG denoiser, per noise level.

    python -m benchmarks.lattice.denoising --split test --seeds 4
    python -m benchmarks.lattice.denoising --cfg build/runs/lam10/model.pt     # any CFG checkpoint
    python -m benchmarks.lattice.denoising --cfg runs/v2/model.pt --data build/preview_v2_37.nc --split train --max-sites 2

For every crystal of the split, noise it to step t (cosine DDPM on L, in Å) and take the denoiser's one-step
estimate of the clean lattice, L0_hat = (L_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t). Reports, per t, the
median and 90th percentile of |volume error| of L0_hat (%), and the same for the estimate that needs no
network, "no denoising" (eps_hat = 0, i.e. L_t / sqrt(abar_t)). Also the lattice loss (MSE of eps_hat, the training objective) per t. If the denoiser's
one-step estimate is already 10 %+ off at t = 200, the reverse process cannot recover the volume: the fix is in
the lattice's parametrisation or loss, not in the sampler.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from benchmarks.tables import show_row, show_table

import crystaldos
from crystaldos.checkpoint import PRETRAINED_DIR, build_network, load_checkpoint
from crystaldos.diffusion import DiffusionConfig, JointDiffusion
from crystaldos.data import collate
from crystaldos.model import one_hot_types

STEPS = (10, 50, 100, 200, 300, 500, 700, 1000)


def one_step_volume_errors(model, diffusion: JointDiffusion, batch, t_value: int, seed: int):
    """Noise ``batch`` to step ``t_value`` (seeded) and return the signed volume errors (%) of the denoiser's one-step
    clean-lattice estimate and of "no denoising" (L_t / sqrt(abar)), each (B,), and the noised crystal with the output."""
    t = torch.full((batch.num_graphs,), t_value)
    noisy = diffusion.noise(one_hot_types(batch.atom_types), batch.frac_coords, batch.lattice, t, batch.batch,
                            torch.Generator().manual_seed(seed))
    out = model(noisy.types, noisy.frac_coords, noisy.lattice, t, batch.edge_index, batch.batch, batch.dos,
                torch.ones(batch.num_graphs, dtype=torch.bool))
    denoised = volume_error_pct(diffusion.clean_from_eps(noisy.lattice, out.eps_lattice, t), batch.lattice)
    plain = volume_error_pct(noisy.lattice / diffusion.alpha_bars[t_value].sqrt(), batch.lattice)
    return denoised, plain, noisy, out


def volume_error_pct(estimate: torch.Tensor, truth: torch.Tensor) -> np.ndarray:
    """|det(estimate)| / |det(truth)| - 1, in %, per crystal."""
    return (100 * (torch.linalg.det(estimate).abs() / torch.linalg.det(truth).abs() - 1)).numpy()


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="test")
    parser.add_argument("--seeds", type=int, default=4, help="noise draws per crystal and step")
    parser.add_argument("--cfg", default=None, help="a CFG checkpoint (default: the shipped cfg.pt)")
    parser.add_argument("--data", default=None, help="the checkpoint's data file (default: the embedded data set)")
    parser.add_argument("--max-sites", type=int, default=None, help="only crystals with at most this many sites")
    args = parser.parse_args()
    checkpoint = load_checkpoint(args.cfg or PRETRAINED_DIR / "cfg.pt", kind="cfg")
    model = build_network(checkpoint).eval()
    diffusion = JointDiffusion(DiffusionConfig.from_dict(checkpoint["diffusion_config"]))
    items = [i for i in crystaldos.load_dataset(args.data).split(args.split)
             if args.max_sites is None or len(i.structure) <= args.max_sites]
    batch = collate(items)
    rows = []
    for t_value in STEPS:
        errors = {"denoiser": [], "no denoising": []}
        losses = []
        for seed in range(args.seeds):
            denoised, plain, noisy, out = one_step_volume_errors(model, diffusion, batch, t_value, seed)
            errors["denoiser"].append(denoised)
            errors["no denoising"].append(plain)
            losses.append(float((((out.eps_lattice - noisy.eps_lattice) / noisy.lattice_scale[:, None, None]) ** 2).mean()))
        row = {"t": t_value, "noise std (Å)": float((1 - diffusion.alpha_bars[t_value]).sqrt()),
               "eps MSE (loss)": float(np.mean(losses))}
        for name, values in errors.items():
            e = np.abs(np.concatenate(values))
            row[f"{name}: median |dV| %"] = float(np.median(e))
            row[f"{name}: 90th pct %"] = float(np.percentile(e, 90))
            row[f"{name}: within 5 % (%)"] = float(100 * np.mean(e <= 5))
        rows.append(row)
        show_row(rows)
    show_table(rows, f"{len(items)} crystals of the {args.split} split{f' with <= {args.max_sites} sites' if args.max_sites else ''} x {args.seeds} noise draws; {args.cfg or 'shipped cfg.pt'}, "
                     f"conditional branch, lambda_lattice = {diffusion.config.lambda_lattice}")


if __name__ == "__main__":
    main()
