"""The labeller against DFT: GPAW (LCAO dzp, PBE, the Materials Project's functional) on a reference panel.

Needs the optional ``reference`` extra (``apt-get install libxc-dev libopenblas-dev`` first, then
``CC=g++ pip install -e ".[reference]"``); not run in CI.

    python -m benchmarks.labeller.dft_reference --kpts 6 --out docs/research/labeller/dft_reference.md

For each crystal of the reference panel (the physics panel's primitive cells): the earth mover's
distance between the total DOS per atom of the labeller and of PBE (both on the labeller's grid,
relative to their own E_F, so it measures shape and not the absolute level), over the whole window
and over the occupied part only (the dzp basis has many more empty states than xTB's minimal
basis, which dominates the whole-window distance), the band gaps, and the
d-band centre (eV below E_F, mean energy of the d-projected DOS) of the transition-metal atoms.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from crystaldos.dos import DosGrid, site_dos, total_dos, wasserstein
from crystaldos.labellers import XTBLabeller
from crystaldos.labellers.panel import physics_panel

REFERENCE = ["Si", "GaAs", "InP", "MgO", "LiF", "NaCl", "CsCl", "ZnO", "TiO2", "Cu", "Al", "W", "Mg"]


def gpaw_site_dos(structure, grid: DosGrid, kpts: int) -> tuple[xr.DataArray, float, np.ndarray]:
    """PBE atom-level DOS (states/eV per site, E - E_F), the band gap (eV) and each site's d-band centre."""
    from ase.dft.bandgap import bandgap
    from gpaw import GPAW, FermiDirac
    from gpaw.dos import DOSCalculator
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor.get_atoms(structure)
    mesh = np.maximum(1, np.round(kpts * 5.0 / np.array(structure.lattice.abc))).astype(int)  # ~6 per 5 Å
    atoms.calc = GPAW(mode="lcao", basis="dzp", xc="PBE", kpts={"size": tuple(mesh), "gamma": True},
                      occupations=FermiDirac(0.05), txt=None)
    atoms.get_potential_energy()
    gap, _, _ = bandgap(atoms.calc, output=None)
    dos = DOSCalculator.from_calculator(atoms.calc, shift_fermi_level=True)  # eigenvalues relative to E_F
    energies = grid.energies
    values = np.array([sum(dos.raw_pdos(energies, a=a, l=l, width=grid.sigma) for l in range(3)) for a in range(len(atoms))])
    d_centres = []
    wide = np.linspace(-15.0, 5.0, 801)
    for a in range(len(atoms)):
        d = dos.raw_pdos(wide, a=a, l=2, width=grid.sigma)
        d_centres.append(float(np.trapezoid(d * wide, wide) / max(np.trapezoid(d, wide), 1e-12)))
    return site_dos(values, [s.specie.symbol for s in structure], grid, labeller="GPAW LCAO dzp PBE"), float(gap), np.array(d_centres)


def xtb_d_centres(dos: xr.DataArray) -> np.ndarray:
    """The labeller's site DOS carry no l-projection: the centre of the whole site DOS in the window below E_F + 5."""
    e = dos["energy"].values
    mask = e < 5.0
    return np.array([np.trapezoid(v[mask] * e[mask], e[mask]) / max(np.trapezoid(v[mask], e[mask]), 1e-12) for v in dos.values])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kpts", type=int, default=6, help="k-points per 5 Å of lattice length (6 -> 6x6x6 for a 5 Å cell)")
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--out", type=Path, default=None, help="write the table as markdown here")
    args = parser.parse_args()
    labeller = XTBLabeller()
    rows = []
    panel = physics_panel()
    for name in args.only or REFERENCE:
        structure = panel[name][0].get_primitive_structure()
        start = time.perf_counter()
        reference, pbe_gap, pbe_d = gpaw_site_dos(structure, labeller.grid, args.kpts)
        dft_seconds = time.perf_counter() - start
        start = time.perf_counter()
        ours = labeller.label(structure)
        xtb_seconds = time.perf_counter() - start
        per_atom = lambda d: total_dos(d) / d.sizes["site"]  # noqa: E731
        tm = [i for i, s in enumerate(structure) if s.specie.is_transition_metal]
        occupied = {"energy": ours["energy"].values[ours["energy"].values <= 0]}
        rows.append({
            "crystal": name,
            "EMD total DOS (eV)": float(wasserstein(per_atom(ours), per_atom(reference))),
            "EMD occupied (eV)": float(wasserstein(per_atom(ours).sel(occupied), per_atom(reference).sel(occupied))),
            "gap xTB (eV)": float(ours.attrs["band_gap_eV"]),
            "gap PBE (eV)": pbe_gap,
            "d-band centre PBE (eV)": float(np.mean(pbe_d[tm])) if tm else np.nan,
            "site-DOS centre xTB (eV)": float(np.mean(xtb_d_centres(ours)[tm])) if tm else np.nan,
            "s xTB": xtb_seconds,
            "s PBE": dft_seconds,
        })
        print(pd.DataFrame(rows[-1:]).to_string(index=False, float_format="%.3f"), flush=True)
    table = pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f")
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(f"Written by `python -m benchmarks.labeller.dft_reference --kpts {args.kpts}`\n\n{table}\n")


if __name__ == "__main__":
    main()
