"""Does a label depend on which SCF attempt converged? Relabel first-attempt crystals with the retries' settings.

    python -m benchmarks.labeller.scf_retry_consistency --data FILE [--n 12] [--max-sites 4] [--seed 0]

``XTBLabeller.scf_attempts`` retries a failed SCF at a higher electronic temperature (5000 K; until 2026-11-28 also
10000 K in a 6 Å supercell, dropped after this measurement). The SCF supplies the charges from which the k-mesh DOS is built, so a retry may move the DOS.
A label must be a property of the crystal; if the retry settings alone move it by more than the labels' noise
(about 0.03 states/eV/atom, docs/research/labeller.md), the crystals labelled on a retry carry a systematic error.

For N seeded crystals of ``--data`` (a labelled chunk or data file, ≤ ``--max-sites`` sites) whose stored label
converged at the first attempt, the labeller of the data set is rerun with each retry's temperature and supercell
(retries off; the mixer damping only changes the path to the solution), and compared with the stored label: MAE
over atoms and energies, states/eV/atom, split by metals (band gap 0) and insulators.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

import crystaldos
from crystaldos.labellers import LabellingError, XTBLabeller
from benchmarks.tables import show_row, show_table


#: (electronic temperature K, supercell width Å) of the retry that the labeller dropped after this measurement.
DROPPED_RETRY = (10000.0, 6.0)


def retry_labellers(labeller: XTBLabeller) -> dict[str, XTBLabeller]:
    """Labellers that run only one retry's SCF settings (name -> labeller): the retries of ``labeller`` and the
    dropped one."""
    settings = [(t, length) for t, _damping, length, _iterations in labeller.scf_attempts()[1:]] + [DROPPED_RETRY]
    return {f"{t:.0f} K, {length:.0f} Å": dataclasses.replace(labeller, electronic_temperature=t, min_length=length, retry_scf=False)
            for t, length in settings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a labelled chunk or data file of format 2")
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--max-sites", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    dataset = crystaldos.load_dataset(args.data)
    labeller = XTBLabeller.for_dataset(dataset.attrs)
    first_temperature = labeller.scf_attempts()[0][0]
    candidates = [item for item in dataset
                  if len(item.structure) <= args.max_sites and item.properties.get("scf_temperature_K") == first_temperature]
    if not candidates:
        raise SystemExit(f"no crystal of {args.data} with ≤ {args.max_sites} sites converged at the first attempt ({first_temperature:.0f} K)")
    order = np.random.default_rng(args.seed).permutation(len(candidates))[: args.n]
    rows = []
    for index in order:
        item = candidates[index]
        row = {"crystal": f"{item.formula} ({item.id})", "metal": item.properties["band_gap_eV"] == 0.0}
        for name, retry in retry_labellers(labeller).items():
            try:
                row[name] = float(np.abs(retry.label(item.structure).values - np.asarray(item.dos.values)).mean())
            except LabellingError as err:
                row[name] = np.nan
                print(f"{item.id} at {name}: {type(err).__name__}")
        rows.append(row)
        show_row(rows, "%.3f")
    show_table(rows, f"MAE (states/eV/atom) of the retry settings' labels against the stored first-attempt label ({args.data})", ".3f")
    frame = __import__("pandas").DataFrame(rows)
    summary = frame.groupby("metal").median(numeric_only=True)
    print("\nmedian by class (metal = band gap 0):")
    print(summary.to_markdown(floatfmt=".3f"))


if __name__ == "__main__":
    main()
