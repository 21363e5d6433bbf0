"""Train and release the three shipped networks in one resumable command.

    python -m crystaldos.train.release --runs build/runs --out crystaldos/pretrained

Runs ``crystaldos train`` for the CFG denoiser, the unconditional denoiser and
the forward model as three parallel processes (one CPU thread each), copies
each run's ``model.pt`` to ``<out>/<kind>.pt`` and writes the training report
(:mod:`crystaldos.train.report`) to ``docs/research/``. Interrupted runs resume from
their ``train_state.pt``; a run whose ``model.pt`` already has its settings and steps is not started again. ``--set KEY=VALUE`` applies to all three runs, ``--set forward:KEY=VALUE`` to one
(e.g. the forward model's weight decay; diffusion settings must stay common, or CBG refuses the pair), and
``--steps forward=3500`` sets one run's length. ``--recipe`` (default ``format2``) takes the settings chosen
for the embedded data (:data:`RECIPES`); ``--set``/``--steps`` given as well come after it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

#: The previous release's step counts (``--recipe format1``; width 128, 4 layers, about 30-40 min of 2 shared CPU
#: cores on the format-1 data). The keys name the three networks.
SHIPPED_STEPS = {"cfg": 8_000, "uncond": 8_000, "forward": 8_000}


@dataclass(frozen=True)
class Recipe:
    """A release's step counts and settings (``[KIND:]KEY=VALUE``, as ``--set``); the command line's come after."""

    steps: dict[str, int]
    overrides: tuple[str, ...] = ()
    about: str = ""


#: ``--recipe``: ``format2`` (the default) made the shipped models on the embedded (format-2) data, each setting
#: measured on its previews (docs/research/lattice.md sections 5, 7, 9 and 12, docs/research/forward_model.md, docs/research/training.md);
#: ``format1`` made the previous release's on the format-1 data.
RECIPES = {
    "format1": Recipe(dict(SHIPPED_STEPS), about="the previous release's models: 8,000 steps each, default settings"),
    "format2": Recipe(
        {"cfg": 20_000, "uncond": 20_000, "forward": 12_000},
        (
            "diffusion.lattice_noise_atoms=8",  # lattice noise scaled by cell size (docs/research/lattice.md section 5)
            "model.lattice_scale_features=true",  # the cell's log volume per atom and shape as inputs (section 7)
            "model.edge_lengths=true",  # bond lengths on the all-pairs edges (section 9)
            "keep_best=true",  # release the lowest validation loss, not the last step's
            # For the CFG denoiser too: its type term's validation loss turns up from step ~4,000, and although the
            # weights of step 10,150 sampled as well as the lowest-loss ones (6,750), those of step 20,000 matched
            # 73.4 % of 128 val crystals from t_start = 200 against 81.2 % (docs/research/lattice.md, section 12).
            "forward:forward_loss=l1",  # the median table's loss (docs/research/forward_model.md)
            "forward:model.element_baseline=true",
            "forward:weight_decay=0.1",
            # Half of each batch at t = 0: with t uniform the forward model saw a clean crystal 1 step in 1,000 and
            # stayed 22 % below the per-element mean at t = 0; half clean it is 39 % below, CBG from t_start = 200
            # matches 71.3 % of the test split instead of 67.5 % (docs/research/forward_model.md).
            "forward:forward_clean_fraction=0.5",
        ),
        about="the retraining on format-2 data: about 250 epochs of ~4,900 training crystals for the denoisers",
    ),
}
# The equilibrium data (relaxed crystals, whole families held out): format2's settings, and a run stops once its
# lowest validation loss is 3,000 steps old. Replayed on the format-2 runs' histories (runs/format2/*/history.csv)
# this releases the same weights as before: the CFG denoiser stops at step 9,750 with its best of step 6,750 (after
# 143 of its 277 minutes); the unconditional denoiser and the forward model, still improving, train all their steps.
RECIPES["equilibrium"] = Recipe(
    RECIPES["format2"].steps,
    (*RECIPES["format2"].overrides, "patience_steps=3000"),
    about="the retraining on the relaxed, family-split data (data/default-v3): format2's settings, each run stopped "
          "3,000 steps after its lowest val loss",
)


def overrides_by_kind(values: list[str]) -> dict[str, list[str]]:
    """The ``--set`` values of each run: ``KIND:KEY=VALUE`` for that run only, ``KEY=VALUE`` for all three."""
    scoped: dict[str, list[str]] = {kind: [] for kind in SHIPPED_STEPS}
    for value in values:
        head, sep, rest = value.partition(":")
        if sep and "=" not in head and "." not in head:
            if head not in SHIPPED_STEPS:
                raise SystemExit(f"--set {value}: unknown network {head!r}; one of {', '.join(SHIPPED_STEPS)}")
            scoped[head].append(rest)
        else:
            for kind in scoped:
                scoped[kind].append(value)
    return scoped


def _recipe(args: argparse.Namespace) -> Recipe:
    if args.recipe not in RECIPES:  # argparse's choices guard the command line; this, callers that build args
        raise SystemExit(f"--recipe {args.recipe}: unknown; one of {', '.join(RECIPES)}")
    return RECIPES[args.recipe]


def planned_steps(args: argparse.Namespace) -> dict[str, int]:
    """Optimiser steps of each run: the recipe's, then ``--steps``, times ``--scale`` (at least 1)."""
    steps = dict(_recipe(args).steps)
    for value in args.steps:
        kind, _, n = value.partition("=")
        if kind not in SHIPPED_STEPS or not n.isdigit():
            raise SystemExit(f"--steps {value}: expected KIND=N with KIND one of {', '.join(SHIPPED_STEPS)}")
        steps[kind] = int(n)
    return {kind: max(1, int(n * args.scale)) for kind, n in steps.items()}


