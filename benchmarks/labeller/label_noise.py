"""How noisy are a data set's own labels? Relabel random test crystals in another cell and compare.

    python -m benchmarks.labeller.label_noise [--data FILE] [--n 10] [--seed 0]

For each of N seeded random crystals of the test split (at most ``--max-sites`` sites), the stored label is
compared with the label the same labeller (``XTBLabeller.for_dataset``) gives the crystal described by another
primitive cell (lattice vectors a + b, b, c; same sites in the same order), which a converged label must not
notice; a Gamma-point label builds its supercell from the cell it is given and samples the zone differently. Printed
beside it: the shipped forward model's error at t = 0 and the per-element-mean baseline on the same
atoms (states/eV/atom, MAE over atoms and energies). A model error at or below the label noise cannot be
improved by a better model: the labels themselves move that much when only the sampling changes.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import crystaldos
from crystaldos import Sampler
from crystaldos.labellers import LabellingError, XTBLabeller
from crystaldos.train.report import element_mean_dos, per_element_baseline
from benchmarks.tables import show_row, show_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-sites", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ds = crystaldos.load_dataset(args.data)
    labeller = XTBLabeller.for_dataset(ds.attrs)
    sampler = Sampler.from_pretrained(device="cpu") if args.data is None else None
    table = element_mean_dos(ds.split("train"))
    test = ds.split("test")
    rows = []
    for index in np.random.default_rng(args.seed).permutation(len(test)):
        item = test[int(index)]
        if len(item.structure) > args.max_sites:
            continue
        sheared = item.structure.copy()
        sheared.make_supercell([[1, 1, 0], [0, 1, 0], [0, 0, 1]])  # determinant 1: the same sites, another cell
        try:
            other_cell = labeller.label(sheared).values
        except LabellingError as err:
            print(f"{item.id}: {type(err).__name__}")
            continue
        stored = np.asarray(item.dos.values)
        baseline = per_element_baseline(item.structure, table)
        row = {"crystal": f"{item.formula} ({item.id})", "sites": len(item.structure),
               "label noise (another cell)": float(np.abs(stored - other_cell).mean()),
               "per-element mean": float(np.abs(stored - baseline).mean())}
        if sampler is not None:
            row["forward model (t=0)"] = float(np.abs(stored - sampler.predict_dos(item.structure).values).mean())
        rows.append(row)
        show_row(rows, "%.3f")
        if len(rows) == args.n:
            break
    mean = {"crystal": "mean", "sites": float(np.mean([r["sites"] for r in rows]))}
    mean |= {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k not in ("crystal", "sites")}
    show_table(rows + [mean], f"Label noise ({labeller.method}, {labeller.sampling} sampling; stored label vs another primitive cell's) "
                              "against model errors on the same atoms, states/eV/atom", floatfmt=".3f")


if __name__ == "__main__":
    main()
