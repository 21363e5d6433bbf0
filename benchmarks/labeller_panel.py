"""Physics panel and convergence of the labeller: one row per textbook crystal.

For each crystal of ``crystaldos.labellers.panel`` and each labeller setting given, prints the band gap,
the DOS at E_F, whether metal/insulator comes out right, and the convergence of the per-element DOS
(states/eV/atom, MAE) between the primitive cell, the conventional cell and a 2x1x1 supercell of the
primitive cell, and between the chosen k-sampling and twice it; plus the cost (s, one core).

    python benchmarks/labeller_panel.py --method GFN2-xTB --sampling kmesh --k-density 40
    python benchmarks/labeller_panel.py --method GFN1-xTB --sampling gamma     # the labeller of data format 1
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


def row(name: str, structure, expected: str, labeller: XTBLabeller, convergence: bool) -> dict:
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
        "right": verdict == expected,
        "s (prim)": cost,
        "SCF T (K)": dos.attrs.get("scf_temperature_K"),
    }
    if convergence:
        conventional = labeller.label(structure)
        supercell = labeller.label(primitive * (2, 1, 1))
        out["prim vs conv"] = element_mae(dos, conventional)
        out["prim vs 2x1x1"] = element_mae(dos, supercell)
        if labeller.sampling == "kmesh":
            denser = dataclasses.replace(labeller, k_density=2 * labeller.k_density).label(primitive)
        else:
            denser = dataclasses.replace(labeller, min_length=2 * labeller.min_length, max_orbitals=4000).label(primitive)
        out["x2 sampling"] = element_mae(dos, denser)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="GFN2-xTB")
    parser.add_argument("--sampling", default="kmesh", choices=["kmesh", "gamma"])
    parser.add_argument("--k-density", type=float, default=40.0)
    parser.add_argument("--temperature", type=float, default=None, help="SCF electronic temperature, K")
    parser.add_argument("--no-convergence", action="store_true", help="only the metal/insulator panel")
    parser.add_argument("--only", nargs="*", help="crystal names")
    args = parser.parse_args()
    labeller = XTBLabeller(method=args.method, sampling=args.sampling, k_density=args.k_density)
    if args.temperature is not None:
        labeller = dataclasses.replace(labeller, electronic_temperature=args.temperature)
    rows = []
    for name, (structure, expected) in physics_panel().items():
        if args.only and name not in args.only:
            continue
        rows.append(row(name, structure, expected, labeller, not args.no_convergence))
        print(pd.DataFrame(rows[-1:]).to_string(index=False, float_format="%.3f"), flush=True)
    print(f"\n{args.method}, sampling={args.sampling}, k_density={args.k_density}")
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
