"""Why reconstructions fail to match: types, lattice shape or coordinates?

    python -m benchmarks.from_noise.match_failures build/lc_all_f1_edges/fraction_1/run/model.pt --data build/preview_all/data.nc \
        --forward build/runs/fwd_preview_all/model.pt --limit 128 --lattice-step ddim --csv docs/research/lattice/match_failures_117_chunks.csv

Reconstructs the first ``--limit`` test crystals with a CFG checkpoint (omega = 1, seed 0) from ``--t-start``
(default 200) and sorts every miss by what repairs it. Each generated crystal keeps its site order (the DOS of
site i conditions atom i), so one part of it can be swapped for the truth's and the pair matched again
(``crystaldos.metrics.match``: CDVAE's StructureMatcher, which scales both cells to the same volume, so the
volume itself never decides a match; the lattice's *shape* does):

* ``true types``: the generated lattice and coordinates with the reference's species;
* ``true lattice``: the generated species and fractional coordinates in the reference's cell;
* ``true coordinates``: the generated species and cell with the reference's fractional coordinates.

From t_start = 200 the generated cell is the noised reference cell denoised, so its fractional coordinates live
in the same basis as the reference's and the swaps are meaningful; from pure noise they are not, so above
t_start = 500 only the match and the composition are reported. Prints one table and writes one row per crystal
to ``--csv``. ``--step-lr`` sets the Langevin corrector's step on X (0: no corrector); ``--tie-types`` gives sites with
identical target DOS one type, ``--symmetrise`` averages the targets over symmetry-equivalent sites first.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Structure
from benchmarks.tables import show_table

import crystaldos
from crystaldos import Sampler
from crystaldos.labellers.symmetry import symmetrise_site_dos
from crystaldos.metrics import match, score, structure_matcher
from crystaldos.sampler import DEFAULT_LATTICE_STEP, DEFAULT_STEP_LR, DEFAULT_TIE_TYPES, LATTICE_STEPS

PARTS = ("types", "lattice", "coordinates")
#: Above this t_start the generated cell no longer shares the reference's basis, so parts cannot be swapped.
MAX_SWAP_T_START = 500


def swapped(generated: Structure, reference: Structure, part: str) -> Structure:
    """``generated`` with one part (types, lattice or fractional coordinates) taken from ``reference``."""
    species = reference.species if part == "types" else generated.species
    lattice = reference.lattice if part == "lattice" else generated.lattice
    coords = reference.frac_coords if part == "coordinates" else generated.frac_coords
    return Structure(lattice, species, coords)


def diagnose(result, item, matcher, swaps: bool = True) -> dict:
    """Match of a sample (a :class:`SampleResult` of ``item``) and of its three repairs, plus the facts a miss is
    sorted by (from :func:`crystaldos.metrics.score`)."""
    generated, reference = result.structure, item.structure
    scores = score(generated, reference, result.dos_pred, item.dos, matcher)
    row = {"formula": reference.composition.reduced_formula, "sites": len(reference), "matched": scores.matched,
           "composition right": scores.composition_match, "site types right": scores.site_type_accuracy,
           "volume error (%)": scores.volume_error_pct}
    for part in PARTS:
        row[f"matches with true {part}"] = (row["matched"] or match(swapped(generated, reference, part), reference, matcher)[0]
                                            if swaps else np.nan)
    return row


def cause(row: dict) -> str:
    """The smallest repair that makes a miss match (``matched`` for a match, ``more than one part`` otherwise)."""
    if row["matched"]:
        return "matched"
    if pd.isna(row["matches with true types"]):  # no swaps from pure noise
        return "composition right" if row["composition right"] else "composition wrong"
    fixes = [part for part in PARTS if row[f"matches with true {part}"]]
    if not fixes:
        return "more than one part"
    return " or ".join(fixes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a CFG denoiser checkpoint")
    parser.add_argument("--data", type=Path, default=None, help="data file (default: the embedded set)")
    parser.add_argument("--forward", type=Path, required=True,
                        help="a forward model on the same DOS grid (the sampler needs one; it plays no part here)")
    parser.add_argument("--limit", type=int, default=128, help="first N test crystals")
    parser.add_argument("--t-start", type=int, default=200)
    parser.add_argument("--lattice-step", default=DEFAULT_LATTICE_STEP, choices=LATTICE_STEPS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--step-lr", type=float, default=DEFAULT_STEP_LR, help="Langevin corrector step on X (DiffCSP's step_lr 1e-5; 0: none)")
    parser.add_argument("--tie-types", action=argparse.BooleanOptionalAction, default=DEFAULT_TIE_TYPES, help="sites with identical target DOS share one type (Sampler tie_types)")
    parser.add_argument("--symmetrise", action="store_true",
                        help="average the target DOS over symmetry-equivalent sites first (labels stored before assembly did)")
    parser.add_argument("--csv", type=Path, default=None, help="write one row per crystal here")
    args = parser.parse_args()
    items = list(crystaldos.load_dataset(args.data).split("test")[: args.limit])
    targets = [symmetrise_site_dos(i.dos, i.structure)[0] if args.symmetrise else i.dos for i in items]
    sampler = Sampler.from_checkpoints(args.checkpoint, args.forward, device="cpu")
    results = sampler.reconstruct([i.structure for i in items], targets, guidance="cfg",
                                  t_start=args.t_start, seed=args.seed, lattice_step=args.lattice_step,
                                  step_lr=args.step_lr, tie_types=args.tie_types)
    matcher = structure_matcher()
    swaps = args.t_start <= MAX_SWAP_T_START
    rows = [diagnose(r, i, matcher, swaps) | {"id": i.id} for r, i in zip(results, items)]
    table = pd.DataFrame(rows)
    table["cause"] = [cause(row) for row in rows]
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.csv, index=False, float_format="%.4g")
    n = len(table)
    summary = []
    for label, group in table.groupby("cause", sort=False):
        summary.append({"outcome (smallest repair)": label, "crystals": len(group), "share (%)": 100 * len(group) / n,
                        "composition right (%)": 100 * group["composition right"].mean(),
                        "median |dV| (%)": float(np.nanmedian(group["volume error (%)"].abs())),
                        "median sites": float(group["sites"].median())})
    order = {"matched": 0} | {part: k + 1 for k, part in enumerate(PARTS)}
    summary.sort(key=lambda r: order.get(r["outcome (smallest repair)"], len(order)))
    show_table(summary, f"CFG from t_start = {args.t_start} ({args.lattice_step} lattice steps), first {n} test crystals, "
                        f"seed {args.seed}, step_lr {args.step_lr:g}{', types tied' if args.tie_types else ''}"
                        f"{', symmetrised targets' if args.symmetrise else ''}: {args.checkpoint}")
    for part in PARTS if swaps else ():
        print(f"match with the true {part}: {100 * table[f'matches with true {part}'].mean():.1f} %")
    print(f"composition wrong: {int((~table['composition right']).sum())} of {n}; of the misses with the composition right, "
          f"{int((~table['matched'] & table['composition right']).sum())}")


if __name__ == "__main__":
    main()
