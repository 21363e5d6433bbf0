"""Training report of released checkpoints: curves (PNG) and a markdown table.

    python -m crystaldos.train.report --models crystaldos/pretrained --out docs

Reads the history stored in each checkpoint, so the figure can be redrawn from
the shipped files alone; the forward model's DOS error is measured on the test
split at t = 0, 200, 500 and 1000.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import numpy as np
import torch

from crystaldos.checkpoint import KINDS, build_network, load_checkpoint

TITLES = {"cfg": "CFG denoiser (DOS-conditional, p_uncond = 0.2)", "uncond": "unconditional denoiser (CBG)", "forward": "DOS forward model g_phi (CBG)"}


def plot_training(checkpoints: dict[str, dict]):
    """One panel per model: training loss (running mean) and validation loss (EMA weights) vs step."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(checkpoints), figsize=(4.6 * len(checkpoints), 3.4), squeeze=False)
    for ax, (kind, ckpt) in zip(axes[0], checkpoints.items()):
        history = ckpt["train"]["history"]
        steps = [h["step"] for h in history]
        ax.plot(steps, [h["train_loss"] for h in history], lw=1, label="train")
        val = [(h["step"], h["val_loss"]) for h in history if "val_loss" in h]
        if val:
            ax.plot(*zip(*val), "o-", ms=3, lw=1.2, label="validation (EMA)")
        released = ckpt["train"].get("released_step", ckpt["train"]["step"])
        if released != ckpt["train"]["step"]:
            ax.axvline(released, color="0.4", ls=":", lw=1, label=f"released (step {released})")
        if kind != "forward":
            for part, style in (("types", ":"), ("coords", "--"), ("lattice", "-.")):
                ax.plot(steps, [h[f"train_{part}"] for h in history], style, lw=0.8, label=f"train {part}")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(TITLES.get(kind, kind), fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def forward_model_test_errors(ckpt: dict, test, steps=(0, 200, 500, 1000), device: str = "cpu") -> dict[str, list[float]]:
    """MAE/RMSE (states/eV/atom) of the forward model on ``test`` (a data set's test split) at the given steps,
    computed on ``device`` (``"auto"``: CUDA if present; the noise for t > 0 is drawn there, so a GPU's errors
    differ from the CPU's by the sampling noise)."""
    from torch_geometric.loader import DataLoader

    from crystaldos.device import resolve_device
    from crystaldos.diffusion import DiffusionConfig, JointDiffusion
    from crystaldos.train.loop import forward_model_errors

    graphs = test.to_graphs()
    device = resolve_device(device)
    diffusion = JointDiffusion(DiffusionConfig.from_dict(ckpt["diffusion_config"])).to(device)
    with torch.no_grad():
        return forward_model_errors(build_network(ckpt).to(device), diffusion, DataLoader(graphs, batch_size=64), steps)


def element_mean_dos(train, statistic: str = "mean") -> np.ndarray:
    """(NUM_ELEMENTS, n_energies) mean (or median) DOS of each element's atoms over the data set ``train`` (row
    Z - 1; elements absent from it: the same statistic over all its atoms), states/eV/atom."""
    from crystaldos.model.forward_model import element_mean_dos_table

    numbers = torch.as_tensor(np.concatenate([item.structure.atomic_numbers for item in train]))
    dos = torch.as_tensor(np.concatenate([np.asarray(item.dos.values) for item in train]), dtype=torch.float64)
    return element_mean_dos_table(numbers, dos, statistic).numpy()


def per_element_baseline(structure, table: np.ndarray) -> np.ndarray:
    """(n_sites, n_energies) the per-element-mean prediction of a structure's atom-level DOS (``table`` from
    :func:`element_mean_dos`)."""
    return table[np.asarray(structure.atomic_numbers) - 1]


def per_element_baseline_mae(train, test, statistic: str = "mean") -> float:
    """MAE (states/eV/atom) of predicting every test atom's DOS as the mean DOS of its element over ``train``
    (the mean of all training atoms for an element absent from it): the baseline a forward model must beat.
    ``statistic="median"``: the energy-wise median instead, the best a per-element table can do in MAE."""
    table = element_mean_dos(train, statistic)
    errors = [np.abs(np.asarray(item.dos.values) - per_element_baseline(item.structure, table)) for item in test]
    return float(np.concatenate(errors).mean())


def _released(info: dict) -> str:
    """Which weights a release holds: the last step's, or (keep_best) those of the lowest validation loss."""
    best, step = info.get("best"), info.get("released_step", info["step"])
    if best and step == best["step"] and info.get("stopped_early"):
        return f"step {step} (lowest val loss; stopped at {info['stopped_early']})"
    if best and step == best["step"]:
        return f"step {step} (lowest val loss)"
    return f"step {step} (last)"


def training_table(checkpoints: dict[str, dict]) -> str:
    """Markdown: parameters, steps, wall time, final train/val losses per model."""
    lines = ["| model | parameters | steps | released weights | wall time | final train loss | final val loss |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for kind, ckpt in checkpoints.items():
        info = ckpt["train"]
        history = info["history"]
        last_train = history[-1]["train_loss"]
        last_val = next((h["val_loss"] for h in reversed(history) if "val_loss" in h), float("nan"))
        lines.append(
            f"| {kind} | {info['n_parameters']:,} | {info['step']} | {_released(info)} | {info['wall_time_s'] / 60:.1f} min "
            f"| {last_train:.4f} | {last_val:.4f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    matplotlib.use("Agg")
    parser = argparse.ArgumentParser(description="training report of released checkpoints")
    parser.add_argument("--models", default=None, help="folder with cfg.pt, uncond.pt, forward.pt (default: shipped)")
    parser.add_argument("--data", default=None)
    parser.add_argument("--out", default="docs/research")
    args = parser.parse_args(argv)
    from crystaldos.checkpoint import PRETRAINED_DIR

    folder = Path(args.models) if args.models else PRETRAINED_DIR
    checkpoints = {kind: load_checkpoint(folder / f"{kind}.pt", kind=kind) for kind in KINDS}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot_training(checkpoints).savefig(out / "training_curves.png", dpi=120)
    from crystaldos.data import load_dataset

    dataset = load_dataset(args.data)
    errors = forward_model_test_errors(checkpoints["forward"], dataset.split("test"))
    baseline = per_element_baseline_mae(dataset.split("train"), dataset.split("test"))
    rows = "\n".join(f"| {t} | {m:.4f} | {r:.4f} | {baseline:.4f} | {100 * (1 - m / baseline):+.0f} % |"
                     for t, m, r in zip(errors["t"], errors["mae"], errors["rmse"]))
    minutes = [c["train"]["wall_time_s"] / 60 for c in checkpoints.values()]
    text = (
        "# Training of the shipped models\n\n"
        f"Regenerate (the three runs go side by side: {max(minutes):.0f} min for the longest, {sum(minutes) / 60:.1f} hours "
        "of the table's wall times added up, on the cores they shared; resumable, and models whose release in crystaldos/pretrained already has the recipe's settings and steps "
        "are not trained again):\n\n"
        "```bash\nmake pretrained\n```\n\n"
        "![training curves](training_curves.png)\n\n"
        + training_table(checkpoints)
        + "\n\nForward model g_phi on the test split, noised to step t (states/eV/atom, averaged over atoms and energies), "
        "against the per-element-mean baseline (each atom's DOS predicted as the mean DOS of its element in the training "
        "split; it sees the clean types). Also `python -m benchmarks.forward_model.baseline`.\n\n"
        "| t | MAE | RMSE | per-element mean MAE | forward model below baseline |\n| --- | --- | --- | --- | --- |\n" + rows + "\n"
    )
    # Measurements that chose the sizes and steps (benchmarks/training/learning_curves.py) are written by hand beside
    # this report; carried into it so that a regenerated report keeps them.
    extra = out / "learning_curves.md"
    if extra.exists():
        text += "\n" + extra.read_text()
    (out / "training.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
