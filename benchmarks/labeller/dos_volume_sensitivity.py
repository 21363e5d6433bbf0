"""How much does the converged DOS change when a crystal's volume changes? The physics behind the lattice test.

    python -m benchmarks.labeller.dos_volume_sensitivity [--data FILE] [--factors 0.85 0.9 ...] [--plot FILE]

The six textbook crystals of the lattice test (``crystaldos.labellers.panel.lattice_panel``) are scaled
isotropically to a fraction f of their volume (fractional coordinates and cell shape kept) and labelled with the
labeller of the data set (``XTBLabeller.for_dataset``; the converged k-mesh labeller by default). Printed per
crystal and f: the MAE between the atom-level DOS at f and at f = 1 (states/eV/atom, over atoms and energies),
and the shift of the occupied band's centre (eV). A model can only place a crystal's volume within 5 % from its
DOS if it resolves DOS differences of the size found at f = 0.95 / 1.05; beside them the script prints the
labels' own noise (about 0.03, docs/research/labeller.md) and what the per-element-mean baseline misses on the same
atoms (the training split of ``--data``), the scale of today's forward models' errors.

``--sample N`` instead takes N seeded crystals of the test split of ``--data`` (≤ ``--max-sites`` sites) and compares
with their stored labels: at f = 1 that is the labeller's reproducibility, and at f = 0.99 / 1.01 a converged
crystal DOS moves by about a fifth of what it moves at 0.95 / 1.05 (Mo bcc: 0.02). A label that jumps by much more
under a 1 % strain is not a property of the crystal but of the SCF solution the labeller happened to reach.
"""

from __future__ import annotations

import argparse

import numpy as np
import xarray as xr

import crystaldos
from crystaldos.labellers import LabellingError, XTBLabeller
from crystaldos.labellers.panel import lattice_panel
from crystaldos.train.report import element_mean_dos, per_element_baseline
from benchmarks.tables import show_row, show_table


def scaled(structure, factor: float):
    """A copy of ``structure`` with its volume multiplied by ``factor`` (isotropic; fractional coordinates kept)."""
    copy = structure.copy()
    copy.scale_lattice(structure.volume * factor)
    return copy


def occupied_centre(dos: xr.DataArray) -> float:
    """eV: the centre of mass of the atom-summed DOS below the Fermi level (energy 0)."""
    total = dos.sum("site")
    occupied = total.where(total["energy"] <= 0, 0.0)
    return float((occupied * occupied["energy"]).sum() / occupied.sum())


def panel_crystals(crystals: list[str] | None = None) -> dict[str, tuple]:
    """name -> (Structure, None) for the lattice panel, or only the crystals it names."""
    panel = lattice_panel()
    unknown = sorted(set(crystals or []) - set(panel))
    if unknown:
        raise ValueError(f"not in the lattice panel: {', '.join(unknown)}; choose from {', '.join(panel)}")
    return {name: (structure, None) for name, structure in panel.items() if not crystals or name in crystals}


def sampled_crystals(dataset, n: int, max_sites: int, seed: int) -> dict[str, tuple]:
    """name -> (Structure, stored label) for ``n`` seeded crystals of the test split with at most ``max_sites`` sites."""
    small = [item for item in dataset.split("test") if len(item.structure) <= max_sites]
    picked = np.random.default_rng(seed).permutation(len(small))[:n]
    return {f"{small[i].formula} ({small[i].id})": (small[i].structure, small[i].dos) for i in picked}


def sensitivity_rows(labeller: XTBLabeller, factors: list[float], table: np.ndarray | None, crystals: dict[str, tuple]) -> list[dict]:
    """One row per crystal and volume factor (see the module docstring); each row is printed when measured.
    ``crystals``: name -> (Structure, reference label or None: the labeller's own label at f = 1)."""
    rows = []
    for name, (structure, stored) in crystals.items():
        try:
            reference = labeller.label(structure) if stored is None else stored
        except LabellingError as err:
            print(f"{name}: {err}")
            continue
        baseline = float(np.abs(reference.values - per_element_baseline(structure, table)).mean()) if table is not None else np.nan
        for factor in factors:
            try:
                dos = reference if factor == 1.0 and stored is None else labeller.label(scaled(structure, factor))
            except LabellingError as err:
                print(f"{name} at {factor:.2f} V0: {err}")
                continue
            rows.append({
                "crystal": name,
                "V / V0": factor,
                "MAE to V0": float(np.abs(dos.values - reference.values).mean()),
                "occupied centre shift (eV)": occupied_centre(dos) - occupied_centre(reference),
                "per-element baseline MAE at V0": baseline,
                "SCF T (K)": dos.attrs.get("scf_temperature_K", np.nan),
            })
            show_row(rows, "%.3f")
    return rows


def plot(rows: list[dict], label_noise: float, path: str) -> None:
    """MAE to the equilibrium DOS against the volume change, one line per crystal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    frame = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    for name, group in frame.groupby("crystal", sort=False):
        ax.plot(100 * (group["V / V0"] - 1), group["MAE to V0"], "o-", ms=3, label=name)
    ax.axhline(label_noise, color="k", ls=":", lw=1, label=f"label noise (~{label_noise})")
    baseline = frame["per-element baseline MAE at V0"].mean()
    if np.isfinite(baseline):
        ax.axhline(baseline, color="grey", ls="--", lw=1, label=f"per-element baseline on these ({baseline:.2f})")
    ax.axvspan(-5, 5, color="C2", alpha=0.08, lw=0)
    ax.set_xlabel("volume change (%)")
    ax.set_ylabel("MAE to the DOS at V0 (states/eV/atom)")
    ax.set_title("How much the converged DOS moves with the volume", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="data set whose labeller and training split are used (default: the labeller's defaults, no baseline)")
    parser.add_argument("--factors", type=float, nargs="+", default=[0.85, 0.9, 0.95, 0.97, 1.0, 1.03, 1.05, 1.1, 1.15])
    parser.add_argument("--label-noise", type=float, default=0.03, help="states/eV/atom, drawn as a line (docs/research/labeller.md)")
    parser.add_argument("--crystals", nargs="+", default=None, help="names from the lattice panel (default: all six)")
    parser.add_argument("--sample", type=int, default=None, help="N crystals of the test split of --data instead of the panel")
    parser.add_argument("--max-sites", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default=None, help="write the figure here (PNG)")
    args = parser.parse_args()
    if args.sample is not None and args.data is None:
        parser.error("--sample needs --data")
    if args.data is None:
        labeller, table = XTBLabeller(), None
    else:
        dataset = crystaldos.load_dataset(args.data)
        labeller, table = XTBLabeller.for_dataset(dataset.attrs), element_mean_dos(dataset.split("train"))
    crystals = (sampled_crystals(dataset, args.sample, args.max_sites, args.seed) if args.sample is not None
                else panel_crystals(args.crystals))
    rows = sensitivity_rows(labeller, sorted(args.factors), table, crystals)
    show_table(rows, "MAE (states/eV/atom) between the atom-level DOS at V and at V0; band-centre shift in eV", ".3f")
    if args.plot:
        plot(rows, args.label_noise, args.plot)


if __name__ == "__main__":
    main()
