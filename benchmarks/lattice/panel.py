"""Does the model recover the lattice of simple textbook crystals? Volume-per-atom errors from t_start = 200.

    python -m benchmarks.lattice.panel --samples 4 --t-start 200 [--lattice-step ddim]

Six hand-built crystals (Mo bcc, NaCl rocksalt, Cu fcc, Si diamond, GaAs zincblende, MgO rocksalt; not
taken from the data set), each labelled by the labeller the shipped models' data set was built with,
reconstructed with CFG (omega = 1) from the crystal noised to ``t_start``. Prints every sample's formula and
signed volume-per-atom error, and how many of the samples land within 5 % of the true volume. The target
of the lattice issue: at least 3 of 4 samples within 5 % for at least 5 of the 6 crystals.

``--relax`` also relaxes every sample with CHGNet (the data set's relaxer), as ``Sampler.design`` does, and prints
the relaxed volumes' errors beside the raw ones.
"""

from __future__ import annotations

import argparse

import numpy as np

import crystaldos
from crystaldos import Sampler
from crystaldos.evaluate import lattice_panel_rows
from crystaldos.labellers import XTBLabeller
from crystaldos.sampler import DEFAULT_LATTICE_STEP, DEFAULT_STEP_LR, DEFAULT_TIE_TYPES, LATTICE_STEPS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--t-start", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", default=None, help="folder of checkpoints (default: the shipped ones; uncond.pt is not needed)")
    parser.add_argument("--lattice-step", default=DEFAULT_LATTICE_STEP, choices=LATTICE_STEPS, help="reverse step of the lattice")
    parser.add_argument("--step-lr", type=float, default=DEFAULT_STEP_LR, help="Langevin corrector step on X (0: none)")
    parser.add_argument("--tie-types", action=argparse.BooleanOptionalAction, default=DEFAULT_TIE_TYPES, help="sites with identical target DOS get one type")
    parser.add_argument("--relax", action="store_true", help="also relax every sample (CHGNet) and count the relaxed volumes")
    args = parser.parse_args()
    sampler = Sampler.from_pretrained(args.models, require_uncond=False)  # CFG only
    labeller = XTBLabeller.for_dataset(crystaldos.load_dataset().attrs)
    relaxer = None
    if args.relax:
        from crystaldos.relax import Relaxer

        relaxer = Relaxer()
    table = lattice_panel_rows(sampler, labeller, args.samples, args.t_start, args.seed, args.lattice_step, args.step_lr,
                               args.tie_types, relaxer=relaxer)
    needed = int(np.ceil(0.75 * args.samples))
    print(table.to_markdown(index=False))
    print(f"\n{int((table['within 5 %'] >= needed).sum())} of {len(table)} crystals have >= 3/4 of their samples within 5 % "
          "of the true volume per atom")
    if relaxer is not None:
        print(f"relaxed: {int((table['relaxed within 5 %'] >= needed).sum())} of {len(table)} crystals")


if __name__ == "__main__":
    main()
