"""``python -m crystaldos.train`` (also under ``torchrun``): see :func:`crystaldos.train.loop.train`."""

from __future__ import annotations

import argparse
import sys

from crystaldos.train.config import TrainConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", choices=["cfg", "uncond", "forward"], default=None, help="network to train (default cfg)")
    parser.add_argument("--config", default=None, help="YAML file of TrainConfig settings")
    parser.add_argument("--data", default=None, help="data file (default: the embedded data set)")
    parser.add_argument("--out-dir", default=None, help="run directory (resumes from its train_state.pt)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--num-threads", type=int, default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="e.g. model.hidden=256 (repeatable)")
    parser.add_argument("--no-progress", action="store_true")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's settings: defaults, ``--config``, the named options, then ``--set`` (see :meth:`TrainConfig.from_sources`)."""
    return TrainConfig.from_sources(
        args.config,
        args.overrides,
        kind=args.kind,
        data=args.data,
        out_dir=args.out_dir or (f"runs/{args.kind}" if args.kind else None),
        steps=args.steps,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        num_threads=args.num_threads,
    )


def run(args: argparse.Namespace) -> None:
    from crystaldos.train.loop import train

    path = train(config_from_args(args), progress=not args.no_progress)
    if int(__import__("os").environ.get("RANK", "0")) == 0:
        print(f"released weights: {path}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="crystaldos train", description="train a crystaldos network")
    add_arguments(parser)
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