def training_commands(args: argparse.Namespace) -> dict[str, list[str]]:
    """The ``python -m crystaldos.train`` command of each of the three runs: the recipe's settings, then ``--set``."""
    overrides = overrides_by_kind([*_recipe(args).overrides, *args.overrides])  # later settings win
    commands = {}
    for kind, n in planned_steps(args).items():
        cmd = [sys.executable, "-m", "crystaldos.train", "--kind", kind, "--out-dir", f"{args.runs}/{kind}",
               "--steps", str(n), "--num-threads", "1", "--no-progress", "--seed", "0"]
        if args.data:
            cmd += ["--data", args.data]
        if args.device:
            cmd += ["--device", args.device]
        for override in overrides[kind]:
            cmd += ["--set", override]
        commands[kind] = cmd
    return commands


#: Settings that say where and how a run goes, not what it learns: a finished run counts whatever they were.
_WHERE_AND_HOW = ("out_dir", "device", "num_threads", "time_limit_minutes", "steps", "data")
#: Model settings the training loop takes from the data (the grid's length, the training DOS's spread).
_FROM_THE_DATA = ("n_energies", "dos_scale")


def planned_config(command: list[str]):
    """The :class:`TrainConfig` that one of :func:`training_commands`' commands trains."""
    from crystaldos.train.__main__ import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return config_from_args(parser.parse_args(command[command.index("crystaldos.train") + 1:]))


def _data_identity(path: str | None) -> dict:
    """What a checkpoint records of its data set (``train.data``) that names the data set, not the file's path."""
    import crystaldos
    from crystaldos.train.loop import DATA_IDENTITY

    dataset = crystaldos.load_dataset(path)
    return {key: dataset.attrs[key] for key in DATA_IDENTITY if key in dataset.attrs} | {
        "n_train": len(dataset.split("train")), "n_val": len(dataset.split("val"))}


def _with_defaults(config: dict, defaults: dict) -> dict:
    """``config`` with the keys it lacks (at any depth: ``model``, ``diffusion``) taken from ``defaults``."""
    filled = dict(defaults) | dict(config)
    for key, value in defaults.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            filled[key] = _with_defaults(config[key], value)
    return filled


