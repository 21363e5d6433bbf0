"""Write a training state's latest EMA weights as a release checkpoint, to set it beside the ``keep_best`` release.

    python -m benchmarks.training.release_latest_ema runs/format2/cfg --out build/cfg_latest.pt

A ``keep_best`` run releases (``model.pt``) the EMA weights of its lowest validation loss; ``train_state.pt`` also
holds the EMA weights of its last step. This writes those as a checkpoint of the same form as ``model.pt`` (its
``train.released_step`` says which step), so that ``crystaldos evaluate --models <folder>`` can compare the two on
match rate, not only on the validation loss (the CFG run's type term overfits while geometry keeps improving).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crystaldos.checkpoint import load_checkpoint, save_checkpoint


def latest_ema_release(run_dir: str | Path) -> dict:
    """The release checkpoint of ``run_dir``'s last step: ``model.pt``'s fields with ``train_state.pt``'s EMA weights."""
    run_dir = Path(run_dir)
    release = load_checkpoint(run_dir / "model.pt")
    state = load_checkpoint(run_dir / "train_state.pt")
    # AveragedModel's state: the wrapped network's tensors under "module.", plus its update counter.
    ema = {k.removeprefix("module."): v for k, v in state["ema_state_dict"].items() if k.startswith("module.")}
    if set(ema) != set(release["state_dict"]):
        raise ValueError(f"{run_dir}: the EMA weights in train_state.pt do not fit model.pt's network")
    step = state["train"]["step"]
    return release | {"state_dict": ema, "train": release["train"] | {"step": step, "released_step": step}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    checkpoint = latest_ema_release(args.run_dir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(checkpoint, args.out)
    best = checkpoint["train"].get("best")  # model.pt's choice, kept in its training record
    print(f"{args.out}: EMA weights of step {checkpoint['train']['step']} (model.pt holds "
          f"{'step ' + str(best['step']) if best else 'the last step'})")


if __name__ == "__main__":
    main()
