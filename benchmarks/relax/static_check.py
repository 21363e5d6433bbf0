"""Are the crystals of a data file at equilibrium? CHGNet's forces and stress on a seeded random sample, as stored.

    python -m benchmarks.relax.static_check build/preview_v3_22.nc --n 60 --seed 0
    python -m benchmarks.relax.static_check default --n 60 --seed 0      # the embedded (format-2, unrelaxed) set

For each crystal: the largest force (eV/Å) and the pressure (GPa) from one CHGNet evaluation of the stored crystal
(no relaxation). Prints the median and 90th percentile of both; a relaxed set stored faithfully sits at the
relaxer's tolerance (0.05 eV/Å).
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np


def main(argv: list[str] | None = None) -> None:
    warnings.filterwarnings("ignore")
    from pymatgen.io.ase import AseAtomsAdaptor

    import crystaldos
    from crystaldos.relax import EV_PER_A3_PER_GPA, _chgnet

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="a data file, or 'default' for the embedded set")
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from chgnet.model.dynamics import CHGNetCalculator

    dataset = crystaldos.load_dataset(None if args.data == "default" else args.data)
    rng = np.random.default_rng(args.seed)
    picks = rng.choice(len(dataset), size=min(args.n, len(dataset)), replace=False)
    calculator = CHGNetCalculator(model=_chgnet(), use_device="cpu")
    forces, pressures = [], []
    for index in picks:
        atoms = AseAtomsAdaptor.get_atoms(dataset[int(index)].structure)
        atoms.calc = calculator
        forces.append(float(np.linalg.norm(atoms.get_forces(), axis=1).max()))
        pressures.append(float(-np.mean(atoms.get_stress(voigt=True)[:3]) / EV_PER_A3_PER_GPA))
    forces, pressures = np.array(forces), np.abs(pressures)
    print(f"{args.data}: {len(picks)} crystals (seed {args.seed}), one CHGNet evaluation each, as stored")
    print(f"largest force: median {np.median(forces):.3f} eV/Å, 90th percentile {np.percentile(forces, 90):.3f}, "
          f"within 0.05 eV/Å {100 * np.mean(forces <= 0.05):.0f} %, within 0.1 {100 * np.mean(forces <= 0.1):.0f} %")
    print(f"|pressure|: median {np.median(pressures):.2f} GPa, 90th percentile {np.percentile(pressures, 90):.2f} GPa")


if __name__ == "__main__":
    main()
