"""Cost of the default (converged) labeller per crystal, on a seeded random sample of the embedded data set.

    python -m benchmarks.labeller.cost --n 100 --seed 0 --out build/cost_sample

Prints one line per crystal as it goes (so a killed run still tells something), then the mean,
median and max wall time (one core) and the failures by cause. With ``--out``, the labels (on the
rebuild's wide grid, -25 ... +10 eV) are written there as a build chunk, which
``benchmarks/forward_model/element_identification.py --data DIR`` reads.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import numpy as np

import crystaldos
from crystaldos.data.build import WIDE_GRID
from crystaldos.data.records import CrystalDOS
from crystaldos.data.store import write_netcdf
from crystaldos.labellers import LabellingError, XTBLabeller


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="folder for the labels (chunk_0000.nc)")
    args = parser.parse_args()
    ds = crystaldos.load_dataset()
    chosen = np.random.default_rng(args.seed).choice(len(ds), size=min(args.n, len(ds)), replace=False)
    labeller = XTBLabeller(grid=WIDE_GRID)
    times, failures, records = [], Counter(), []
    for rank, index in enumerate(chosen):
        item = ds[int(index)]
        start = time.perf_counter()
        try:
            dos = labeller.label(item.structure)
            status = f"gap {dos.attrs['band_gap_eV']:.2f} eV, k-mesh {dos.attrs['k_mesh']}, SCF {dos.attrs['scf_temperature_K']:.0f} K"
            records.append(CrystalDOS(item.id, item.structure, dos, source=item.source))
        except LabellingError as err:
            failures[type(err).__name__] += 1
            status = f"{type(err).__name__}: {str(err)[:80]}"
        times.append(time.perf_counter() - start)
        print(f"{rank:4d} {item.id:24s} {len(item.structure):3d} sites {times[-1]:7.1f} s  {status}", flush=True)
    t = np.array(times)
    print(f"\n{len(t)} crystals: mean {t.mean():.1f} s, median {np.median(t):.1f} s, max {t.max():.1f} s per crystal (one core)")
    print(f"failures: {dict(failures) or 'none'} ({sum(failures.values())} of {len(t)})")
    if args.out and records:
        args.out.mkdir(parents=True, exist_ok=True)
        write_netcdf(records, args.out / "chunk_0000.nc", WIDE_GRID, labeller.describe())


if __name__ == "__main__":
    main()
