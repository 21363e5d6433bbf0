"""Physics panel and convergence of the labeller: one row per textbook crystal.

For each crystal of ``crystaldos.labellers.panel`` and each labeller setting given, prints the band gap,
the DOS at E_F, whether metal/insulator comes out right, and the convergence of the per-element DOS
(states/eV/atom, MAE) between the primitive cell, the conventional cell and a 2x1x1 supercell of the
primitive cell, and between the chosen k-sampling and twice it; plus the cost (s, one core).

    python -m benchmarks.labeller.panel --method GFN2-xTB --sampling kmesh --k-density 40
    python -m benchmarks.labeller.panel --method GFN1-xTB --sampling gamma     # the labeller of data format 1
    python -m benchmarks.labeller.panel --dataset 10 --seed 0                  # 10 random crystals of the embedded set

With ``--dataset N`` the rows are N seeded random crystals of the embedded data set (at most ``--max-sites``
sites in the primitive cell, so that the 2x1x1 and conventional cells stay affordable); their metal/insulator
verdict is printed but there is no expectation to check. The conventional cell is pymatgen's conventional
standard cell (``SpacegroupAnalyzer``); the column "conv/prim" gives its size in primitive cells.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import pandas as pd

from crystaldos.dos import element_dos, mae
from crystaldos.labellers import LabellingError, XTBLabeller
from crystaldos.labellers.panel import physics_panel


def element_mae(a, b) -> float:
    """Largest per-element MAE (states/eV/atom) between two atom-level DOS of the same crystal."""
    return float(mae(element_dos(a), element_dos(b)).max())


def row(name: str, structure, expected: str | None, labeller: XTBLabeller, convergence: bool) -> dict:
    primitive = structure.get_primitive_structure()
    start = time.perf_counter()
    try:
        dos = labeller.label(primitive)
    except LabellingError as err:
        return {"crystal": name, "expected": expected, "error": type(err).__name__}
    cost = time.perf_counter() - start
    gap = float(dos.attrs["band_gap_eV"])
    at_ef = float(np.interp(0.0, dos["energy"].values, dos.values.mean(axis=0)))
    verdict = "insulator" if gap >= 0.5 else ("metal" if at_ef > 0.05 and gap == 0 else "neither")
    out = {
        "crystal": name,
        "expected": expected,
        "gap (eV)": gap,
        "DOS(E_F)": at_ef,
        "verdict": verdict,
        "right": verdict == expected if expected else None,
        "s (prim)": cost,
        "SCF T (K)": dos.attrs.get("scf_temperature_K"),
    }
    if convergence:
        conventional = labeller.label(structure)
        out["conv/prim"] = len(structure) // len(primitive)
        supercell = labeller.label(primitive * (2, 1, 1))
        out["prim vs conv"] = element_mae(dos, conventional)
        out["prim vs 2x1x1"] = element_mae(dos, supercell)
        if labeller.sampling == "kmesh":
            denser = dataclasses.replace(labeller, k_density=2 * labeller.k_density).label(primitive)
        else:
            denser = dataclasses.replace(labeller, min_length=2 * labeller.min_length, max_orbitals=4000).label(primitive)
        out["x2 sampling"] = element_mae(dos, denser)
    return out


def dataset_crystals(n: int, seed: int, max_sites: int) -> dict:
    """``n`` seeded random crystals of the embedded data set as {id: (conventional cell, None)}."""
    import crystaldos
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    ds = crystaldos.load_dataset()
    chosen = {}
    for index in np.random.default_rng(seed).permutation(len(ds)):
        item = ds[int(index)]
        if len(item.structure.get_primitive_structure()) > max_sites:
            continue
        chosen[f"{item.formula} ({item.id})"] = (SpacegroupAnalyzer(item.structure).get_conventional_standard_structure(), None)
        if len(chosen) == n:
            break
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="GFN2-xTB")
    parser.add_argument("--sampling", default="kmesh", choices=["kmesh", "gamma"])
    parser.add_argument("--k-density", type=float, default=40.0)
    parser.add_argument("--temperature", type=float, default=None, help="SCF electronic temperature, K")
    parser.add_argument("--no-convergence", action="store_true", help="only the metal/insulator panel")
    parser.add_argument("--only", nargs="*", help="crystal names")
    parser.add_argument("--dataset", type=int, default=0, help="instead of the panel: N random crystals of the embedded set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-sites", type=int, default=8, help="--dataset: largest primitive cell")
    args = parser.parse_args()
    labeller = XTBLabeller(method=args.method, sampling=args.sampling, k_density=args.k_density)
    if args.temperature is not None:
        labeller = dataclasses.replace(labeller, electronic_temperature=args.temperature)
    rows = []
    crystals = dataset_crystals(args.dataset, args.seed, args.max_sites) if args.dataset else physics_panel()
    for name, (structure, expected) in crystals.items():
        if args.only and name not in args.only:
            continue
        rows.append(row(name, structure, expected, labeller, not args.no_convergence))
        print(pd.DataFrame(rows[-1:]).to_string(index=False, float_format="%.3f"), flush=True)
    print(f"\n{args.method}, sampling={args.sampling}, k_density={args.k_density}")
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
