"""Train and validation loss against step for several training runs, one line pair per run.

    python -m benchmarks.training.plot_histories docs/research/forward_sweep/*.history.csv --out docs/research/forward_sweep/curves.png

Reads the ``history.csv`` a run writes (or copies of it named ``<run>.history.csv``); the run's name is the file
name without ``.history.csv`` (or its folder's name for a plain ``history.csv``). Prints each run's lowest
validation loss and the step it was reached at.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def run_name(path: Path) -> str:
    return path.parent.name if path.name == "history.csv" else path.name.removesuffix(".history.csv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("histories", nargs="+", type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--title", default="train (dashed) and validation (solid) loss")
    args = parser.parse_args()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    rows = []
    for i, path in enumerate(args.histories):
        history = pd.read_csv(path)
        if "val_loss" not in history:
            raise SystemExit(f"{path} has no val_loss column; is it a crystaldos history.csv?")
        name, colour = run_name(path), f"C{i}"
        val = history.dropna(subset=["val_loss"])
        ax.plot(history["step"], history["train_loss"], "--", color=colour, lw=0.8)
        ax.plot(val["step"], val["val_loss"], "-", color=colour, lw=1.5, label=name)
        best = val.loc[val["val_loss"].idxmin()]
        rows.append({"run": name, "steps": int(history["step"].iloc[-1]), "lowest val loss": best["val_loss"],
                     "at step": int(best["step"]), "last val loss": val["val_loss"].iloc[-1], "last train loss": history["train_loss"].iloc[-1]})
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(args.title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f"))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
