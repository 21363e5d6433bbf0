"""Command line: ``crystaldos card``, ``build-dataset``, ``train``, ``evaluate``, ``app`` (the dashboard) and ``notebooks``."""

from __future__ import annotations

import argparse
from pathlib import Path


def card(args: argparse.Namespace) -> None:
    """Load a data set, print its card and write CARD.md, card.png and an example DOS plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from crystaldos.data.card import write_card
    from crystaldos.data.dataset import dataset_as_xarray, default_path, load_dataset
    from crystaldos.dos import plot_dos

    dataset = load_dataset(args.path)
    print(dataset)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = write_card(dataset_as_xarray(dataset), out, Path(args.path) if args.path else default_path())
    print(path.read_text())
    test = dataset.split("test")
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), sharex=True)
    for ax, record in zip(axes, test[:3]):
        plot_dos(record.dos, ax=ax)
        ax.set_title(f"{record.formula} ({record.id})", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "examples.png", dpi=110)
    print(f"wrote {path}, {out / 'card.png'}, {out / 'examples.png'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="crystaldos", description="Inverse design of crystals from their atom-level DOS")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("card", help="describe a data set (default: the embedded one)")
    p.add_argument("path", nargs="?", default=None, help="data file (.nc, .jsonl); default: embedded")
    p.add_argument("--out", default="results/dataset", help="folder for CARD.md and figures")
    p.set_defaults(func=card)
    p = commands.add_parser("build-dataset", help="rebuild the embedded default data set (tens of core-hours of GFN2-xTB)", add_help=False)
    p.set_defaults(func=None)
    from crystaldos.train.__main__ import add_arguments as add_train_arguments
    from crystaldos.train.__main__ import run as train_run

    p = commands.add_parser("train", help="train the CFG denoiser, the unconditional denoiser or the DOS forward model")
    add_train_arguments(p)
    p.set_defaults(func=train_run)
    from crystaldos.evaluate import add_arguments as add_evaluate_arguments
    from crystaldos.evaluate import run as evaluate_run

    p = commands.add_parser("evaluate", help="the reconstruction experiment: CBG vs CFG x t_start on the test split")
    add_evaluate_arguments(p)
    p.set_defaults(func=evaluate_run)
    from crystaldos.data.mp import add_arguments as add_mp_arguments
    from crystaldos.data.mp import add_pack_arguments

    data = commands.add_parser("data", help="fetch data sets").add_subparsers(dest="source", required=True)
    add_mp_arguments(data.add_parser("mp", help="Materials Project crystals with atom-projected DOS (needs mp-api, "
                                                "an API key and a network)"))
    add_pack_arguments(data.add_parser("pack", help="pack JSON-lines records into one netCDF file for training"))
    from crystaldos.app import add_arguments as add_app_arguments

    add_app_arguments(
        commands.add_parser("app", help="serve the guidance dashboard as an app (voila, 127.0.0.1)"),
        commands.add_parser("notebooks", help="JupyterLab on the notebooks (127.0.0.1)"),
    )
    args, rest = parser.parse_known_args(argv)
    if args.command == "build-dataset":
        from crystaldos.data.build import main as build_main

        build_main(rest)
        return
    from crystaldos.checkpoint import CheckpointError
    from crystaldos.data.store import DataFileError

    try:
        args.func(args)
    except (CheckpointError, DataFileError) as err:  # a missing or wrong file: its message names it, no traceback
        parser.exit(2, f"crystaldos {args.command}: {err}\n")


if __name__ == "__main__":
    main()
