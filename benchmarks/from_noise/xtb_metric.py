"""Does the xTB DOS of a sample tell a matching sample from a wrong one, by any distance between DOS curves?

    OMP_NUM_THREADS=1 python -m benchmarks.from_noise.xtb_metric --cache build/best_of_k_val128_k8_s100_cfg_seed0.json --xtb-k 4

Reads what ``best_of_k.py --xtb-k N`` left (the samples and their labels) and takes the crystals where, among the
first N samples, at least one that matches and one that does not were labelled. Those samples are labelled again
(the project's labeller; a time limit as in best_of_k.py) and compared with the target by four distances: the MAE
and the earth mover's distance (eV) of the total DOS per atom, the site-by-site MAE, and the MAE of the total DOS
after Gaussian smoothing (``--smooth`` eV), which forgives peaks that moved a little. Printed per distance: for how
many crystals a matching sample has the lowest distance, against what picking one labelled sample at random would
give (the mean of 1 / number labelled ... summed over matching ones), and the median distance of matching and of
wrong samples.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from benchmarks.from_noise.best_of_k import REFUSED, label_with_time_limit, load_xtb_labels
from pymatgen.core import Structure
from scipy.ndimage import gaussian_filter1d
from benchmarks.tables import show_table
from tqdm.auto import tqdm

import crystaldos
from crystaldos.dos import total_dos
from crystaldos.metrics import dos_agreement


def distances(dos, target, smooth_eV: float) -> dict[str, float]:
    """Four distances between a sample's site DOS and the target's (both (site, energy), the same grid)."""
    agreement = dos_agreement(dos, target)
    n = target.sizes["site"]
    step = float(target["energy"][1] - target["energy"][0])
    a = gaussian_filter1d(total_dos(dos).values / n, smooth_eV / step)
    b = gaussian_filter1d(total_dos(target).values / n, smooth_eV / step)
    return {"total MAE": agreement["total_mae"], "total EMD (eV)": agreement["total_wasserstein"],
            "site MAE": agreement["site_mae"], f"total MAE, smoothed {smooth_eV} eV": float(np.abs(a - b).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", required=True, help="best_of_k.py's sample cache (its xTB shard files beside it)")
    parser.add_argument("--split", default="val", choices=["train", "val", "test"])
    parser.add_argument("--xtb-k", type=int, default=4)
    parser.add_argument("--smooth", type=float, default=0.5, help="Gaussian sigma (eV) of the smoothed distance")
    parser.add_argument("--timeout", type=int, default=60)
    args = parser.parse_args()
    cache = Path(args.cache)
    per_crystal = json.loads(cache.read_text())
    labels = load_xtb_labels(cache)
    if not labels:
        raise SystemExit(f"no xTB labels beside {cache}: run best_of_k.py --xtb-k {args.xtb_k} first")
    items = list(crystaldos.load_dataset().split(args.split)[: len(per_crystal)])
    chosen = []
    for i, samples in enumerate(per_crystal):
        done = [j for j, x in enumerate(labels.get(str(i), [])[: args.xtb_k]) if "total_mae" in x]
        kinds = {samples[j]["matched"] for j in done}
        if kinds == {True, False}:
            chosen.append((i, done))
    print(f"{len(chosen)} crystals with a matching and a wrong sample labelled", flush=True)
    rows_by_metric: dict[str, list[tuple[list[float], list[bool]]]] = {}
    for i, done in tqdm(chosen, desc="relabelling"):
        per_metric: dict[str, list[float]] = {}
        matched = []
        for j in done:
            try:
                dos = label_with_time_limit(Structure.from_dict(per_crystal[i][j]["structure"]), args.timeout)
            except REFUSED:
                continue  # refused this time (a time limit is wall clock): left out
            for name, value in distances(dos, items[i].dos, args.smooth).items():
                per_metric.setdefault(name, []).append(value)
            matched.append(per_crystal[i][j]["matched"])
        if len(set(matched)) == 2:
            for name, values in per_metric.items():
                rows_by_metric.setdefault(name, []).append((values, matched))
    rows = []
    for name, crystals in rows_by_metric.items():
        wins = sum(m[int(np.argmin(v))] for v, m in crystals)
        chance = sum(sum(m) / len(m) for _, m in crystals)
        rows.append({"distance": name, "crystals": len(crystals), "a match is lowest": wins,
                     "random pick": round(chance, 1),
                     "median, matching": np.median([x for v, m in crystals for x, y in zip(v, m) if y]),
                     "median, wrong": np.median([x for v, m in crystals for x, y in zip(v, m) if not y])})
    show_table(rows, f"{args.split}: xTB DOS of matching and wrong samples from noise against the target")


if __name__ == "__main__":
    main()
