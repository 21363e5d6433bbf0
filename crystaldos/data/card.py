"""A data card (markdown + figure) describing a crystaldos data file."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import xarray as xr
from pymatgen.core import Element

from crystaldos.dos import DosGrid


def card_statistics(ds: xr.Dataset) -> dict:
    """Counts, elements, sizes and DOS statistics of a packed data set (see :mod:`crystaldos.data.store`)."""
    grid = DosGrid.from_attrs(ds.attrs)
    numbers = ds["atomic_number"].values
    per_element = Counter(Element.from_Z(int(z)).symbol for z in numbers)
    n_sites = ds["n_sites"].values
    dos = ds["dos"]
    at_fermi = dos.interp(energy=0.0).values  # states/eV/atom at E_F
    integrated = dos.integrate("energy").values  # states/atom in the window
    stats = {
        "n_structures": int(ds.sizes["structure"]),
        "n_sites_total": int(ds.sizes["site"]),
        "splits": dict(Counter(map(str, ds["split"].values))),
        "sources": dict(Counter(map(str, ds["source"].values))),
        "origins": dict(Counter(map(str, ds["origin"].values))) if "origin" in ds else {},
        "n_elements": len(per_element),
        "elements": dict(sorted(per_element.items(), key=lambda kv: -kv[1])),
        "sites_min": int(n_sites.min()),
        "sites_median": float(np.median(n_sites)),
        "sites_max": int(n_sites.max()),
        "grid": grid,
        "dos_at_fermi_mean": float(at_fermi.mean()),
        "states_in_window_mean": float(integrated.mean()),
        "dos_max": float(dos.values.max()),
    }
    if "band_gap_eV" in ds:
        gaps = ds["band_gap_eV"].values
        stats.update(metal_fraction=float(np.mean(gaps <= 0)), gap_median_nonmetal=float(np.median(gaps[gaps > 0])) if np.any(gaps > 0) else 0.0)
    if "wall_time_s" in ds:
        t = ds["wall_time_s"].values
        stats.update(label_time_mean=float(t.mean()), label_time_median=float(np.median(t)), label_time_max=float(t.max()))
    stats.update(chemistry_statistics(ds))
    return stats


def _structures(ds: xr.Dataset):
    """(id, source, pymatgen Structure) of every record of a packed data set."""
    from crystaldos.data.store import PackedRecords

    records = PackedRecords(ds)
    for k, (record_id, source) in enumerate(zip(records.ids, ds["source"].values.astype(str))):
        yield record_id, source, records.structure(k)


def chemistry_statistics(ds: xr.Dataset) -> dict:
    """SMACT composition validity (CDVAE's screen) per source, and the crystals failing the geometry check by name."""
    from crystaldos.chemistry import geometry_problem, smact_valid

    valid: dict[str, list[bool]] = {}
    problems = {}
    for record_id, source, structure in _structures(ds):
        valid.setdefault(source, []).append(bool(smact_valid(structure.composition)))
        reason = geometry_problem(structure)
        if reason:
            problems[f"{structure.composition.reduced_formula} ({record_id})"] = reason
    shares = {source: float(np.mean(v)) for source, v in sorted(valid.items())}
    everything = [x for v in valid.values() for x in v]
    return {"smact_valid_share": shares, "smact_valid_all": float(np.mean(everything)) if everything else 0.0,
            "geometry_problems": problems}


#: The labeller's measurements, written by the benchmarks into docs/research/labeller.md; a format-2 card quotes them.
LABELLER_DOC = Path(__file__).resolve().parents[2] / "docs" / "research" / "labeller.md"
EVIDENCE_SECTIONS = ("Physics panel", "Against DFT", "Convergence on crystals of the data set", "Cost", "Energy window")


def labeller_evidence(doc: Path = LABELLER_DOC, sections: tuple[str, ...] = EVIDENCE_SECTIONS) -> list[str]:
    """The sections of ``doc`` whose level-2 heading starts with one of ``sections`` (heading demoted to level 3),
    as markdown lines; a note instead when the file is absent (an installed package carries no docs)."""
    if not doc.exists():
        return [f"(The measurements of the labeller are in docs/research/labeller.md of the source repository; {doc} is absent.)"]
    lines, keep = [], False
    for line in doc.read_text().splitlines():
        if line.startswith("## "):
            keep = line[3:].startswith(sections)
            if keep:
                lines += ["", "#" + line]
                continue
        if keep:
            lines.append(line)
    return lines


def plot_card(ds: xr.Dataset, path: Path, stats: dict | None = None) -> Path:
    """Four panels: sites per cell by source, element counts, band gaps, mean atom DOS (``stats``: the
    :func:`card_statistics` of ``ds``, computed here when not given)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    stats = stats if stats is not None else card_statistics(ds)
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5))
    ax = axes[0, 0]
    sources = ds["source"].values
    bins = np.arange(0.5, int(ds["n_sites"].max()) + 1.5)
    for source in sorted(set(map(str, sources))):
        ax.hist(ds["n_sites"].values[sources == source], bins=bins, alpha=0.7, label=source)
    ax.set(xlabel="sites per cell", ylabel="structures", title="cell sizes")
    ax.legend(frameon=False)
    ax = axes[0, 1]
    top = list(stats["elements"].items())[:30]
    ax.bar([k for k, _ in top], [v for _, v in top], color="tab:green")
    ax.set(ylabel="sites", title=f"{stats['n_elements']} elements (30 most common)")
    ax.tick_params(axis="x", labelrotation=90, labelsize=7)
    ax = axes[1, 0]
    if "band_gap_eV" in ds:
        ax.hist(ds["band_gap_eV"].values, bins=40, color="tab:purple")
    ax.set(xlabel=f"{ds.attrs.get('labeller_method', 'GFN1-xTB')} gap (eV)", ylabel="structures", title=f"band gaps ({100 * stats.get('metal_fraction', 0):.0f}% metallic)")
    ax = axes[1, 1]
    energy = ds["energy"].values
    values = ds["dos"].values
    lo, mid, hi = np.percentile(values, [10, 50, 90], axis=0)
    ax.fill_between(energy, lo, hi, alpha=0.3, label="10-90%")
    ax.plot(energy, values.mean(0), label="mean")
    ax.plot(energy, mid, label="median")
    ax.axvline(0, color="0.5", ls="--", lw=0.8)
    ax.set(xlabel="E - E$_F$ (eV)", ylabel="states/eV/atom", title="atom-level DOS over all sites")
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def relaxation_rows(ds: xr.Dataset) -> list[str]:
    """Card rows on the split kind, the relaxation (statistics and cost) and the hull energies, where the data have them."""
    rows = []
    kind = ds.attrs.get("split_kind", "random")
    rows.append(f"| split kind | {'whole prototype families held out in val and test (none of their families occurs in train)' if kind == 'family' else 'random over crystals'} |")
    if "relax_model" not in ds.attrs or "relax_volume_change" not in ds:
        return rows
    dv = 100 * np.abs(ds["relax_volume_change"].values.astype(float))
    steps = ds["relax_steps"].values.astype(float)
    seconds = ds["relax_wall_time_s"].values.astype(float)
    rows.append(
        f"| relaxation | {ds.attrs['relax_model']}, positions and cell, {ds.attrs.get('relax_optimizer', 'FIRE')} to {ds.attrs.get('relax_fmax', '?')} eV/Å, at most "
        f"{ds.attrs.get('relax_max_steps', '?')} steps; |volume change| median {np.median(dv):.1f} %, 90th percentile "
        f"{np.percentile(dv, 90):.1f} %; steps median {np.median(steps):.0f}; {seconds.mean():.1f} s per crystal on one core |")
    if "e_above_hull_eV" in ds:
        from crystaldos.data.stability import MAX_E_ABOVE_HULL

        hull = ds["e_above_hull_eV"].values.astype(float)
        rows.append(
            f"| energy above the hull (the set's own phase diagram) | median {1000 * np.median(hull):.0f} meV/atom; on the hull "
            f"{100 * np.mean(hull <= 1e-6):.1f} %, within 0.1 eV/atom {100 * np.mean(hull <= 0.1):.1f} %; crystals more than "
            f"{MAX_E_ABOVE_HULL} eV/atom above it left out (95.5 % of the known prototypes lie within it) |")
    return rows


def write_card(ds: xr.Dataset, out_dir: Path, data_file: Path | None = None) -> Path:
    """Write ``CARD.md`` and ``card.png`` for ``ds`` into ``out_dir``; returns the markdown path."""
    out_dir = Path(out_dir)
    stats = card_statistics(ds)
    plot_card(ds, out_dir / "card.png", stats)
    grid = stats["grid"]
    reasons = json.loads(ds.attrs.get("failures_by_reason", "{}"))
    size = f"{data_file.stat().st_size / 1e6:.1f} MB" if data_file and data_file.exists() else "see file"
    lines = [
        "# Data card: crystaldos embedded default",
        "",
        str(ds.attrs.get("title", "")),
        "",
        "![card](card.png)",
        "",
        "| quantity | value |",
        "| --- | --- |",
        f"| structures | {stats['n_structures']} ({stats['n_sites_total']} sites) |",
        f"| splits | {', '.join(f'{k} {v}' for k, v in sorted(stats['splits'].items()))} (seed {ds.attrs.get('seed', '?')}) |",
        f"| provenance | {', '.join(f'{k} {v}' for k, v in sorted(stats['sources'].items()))} |",
        *([f"| structure sources | {', '.join(f'{k} {v}' for k, v in sorted(stats['origins'].items()))} (substitutions counted with their parent's source) |"]
          if stats["origins"] else []),
        f"| elements | {stats['n_elements']}: {' '.join(stats['elements'])} |",
        f"| sites per cell | {stats['sites_min']} ... {stats['sites_max']} (median {stats['sites_median']:g}) |",
        f"| DOS grid | {grid.e_min:g} ... {grid.e_max:g} eV (E - E_F), {grid.n_points} points, Gaussian sigma {grid.sigma:g} eV |",
        "| DOS units | states/eV per atom, both spins |",
        f"| mean DOS at E_F | {stats['dos_at_fermi_mean']:.3f} states/eV/atom |",
        f"| mean states per atom in window | {stats['states_in_window_mean']:.2f} |",
    ]
    if "metal_fraction" in stats:
        lines.append(f"| metallic (gap < {ds.attrs.get('labeller_gap_threshold', 0.1)} eV) | {100 * stats['metal_fraction']:.1f}%; median gap of the rest {stats['gap_median_nonmetal']:.2f} eV |")
    if "label_time_mean" in stats:
        lines.append(
            f"| labelling time per structure | mean {stats['label_time_mean']:.1f} s, median {stats['label_time_median']:.1f} s, "
            f"max {stats['label_time_max']:.0f} s (one core) |"
        )
    kmesh = ds.attrs.get("labeller_sampling", "gamma") == "kmesh"
    if kmesh:
        labeller = (f"{ds.attrs.get('labeller_method', '?')} (tblite), k-mesh of {ds.attrs.get('labeller_k_density', '?')} points per 1/Å "
                    "from two-centre matrices, SCF potential from a Gamma-point supercell >= "
                    f"{ds.attrs.get('labeller_min_length', '?')} Å of the primitive cell at {ds.attrs.get('labeller_electronic_temperature', '?')} K "
                    "(retried hotter, damped, other supercells), Mulliken projection; method and limits: docs/research/labeller.md")
    else:
        labeller = (f"{ds.attrs.get('labeller_method', '?')} (tblite), Gamma-point supercells >= {ds.attrs.get('labeller_min_length', '?')} Å "
                    f"(<= {ds.attrs.get('labeller_max_orbitals', '?')} basis functions), Mulliken projection, "
                    f"T_el = {ds.attrs.get('labeller_electronic_temperature', '?')} K")
    lines += relaxation_rows(ds)
    shares = ", ".join(f"{k} {100 * v:.1f} %" for k, v in stats["smact_valid_share"].items())
    problems = stats["geometry_problems"]
    lines += [
        f"| candidates attempted / failed | {ds.attrs.get('n_candidates', '?')} / {ds.attrs.get('n_failed', '?')} {reasons if reasons else ''}"
        + (f" (of {ds.attrs['n_candidates_total']} candidates)" if ds.attrs.get("n_candidates_total", ds.attrs.get("n_candidates"))
           != ds.attrs.get("n_candidates") else "") + " |",
        f"| SMACT-valid compositions (CDVAE's screen) | {100 * stats['smact_valid_all']:.1f} % ({shares}) |",
        f"| geometry check (0.6 x covalent radii, 4-100 Å³/atom) | {len(problems)} exceptions"
        + (f": {'; '.join(f'{k}: {v}' for k, v in problems.items())}" if problems else "") + " |",
        f"| labeller | {labeller} |",
        f"| file | {size}, format version {ds.attrs.get('format_version', '?')}, crystaldos {ds.attrs.get('crystaldos_version', '?')}, built {ds.attrs.get('created', '?')} |",
        "",
        "## Provenance",
        "",
        str(ds.attrs.get("provenance", "")),
        "",
        "## Regenerate",
        "",
        "```bash",
        str(ds.attrs.get("build_command", "python -m crystaldos.data.build")),
        "```",
        "",
        ("Caveats: GFN2-xTB is a semi-empirical tight-binding method: its band gaps differ from DFT's (too large for covalent "
         "semiconductors, 3-16x too small for ionic insulators; InP and ZnO come out nearly gapless), see the DFT comparison in "
         "docs/research/labeller.md; charges come from a Gamma-point SCF, whose supercell the DOS still depends on for metals; crystals "
         "whose GFN2-xTB SCF diverges are left out (listed by reason above), and so are those whose symmetry-equivalent sites' DOS "
         "differ by more than the label noise (SymmetryBrokenError; the others are averaged over equivalent sites); "
         + ("every crystal was relaxed with the universal potential named above, not with DFT: its equilibrium volumes are "
            "PBE-like (a few per cent larger than experiment)." if "relax_model" in ds.attrs else
            "substituted structures are unrelaxed (predicted volume, parent geometry).")) if kmesh else
        ("Caveats: GFN1-xTB is a semi-empirical tight-binding method (band gaps and band widths differ from DFT); "
         "Gamma-point sampling of a >= 8 Å supercell (capped at 360 basis functions) discretises the levels; the 0.2 eV broadening smooths "
         "most of it, but small metallic cells can show shell-closure gaps at E_F (e.g. fcc Cu); "
         "substituted structures are unrelaxed (predicted volume, parent geometry)."),
        "",
    ]
    if kmesh:
        lines += ["## How good the labels are (measured; from docs/research/labeller.md, where the commands are)", *labeller_evidence(), ""]
    path = out_dir / "CARD.md"
    path.write_text("\n".join(lines))
    return path
