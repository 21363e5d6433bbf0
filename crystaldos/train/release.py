"""Train and release the three shipped networks in one resumable command.

    python -m crystaldos.train.release --runs build/runs --out crystaldos/pretrained

Runs ``crystaldos train`` for the CFG denoiser, the unconditional denoiser and
the forward model as three parallel processes (one CPU thread each), copies
each run's ``model.pt`` to ``<out>/<kind>.pt`` and writes the training report
(:mod:`crystaldos.train.report`) to ``docs/``. Interrupted runs resume from
their ``train_state.pt``. ``--set KEY=VALUE`` applies to all three runs, ``--set forward:KEY=VALUE`` to one
(e.g. the forward model's weight decay; diffusion settings must stay common, or CBG refuses the pair), and
``--steps forward=3500`` sets one run's length.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

#: The shipped settings: width 128, 4 layers; 8,000 steps each fit about 30-40 min of 2 shared CPU cores.
SHIPPED_STEPS = {"cfg": 8_000, "uncond": 8_000, "forward": 8_000}


def _overrides_by_kind(values: list[str]) -> dict[str, list[str]]:
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


def training_commands(args: argparse.Namespace) -> dict[str, list[str]]:
    """The ``python -m crystaldos.train`` command of each of the three runs."""
    steps = dict(SHIPPED_STEPS)
    for value in args.steps:
        kind, _, n = value.partition("=")
        if kind not in SHIPPED_STEPS or not n.isdigit():
            raise SystemExit(f"--steps {value}: expected KIND=N with KIND one of {', '.join(SHIPPED_STEPS)}")
        steps[kind] = int(n)
    overrides = _overrides_by_kind(args.overrides)
    commands = {}
    for kind, n in steps.items():
        cmd = [sys.executable, "-m", "crystaldos.train", "--kind", kind, "--out-dir", f"{args.runs}/{kind}",
               "--steps", str(max(1, int(n * args.scale))), "--num-threads", "1", "--no-progress", "--seed", "0"]
        if args.data:
            cmd += ["--data", args.data]
        if args.device:
            cmd += ["--device", args.device]
        for override in overrides[kind]:
            cmd += ["--set", override]
        commands[kind] = cmd
    return commands


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="build/runs")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "pretrained"))
    parser.add_argument("--docs", default="docs")
    parser.add_argument("--data", default=None)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the step counts (e.g. 0.01 for a smoke run)")
    parser.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N (default: the training config's, auto)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="[KIND:]KEY=VALUE",
                        help="settings for all three runs, e.g. model.hidden=256, or for one, e.g. forward:weight_decay=0.1 "
                             "(repeatable)")
    parser.add_argument("--steps", dest="steps", action="append", default=[], metavar="KIND=N",
                        help=f"optimiser steps of one run before --scale (default {SHIPPED_STEPS}; repeatable)")
    args = parser.parse_args(argv)
    procs = {}
    for kind, cmd in training_commands(args).items():
        Path(args.runs).mkdir(parents=True, exist_ok=True)
        log = open(f"{args.runs}/{kind}.log", "a")
        print(" ".join(cmd), flush=True)
        procs[kind] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    failed = [kind for kind, p in procs.items() if p.wait() != 0]
    if failed:
        raise SystemExit(f"training failed for {failed}; see {args.runs}/<kind>.log")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for kind in SHIPPED_STEPS:
        shutil.copyfile(f"{args.runs}/{kind}/model.pt", out / f"{kind}.pt")
    from crystaldos.train.report import main as report

    report(["--models", str(out), "--out", args.docs] + (["--data", args.data] if args.data else []))


if __name__ == "__main__":
    main()
