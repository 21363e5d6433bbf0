"""Match rates of an existing evaluation split by whether each test crystal's prototype family was seen in training.

    python -m benchmarks.evaluation.seen_unseen docs/research/evaluation_full/results.nc [--data FILE]

Reads a ``results.nc`` written by ``crystaldos evaluate`` (no sampling is repeated), marks every test crystal
whose prototype family (``CrystalDOSDataset.prototype_families``: the AFLOW label in data format 2, the parent
prototype's id in format 1) has members in the training split, and prints the match rate of both groups per
guidance and t_start. New evaluations carry these columns themselves.
"""

from __future__ import annotations

import argparse

import xarray as xr

import crystaldos
from crystaldos.evaluate import summary_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results")
    parser.add_argument("--data", default=None)
    args = parser.parse_args()
    results = xr.open_dataset(args.results, engine="h5netcdf").load()
    dataset = crystaldos.load_dataset(args.data)
    try:
        positions = dataset.positions(results.structure.values)
    except KeyError as error:
        raise SystemExit(f"{args.results}: {error.args[0]}") from None
    results["family_seen"] = ("structure", dataset.family_seen_in(dataset.split("train"))[positions])
    table = summary_table(results)
    columns = ["guidance", "t_start", "n", "match rate (%)"] + [c for c in table.columns if c.startswith("match seen") or c.startswith("match unseen")]
    print(f"{args.results}: {int(results.family_seen.sum())} of {results.sizes['structure']} test crystals have a prototype family "
          "with members in the training split")
    print(table[columns].to_markdown(index=False, floatfmt=".1f"))


if __name__ == "__main__":
    main()
