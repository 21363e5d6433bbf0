"""Does the k-mesh labeller's H(k) reproduce tblite's own Hamiltonian where both are defined?

    python -m benchmarks.labeller.supercell_reproduction --data data/default-v2/labels --n 12 --seed 0 --methods GFN1-xTB GFN2-xTB

The labeller (``crystaldos.labellers.bloch``) rebuilds the converged SCF Hamiltonian from two-centre blocks and the
per-orbital SCF potential, leaving out GFN2's multipole terms unless ``multipole_blocks`` (method ``GFN2-xTB+multipoles`` here). At the k-points commensurate with the SCF's
Gamma-point supercell (k with M k integer, M the supercell matrix) its spectrum should be tblite's spectrum of
that supercell. For a seeded sample of crystals this prints, per method, the largest element of the dropped
multipole terms, the MAE of the sorted eigenvalues (eV, states below E_F + 5 eV) and the MAE of the total DOS
(states/eV/atom, the labels' grid and broadening, both spectra on tblite's Fermi level); the label noise is 0.03.
``--data``: a data file or a folder of labelled chunks.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from benchmarks.tables import show_row, show_table

from crystaldos.data.store import open_netcdf, xarray_to_records
from crystaldos.dos import DosGrid, broaden
from crystaldos.labellers import bloch
from crystaldos.labellers.xtb import EV_PER_HARTREE, XTBLabeller, primitive_site_map


def compare(labeller: XTBLabeller, structure) -> dict:
    """One crystal: our spectrum at the supercell's k-points against tblite's supercell spectrum."""
    primitive, _ = primitive_site_map(structure)
    scf = labeller._converged_scf(primitive)
    matrices, _, residual = labeller.bloch_matrices(primitive, scf, primitive, np.arange(len(primitive)))  # the label's own
    kpoints = bloch.commensurate_kpoints(scf.matrix)
    energies, _, _ = bloch.solve(*matrices.at(kpoints), labeller.overlap_threshold)
    ours = np.sort(energies.ravel())
    theirs = np.sort(scf.result.get("orbital-energies") * EV_PER_HARTREE)
    efermi, _ = labeller._fermi_level(scf.result.get("orbital-energies") * EV_PER_HARTREE, scf.result.get("orbital-occupations"))
    n_atoms = len(scf.numbers)
    window = theirs < efermi + 5.0
    total = {name: broaden(levels - efermi, np.full((1, levels.size), 2.0 / n_atoms), labeller.grid)[0]
             for name, levels in (("ours", ours), ("tblite", theirs))}
    return {"formula": structure.composition.reduced_formula, "sites": len(primitive), "k-points": len(kpoints),
            "multipole residual (eV)": float(residual * EV_PER_HARTREE),
            "eigenvalue MAE (eV)": float(np.abs(ours[window] - theirs[window]).mean()) if ours.size == theirs.size else np.nan,
            "total DOS MAE": float(np.abs(total["ours"] - total["tblite"]).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="data file or folder of chunk_*.nc")
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-sites", type=int, default=8, help="sample crystals with at most this many sites")
    parser.add_argument("--methods", nargs="+", default=["GFN1-xTB", "GFN2-xTB", "GFN2-xTB+multipoles"],
                        help="tblite methods; '+multipoles' keeps GFN2's multipole terms (XTBLabeller multipole_blocks)")
    args = parser.parse_args()
    files = sorted(args.data.glob("chunk_*.nc")) if args.data.is_dir() else [args.data]
    records = [r for f in files for r in xarray_to_records(open_netcdf(f)) if len(r.structure) <= args.max_sites]
    grid = DosGrid.from_attrs(open_netcdf(files[0]).attrs)
    sample = [records[i] for i in np.random.default_rng(args.seed).choice(len(records), size=args.n, replace=False)]
    rows = []
    for record in sample:
        for method in args.methods:
            start = time.perf_counter()
            try:
                name, _, blocks = method.partition("+")
                labeller = XTBLabeller(grid=grid, method=name, multipole_blocks=blocks == "multipoles")
                row = {"id": record.id, "method": method} | compare(labeller, record.structure)
            except Exception as err:  # an SCF that fails for this method: say so and go on
                row = {"id": record.id, "method": method, "formula": record.formula, "error": f"{type(err).__name__}: {str(err)[:60]}"}
            rows.append(row | {"s": time.perf_counter() - start})
            show_row(rows, "%.3f")
    show_table(rows, f"Our H(k) at the SCF supercell's k-points against tblite's supercell spectrum, {args.n} crystals "
                     f"(<= {args.max_sites} sites, seed {args.seed}):", floatfmt=".3f")
    import pandas as pd

    table = pd.DataFrame(rows)
    summary = table.groupby("method")[["multipole residual (eV)", "eigenvalue MAE (eV)", "total DOS MAE"]].median()
    print("\nMedians per method:\n" + summary.to_markdown(floatfmt=".3f"))


if __name__ == "__main__":
    main()