def finished_runs(args: argparse.Namespace) -> dict[str, int]:
    """The runs whose ``model.pt`` already holds the planned settings trained to the planned steps, with their steps.

    Those are not started again, so a finished run needs only its release file (not its ``train_state.pt``, which is
    five times larger: what a machine with a transfer limit need not receive). Without a ``model.pt`` in the runs
    folder, the release already in ``--out`` (``<kind>.pt``, e.g. the shipped model) counts, so that a repository
    need not keep the same weights twice.
    """
    from crystaldos.checkpoint import load_checkpoint
    from crystaldos.train.config import TrainConfig

    data = None  # the planned data set's identity, read once; the same file may lie at another path
    finished = {}
    for kind, command in training_commands(args).items():
        path = release_source(args, kind)
        if not path.is_file():
            continue
        planned = planned_config(command).to_dict()
        trained = load_checkpoint(path, kind=kind)["train"]
        # A setting added after the run was trained took its default then: it is the default the run had.
        trained["config"] = _with_defaults(trained["config"], TrainConfig(kind=kind).to_dict())
        for config in (planned, trained["config"]):
            config["model"] = {k: v for k, v in config["model"].items() if k not in _FROM_THE_DATA}
        same = all(trained["config"].get(key) == value for key, value in planned.items() if key not in _WHERE_AND_HOW)
        if same and (trained["step"] >= planned["steps"] or trained.get("stopped_early")):  # patience_steps ended it
            data = data or _data_identity(planned["data"])
            n_train = data["n_train"] if trained["config"].get("train_fraction", 1.0) == 1.0 else trained["data"].get("n_train")
            if {key: trained["data"].get(key) for key in data} == data | {"n_train": n_train}:
                finished[kind] = trained["step"]
    return finished


def unfinished_runs(args: argparse.Namespace) -> dict[str, int]:
    """The planned runs that :func:`finished_runs` does not count (stopped by a time limit), with the step their
    latest weights reached (0 without any). A run that ``patience_steps`` ended is finished with fewer steps than planned."""
    from crystaldos.checkpoint import load_checkpoint

    done, reached = finished_runs(args), {}
    for kind in planned_steps(args):
        if kind not in done:
            path = release_source(args, kind)
            reached[kind] = load_checkpoint(path)["train"]["step"] if path.is_file() else 0
    return reached


def release_source(args: argparse.Namespace, kind: str) -> Path:
    """The run's ``model.pt``, or the release already in ``--out`` when the runs folder has none."""
    run = Path(args.runs) / kind / "model.pt"
    out = getattr(args, "out", None)
    return run if run.is_file() or out is None else Path(out) / f"{kind}.pt"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="build/runs")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "pretrained"))
    parser.add_argument("--docs", default="docs/research")
    parser.add_argument("--data", default=None)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the step counts (e.g. 0.01 for a smoke run)")
    parser.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N (default: the training config's, auto)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="[KIND:]KEY=VALUE",
                        help="settings for all three runs, e.g. model.hidden=256, or for one, e.g. forward:weight_decay=0.1 "
                             "(repeatable)")
    parser.add_argument("--recipe", default="format2", choices=list(RECIPES),
                        help="; ".join(f"{name}: {recipe.about}" for name, recipe in RECIPES.items()))
    parser.add_argument("--steps", dest="steps", action="append", default=[], metavar="KIND=N",
                        help="optimiser steps of one run before --scale (default: the recipe's; repeatable)")
    args = parser.parse_args(argv)
    finished = finished_runs(args)
    for kind, step in finished.items():
        print(f"{kind}: {release_source(args, kind)} has these settings trained to step {step}; not started again", flush=True)
    procs = {}
    for kind, cmd in training_commands(args).items():
        if kind in finished:
            continue
        Path(args.runs).mkdir(parents=True, exist_ok=True)
        log = open(f"{args.runs}/{kind}.log", "a")
        print(" ".join(cmd), flush=True)
        procs[kind] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    failed = [kind for kind, p in procs.items() if p.wait() != 0]
    if failed:
        raise SystemExit(f"training failed for {failed}; see {args.runs}/<kind>.log")
    # A run stopped by its time limit is half-trained: releasing it could replace finished models (the shipped
    # ones are the default --out) with it. Its state is kept; the same command continues it.
    planned = planned_steps(args)
    short = {kind: f"{step} of {planned[kind]}" for kind, step in unfinished_runs(args).items()}
    if short:
        print(f"not released: stopped before their step counts (time limit): {short}; the training states are in "
              f"{args.runs}/<kind>/train_state.pt and the same command continues them", flush=True)
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for kind in SHIPPED_STEPS:
        source = release_source(args, kind)
        if source != out / f"{kind}.pt":  # a finished release already in --out stays as it is
            shutil.copyfile(source, out / f"{kind}.pt")
    from crystaldos.train.report import main as report

    report(["--models", str(out), "--out", args.docs] + (["--data", args.data] if args.data else []))


if __name__ == "__main__":
    main()
