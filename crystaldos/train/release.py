"""Train and release the three shipped networks in one resumable command.

    python -m crystaldos.train.release --runs build/runs --out crystaldos/pretrained

Runs ``crystaldos train`` for the CFG denoiser, the unconditional denoiser and
the forward model as three parallel processes (one CPU thread each), copies
each run's ``model.pt`` to ``<out>/<kind>.pt`` and writes the training report
(:mod:`crystaldos.train.report`) to ``docs/``. Interrupted runs resume from
their ``train_state.pt``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

#: The shipped settings: width 128, 4 layers; 8,000 steps each fit about 30-40 min of 2 shared CPU cores.
SHIPPED_STEPS = {"cfg": 8_000, "uncond": 8_000, "forward": 8_000}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="build/runs")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "pretrained"))
    parser.add_argument("--docs", default="docs")
    parser.add_argument("--data", default=None)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the step counts (e.g. 0.01 for a smoke run)")
    parser.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N (default: the training config's, auto)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="settings for all three runs, e.g. model.hidden=256 (repeatable)")
    args = parser.parse_args(argv)
    procs = {}
    for kind, steps in SHIPPED_STEPS.items():
        cmd = [sys.executable, "-m", "crystaldos.train", "--kind", kind, "--out-dir", f"{args.runs}/{kind}",
               "--steps", str(max(1, int(steps * args.scale))), "--num-threads", "1", "--no-progress", "--seed", "0"]
        if args.data:
            cmd += ["--data", args.data]
        if args.device:
            cmd += ["--device", args.device]
        for override in args.overrides:
            cmd += ["--set", override]
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
