"""Learning curves: does the CFG model want more data, more steps or more width?

    python -m benchmarks.training.learning_curves --fractions 0.25 0.5 1 --steps 3000 --runs build/learning_curves
    python -m benchmarks.training.learning_curves --fractions 0.25 1 --steps 3000 --set model.hidden=256   # another width
    python -m benchmarks.training.learning_curves --data build/preview_v2_37.nc --forward build/runs/fwd_v2_default/model.pt \
        --runs build/learning_curves_v2 --set diffusion.lattice_noise_atoms=8   # another data file

Trains the CFG denoiser on a seeded 25 / 50 / 100 % of the training split for the same number of steps (the
runs go in parallel, one CPU thread each, and resume from ``--runs``), then reconstructs a fixed test subset
(the first ``--limit`` crystals, CFG omega = 1, seed 0) from t_start = 200 with each, and prints site-type
accuracy, median |volume error| and match rate against the number of training crystals, plus each run's
final validation loss (also written to ``<runs>/results.csv``, or ``results_ddim.csv`` with ``--lattice-step ddim``, so
that sampling one run's models both ways keeps both tables). ``--data`` trains and tests on another data file; ``--forward`` then names a forward
model trained on a data file with the same DOS grid (it only predicts the samples' DOS here). ``--plot`` writes the figure; ``--plot-only`` redraws it from committed results, e.g. docs/research/learning_curves.png:

    python -m benchmarks.training.learning_curves --plot-only --plot docs/research/learning_curves.png \
        --series "37 chunks, 64 test crystals=docs/research/learning_curves/preview_37_chunks.csv" \
        --series "37 chunks, + scale features=docs/research/learning_curves/preview_37_chunks_scale_features.csv" \
        --series "117 chunks, + scale features, 128 test crystals=docs/research/learning_curves/preview_117_chunks.csv"
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from benchmarks.tables import show_row, show_table

import crystaldos
from crystaldos import Sampler
from crystaldos.checkpoint import PRETRAINED_DIR, load_checkpoint
from crystaldos.metrics import score


def train_runs(fractions, steps: int, runs: Path, overrides: list[str], device: str | None, data: Path | None) -> dict[float, Path]:
    """Train one CFG model per fraction (parallel processes); returns {fraction: its run folder with model.pt}."""
    procs = {}
    for fraction in fractions:
        out = runs / f"fraction_{fraction:g}"
        cmd = [sys.executable, "-m", "crystaldos.train", "--kind", "cfg", "--out-dir", str(out / "run"), "--steps", str(steps),
               "--num-threads", "1", "--no-progress", "--seed", "0", "--set", f"train_fraction={fraction}"]
        cmd += [x for o in overrides for x in ("--set", o)] + (["--device", device] if device else [])
        cmd += ["--data", str(data)] if data else []
        out.mkdir(parents=True, exist_ok=True)
        procs[fraction] = (subprocess.Popen(cmd, stdout=open(out / "train.log", "a"), stderr=subprocess.STDOUT), out)
    folders = {}
    for fraction, (process, out) in procs.items():
        if process.wait() != 0:
            raise SystemExit(f"training failed for fraction {fraction}; see {out / 'train.log'}")
        folders[fraction] = out / "run"
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--runs", type=Path, default=Path("build/learning_curves"))
    parser.add_argument("--limit", type=int, default=64, help="test crystals reconstructed per model")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--device", default=None, help="where the runs train and sample (default: train on auto, sample on cpu)")
    parser.add_argument("--data", type=Path, default=None, help="data file (default: the embedded data set)")
    parser.add_argument("--forward", type=Path, default=PRETRAINED_DIR / "forward.pt",
                        help="forward-model checkpoint on the data's DOS grid (default: the shipped one)")
    parser.add_argument("--lattice-step", choices=("ddpm", "ddim"), default="ddpm",
                        help="the reverse step of the lattice when sampling (docs/research/lattice.md section 2)")
    parser.add_argument("--plot", type=Path, default=None, help="write the figure here")
    parser.add_argument("--label", default=None, help="this run's name in the figure (default: its settings)")
    parser.add_argument("--series", action="append", default=[], metavar="LABEL=CSV",
                        help="another run's results.csv to draw beside this one (repeatable)")
    parser.add_argument("--plot-only", action="store_true",
                        help="draw the --series CSVs into --plot without training or sampling (the shipped figure)")
    args = parser.parse_args()
    if args.plot_only:
        if not (args.plot and args.series):
            raise SystemExit("--plot-only needs --plot PATH and at least one --series LABEL=CSV")
        series = read_series(args.series)
        steps = sorted({int(n) for table in series.values() for n in table["steps"]})
        plot(series, args.plot, f"CFG, {' / '.join(map(str, steps))} steps, t_start = 200, one seed")
        return
    folders = train_runs(args.fractions, args.steps, args.runs, args.overrides, args.device, args.data)
    items = list(crystaldos.load_dataset(args.data).split("test")[: args.limit])
    rows = []
    for fraction, folder in folders.items():
        checkpoint = load_checkpoint(folder / "model.pt", kind="cfg")
        history = checkpoint["train"]["history"]
        # Sampling runs where training ran (a lent GPU samples the test subset in seconds); the CPU by default.
        sampler = Sampler.from_checkpoints(folder / "model.pt", args.forward, device=args.device or "cpu")
        results = sampler.reconstruct([i.structure for i in items], [i.dos for i in items], guidance="cfg", t_start=200,
                                      seed=0, progress=False, lattice_step=args.lattice_step)
        scores = [score(r.structure, i.structure, r.dos_pred, i.dos) for r, i in zip(results, items)]
        rows.append({
            "fraction": fraction, "training crystals": checkpoint["train"]["data"]["n_train"], "steps": checkpoint["train"]["step"],
            "final val loss": next((h["val_loss"] for h in reversed(history) if "val_loss" in h), float("nan")),
            "site types (%)": 100 * np.mean([s.site_type_accuracy for s in scores]),
            "median |dV| (%)": float(np.nanmedian([abs(s.volume_error_pct) for s in scores])),
            "match (%)": 100 * np.mean([s.matched for s in scores]),
        })
        show_row(rows)
    table = pd.DataFrame(rows)
    table.to_csv(args.runs / ("results.csv" if args.lattice_step == "ddpm" else f"results_{args.lattice_step}.csv"), index=False)
    show_table(rows, f"CFG from t_start = 200 ({args.lattice_step} lattice steps) on the first {len(items)} test crystals; "
                     f"settings {args.overrides or 'as shipped'}")
    if args.plot:
        series = {args.label or ", ".join(args.overrides) or "as shipped": table}
        series.update(read_series(args.series))
        plot(series, args.plot, f"CFG, {args.steps} steps, t_start = 200, the first {len(items)} test crystals")


def read_series(values: list[str]) -> dict[str, pd.DataFrame]:
    """The ``--series LABEL=CSV`` values as {label: that run's results table}."""
    return {label: pd.read_csv(path) for label, path in (value.split("=", 1) for value in values)}


def plot(series: dict[str, pd.DataFrame], path: Path, title: str) -> None:
    """One panel per measure against the number of training crystals, one line per series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = ("final val loss", "site types (%)", "median |dV| (%)", "match (%)")
    fig, axes = plt.subplots(1, len(columns), figsize=(13, 3.2))
    for label, table in series.items():
        for ax, column in zip(axes, columns):
            ax.plot(table["training crystals"], table[column], "o-", label=label)
    counts = []
    for n in sorted({int(n) for table in series.values() for n in table["training crystals"]}):
        if not counts or n > 1.1 * counts[-1]:  # one tick for nearly equal sizes (793 and 796): no overprint
            counts.append(n)
    for ax, column in zip(axes, columns):
        ax.set(xlabel="training crystals", ylabel=column, xscale="log")
        ax.set_xticks(counts, [str(n) for n in counts])
        ax.minorticks_off()
        if column != "final val loss":
            ax.set_ylim(0, 100 if column != "median |dV| (%)" else None)
    axes[1].legend(fontsize=7, loc="lower right")  # the empty corner below the site-type curve
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)

if __name__ == "__main__":
    main()
