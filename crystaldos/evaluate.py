"""The reconstruction experiment: guidance (CBG, CFG) x t_start (1000, 500, 200) over the test split.

    crystaldos evaluate --out results/evaluation            # full test split
    crystaldos evaluate --limit 8 --steps 100 --out results/demo   # a quick look

For every test crystal the sampler gets its atom count and atom-level DOS and,
for t_start < T, the crystal noised to t_start; each generated crystal is scored
with the CDVAE/DiffCSP matcher (match rate, RMSE), validity, composition, and
the agreement of its DOS with the target (forward model; optionally xTB).
Writes ``results.nc`` (xarray), ``report.md`` and figures to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from pymatgen.core import Structure

from crystaldos.data.store import compressed_encoding
from crystaldos.diffusion import DIFFCSP_STEP_LR
from crystaldos.dos import total_dos
from crystaldos.experiments.parts import (
    SCORE_FIELDS,
    XTB_FIELDS,
    PartsMismatchError,
    PartStore,
    batch_part,
    experiment_settings,
    model_hashes,
    part_name,
    xtb_part_name,
)
from crystaldos.metrics import MATCHER_SETTINGS, dos_agreement, score, structure_matcher
from crystaldos.options import (
    AUTO_DDIM_MAX_T_START,
    DEFAULT_LATTICE_STEP,
    DEFAULT_STEP_LR,
    DEFAULT_TIE_TYPES,
    GUIDANCES,
    LATTICE_STEPS,
    SPACINGS,
    UNCONDITIONALS,
    SamplingOptions,
)
from crystaldos.paired import P_VALUE_COLUMN, format_p, paired_match_table


class TimeLimitReached(RuntimeError):
    """A time-limited experiment stopped before its last batch (the finished batches are in its parts folder)."""


def run_experiment(
    sampler,
    items,
    guidances=("cbg", "cfg"),
    t_starts=(1000, 500, 200),
    strengths: dict | None = None,
    options: SamplingOptions | None = None,
    *,
    batch_size: int = 64,
    xtb_limit: int = 0,
    progress: bool = True,
    labeller=None,
    family_seen: Sequence[bool] | None = None,
    parts: str | Path | None = None,
    models: dict | None = None,
    time_limit_minutes: float | None = None,
    **settings,
) -> xr.Dataset:
    """Reconstruct every item under every (guidance, t_start) and score it.

    Returns an xarray Dataset with dims (guidance, t_start, structure[, energy]):
    one variable per score of :class:`crystaldos.metrics.ReconstructionScore`,
    the generated structures (``generated``, pymatgen JSON), their forward-model
    total DOS per atom, the targets' total DOS per atom, sampling time, and, for
    the first ``xtb_limit`` valid crystals per setting, the xTB-recomputed DOS errors.
    ``labeller`` recomputes those DOS; pass ``XTBLabeller.for_dataset(dataset.attrs)`` so that
    they are computed as the targets were (default: xTB defaults on the targets' grid).
    ``options`` (a :class:`~crystaldos.options.SamplingOptions`) and ``settings`` (any of its options by name, over
    ``options``: ``steps``, ``seed``, ``unconditional``, ``spacing``, ``lattice_step``, ``step_lr``, ``tie_types``) say
    how every row samples; each row sets its own ``guidance``, ``strength`` (from ``strengths``) and ``t_start``, and
    a batch starting at item b is seeded ``seed + b``. ``steps`` is capped at each row's ``t_start``.
    ``family_seen`` (n,) marks the items whose prototype family has members in the training split
    (``test.family_seen_in(train)``); the summary then gives match rates for both groups.
    ``parts`` names a folder (:class:`crystaldos.experiments.parts.PartStore`) that keeps every finished batch, so that a
    killed run continues where it stopped and a run may be split over sessions or machines (each doing some
    guidances or t_starts into the same folder); ``models`` (e.g. checkpoint digests) joins its settings.
    ``time_limit_minutes`` (with ``parts``): start no new batch after so many minutes (a lent machine's budget).

    Raises:
        PartsMismatchError: ``parts`` holds batches made with other settings, crystals or models.
        TimeLimitReached: the time limit came before the last batch; the finished ones are in ``parts``.
    """
    from tqdm.auto import tqdm

    options = SamplingOptions.build(options, **settings)
    if options.n_samples != 1:
        raise ValueError(f"an experiment scores one sample per crystal; got n_samples={options.n_samples}")
    strengths = {"cfg": 1.0, "cbg": 1.0, "cbg-dps": 1.0, "none": 0.0} | (strengths or {})
    items = list(items)
    n, energies = len(items), items[0].dos["energy"].values
    shape = (len(guidances), len(t_starts), n)
    arrays = {f: np.full(shape, np.nan) for f in SCORE_FIELDS}
    arrays |= {f"xtb_{f}": np.full(shape, np.nan) for f in XTB_FIELDS}
    generated = np.full(shape, "", dtype=object)
    formulas = np.full(shape, "", dtype=object)
    dos_pred = np.zeros(shape + (energies.size,), dtype=np.float16)
    seconds = np.zeros(shape[:2])
    matcher = structure_matcher()
    store = None
    if time_limit_minutes is not None and parts is None:
        raise ValueError("time_limit_minutes needs a parts folder to keep the finished batches in")
    started = time.perf_counter()
    if parts is not None:
        store = PartStore(parts, experiment_settings(items, strengths, options, batch_size, models))
        done = len([name for name in store.names() if not name.startswith("xtb")])
        if done:
            print(f"resuming from {parts}: {done} finished batches there")
    for gi, guidance in enumerate(guidances):
        for ti, t_start in enumerate(tqdm(t_starts, desc=f"{guidance}", disable=not progress)):
            for b in range(0, n, batch_size):
                chunk = items[b : b + batch_size]
                name = part_name(guidance, t_start, b)
                part = store.load(name) if store else None
                if part is None:
                    if time_limit_minutes is not None and time.perf_counter() - started > 60 * time_limit_minutes:
                        raise TimeLimitReached(f"time limit of {time_limit_minutes} min reached with "
                                               f"{len(store.names())} parts finished in {parts}; rerun to continue")
                    row = options.replace(guidance=guidance, strength=strengths[guidance], t_start=int(t_start),
                                          steps=min(options.steps, t_start) if options.steps else None, seed=options.seed + b)
                    part = _sample_batch(sampler, chunk, matcher, row, progress)
                    if store:
                        store.save(name, part)
                elif list(part["structure"].values) != [i.id for i in chunk]:
                    raise PartsMismatchError(f"part {store.path(name)} holds other crystals than batch {b} of this run")
                for f in SCORE_FIELDS:
                    arrays[f][gi, ti, b : b + len(chunk)] = part[f].values
                generated[gi, ti, b : b + len(chunk)] = part["generated"].values
                formulas[gi, ti, b : b + len(chunk)] = part["generated_formula"].values
                dos_pred[gi, ti, b : b + len(chunk)] = part["dos_pred_total"].values
                seconds[gi, ti] += float(part.attrs["sampling_time_s"])
            if xtb_limit:
                name = xtb_part_name(xtb_limit, guidance, t_start)
                part = store.load(name) if store else None
                if part is None:
                    structures = [Structure.from_dict(json.loads(g)) for g in generated[gi, ti]]
                    part = _xtb_scores(items, structures, xtb_limit, labeller)
                    if store:
                        store.save(name, part)
                for f in XTB_FIELDS:
                    arrays[f"xtb_{f}"][gi, ti] = part[f].values
    ds = xr.Dataset(
        {f: (("guidance", "t_start", "structure"), v) for f, v in arrays.items()}
        | {
            "generated": (("guidance", "t_start", "structure"), generated.astype(str)),
            "generated_formula": (("guidance", "t_start", "structure"), formulas.astype(str)),
            "dos_pred_total": (("guidance", "t_start", "structure", "energy"), dos_pred),
            "dos_target_total": (("structure", "energy"), np.stack([total_dos(i.dos).values / len(i.structure) for i in items]).astype(np.float32)),
            "sampling_time_s": (("guidance", "t_start"), seconds),
            "n_atoms": (("structure",), np.array([len(i.structure) for i in items])),
            "formula": (("structure",), np.array([i.structure.composition.reduced_formula for i in items], dtype=str)),
        },
        coords={"guidance": list(guidances), "t_start": list(t_starts), "structure": [i.id for i in items], "energy": energies},
        attrs={
            "strengths": json.dumps({g: strengths[g] for g in guidances}),
            "steps": options.steps or 0,
            "seed": options.seed,
            "unconditional": options.unconditional,
            "spacing": options.spacing,
            "lattice_step": options.lattice_step,
            "step_lr": options.step_lr,
            "tie_types": int(options.tie_types),
            "matcher": json.dumps(MATCHER_SETTINGS),
            "dos_units": "states/eV/atom; wasserstein in eV",
            "xtb_limit": xtb_limit,
        },
    )
    ds["dos_pred_total"].attrs["note"] = "forward-model DOS of the generated crystal at t = 0, total per atom"
    if family_seen is not None:
        if len(family_seen) != n:
            raise ValueError(f"family_seen has {len(family_seen)} entries for {n} items")
        ds["family_seen"] = ("structure", np.asarray(family_seen, dtype=bool))
        ds["family_seen"].attrs["note"] = "the crystal's prototype family has members in the training split"
    return ds


def _sample_batch(sampler, chunk, matcher, options: SamplingOptions, progress: bool) -> xr.Dataset:
    """Reconstruct one batch of items and score it: one part of the experiment (dims structure[, energy])."""
    started = time.perf_counter()
    results = sampler.reconstruct([i.structure for i in chunk], [i.dos for i in chunk], options, progress=progress)
    elapsed = time.perf_counter() - started
    scores = [score(r.structure, i.structure, r.dos_pred, i.dos, matcher) for i, r in zip(chunk, results)]
    return batch_part(
        chunk, {f: np.array([float(getattr(s, f)) for s in scores]) for f in SCORE_FIELDS},
        # verbosity 0: no Cartesian copies or cell parameters (Structure.from_dict reads it the same); 30 % shorter
        [json.dumps(r.structure.as_dict(verbosity=0)) for r in results],
        [r.structure.composition.reduced_formula for r in results], [r.dos_pred for r in results], elapsed)


def _xtb_scores(items, structures, limit: int, labeller=None) -> xr.Dataset:
    """Recompute the DOS of the first ``limit`` valid generated crystals with xTB and score it against the
    items' targets: one variable per :data:`XTB_FIELDS` (dim structure), NaN where not computed or failed."""
    from crystaldos.labellers import LabellingError, XTBLabeller
    from crystaldos.metrics import is_plausible_cell, is_valid

    values = {f: np.full(len(items), np.nan) for f in XTB_FIELDS}
    chosen = [k for k, s in enumerate(structures) if is_valid(s) and is_plausible_cell(s)][:limit]
    if chosen:
        labeller = labeller or XTBLabeller.for_dataset(items[0].dos.attrs)
        outcomes = labeller.label_many([structures[k] for k in chosen], n_jobs=1, progress=False, errors="return")
        for k, dos in zip(chosen, outcomes):
            if isinstance(dos, LabellingError):
                continue
            for f, v in dos_agreement(dos, items[k].dos).items():
                values[f][k] = v
    return xr.Dataset({f: ("structure", v) for f, v in values.items()}, coords={"structure": [i.id for i in items]})


def summary_table(ds: xr.Dataset) -> pd.DataFrame:
    """One row per (guidance, t_start): match rate (%), RMSE, validity (%), composition and type accuracy (%), DOS errors."""
    rows = []
    for g in ds.guidance.values:
        for t in ds.t_start.values:
            sel = ds.sel(guidance=g, t_start=t)
            matched = sel.matched.values == 1
            rows.append(
                {
                    "guidance": str(g),
                    "t_start": int(t),
                    "n": int(sel.sizes["structure"]),
                    "match rate (%)": 100 * float(np.mean(matched)),
                    **_cdvae_columns(sel),
                    **_family_columns(sel),
                    "RMSE": float(np.nanmean(sel.rmse.values)) if matched.any() else math.nan,
                    **_lattice_columns(sel),
                    "valid (%)": 100 * float(np.mean(sel.valid.values)),
                    "composition (%)": 100 * float(np.mean(sel.composition_match.values)),
                    "site types (%)": 100 * float(np.nanmean(sel.site_type_accuracy.values)),
                    "DOS MAE (fwd)": float(np.nanmean(sel.dos_site_mae.values)),
                    "DOS EMD eV (fwd)": float(np.nanmean(sel.dos_total_wasserstein.values)),
                    "DOS MAE (xTB)": _mean_of_finite(sel.xtb_site_mae.values),
                    "s / structure": float(sel.sampling_time_s) / int(sel.sizes["structure"]),
                }
            )
    return pd.DataFrame(rows)


def _cdvae_columns(sel: xr.Dataset) -> dict:
    """The match rate under CDVAE/DiffCSP's protocol (both crystals valid, SMACT included); empty for
    results written before these scores existed."""
    if "matched_cdvae" not in sel:
        return {}
    return {"match CDVAE (%)": 100 * float(np.mean(sel.matched_cdvae.values == 1))}


def _family_columns(sel: xr.Dataset) -> dict:
    """Match rates (%) of the crystals whose prototype family was seen in training and of the others, with
    their counts; empty without ``family_seen``."""
    if "family_seen" not in sel:
        return {}
    seen = sel.family_seen.values.astype(bool)
    matched = sel.matched.values == 1
    rate = lambda mask: 100 * float(np.mean(matched[mask])) if mask.any() else math.nan
    return {f"match seen (%, n={int(seen.sum())})": rate(seen), f"match unseen (%, n={int((~seen).sum())})": rate(~seen)}


def _lattice_columns(sel: xr.Dataset) -> dict:
    """Mean and median |volume-per-atom error| (%; from noise a few blown-up cells dominate the mean), the share
    within 5 %, lattice length (%) and angle (deg) errors."""
    if "volume_error_pct" not in sel:
        return {}
    finite = lambda v: v[np.isfinite(v)]
    volume = finite(np.abs(sel.volume_error_pct.values))
    return {
        "|dV| (%)": float(volume.mean()) if volume.size else math.nan,
        "median |dV| (%)": float(np.median(volume)) if volume.size else math.nan,
        "V within 5 % (%)": 100 * float(np.mean(np.abs(sel.volume_error_pct.values) <= 5.0)),
        "length err (%)": _mean_of_finite(sel.length_error_pct.values),
        "angle err (deg)": _mean_of_finite(sel.angle_error_deg.values),
    }


def _mean_of_finite(values: np.ndarray) -> float:
    """Mean of the finite values, NaN (without numpy's empty-slice warning) when there are none, e.g. no match."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else math.nan


def plot_summary(ds: xr.Dataset):
    """Match rate and RMSE vs t_start, one line per guidance."""
    import matplotlib.pyplot as plt

    table = summary_table(ds)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for g, rows in table.groupby("guidance"):
        rows = rows.sort_values("t_start")
        axes[0].plot(rows.t_start, rows["match rate (%)"], "o-", label=g.upper())
        axes[1].plot(rows.t_start, rows["RMSE"], "o-", label=g.upper())
    for ax, label in zip(axes[:2], ("match rate (%)", "RMSE (matched, / (V/N)^(1/3))")):
        ax.set_xlabel("t_start")
        ax.set_ylabel(label)
        ax.legend()
    ax = axes[2]
    positions, labels, data = [], [], []
    for gi, g in enumerate(ds.guidance.values):
        for ti, t in enumerate(ds.t_start.values):
            values = ds.dos_site_mae.sel(guidance=g, t_start=t).values
            data.append(values[np.isfinite(values)])
            positions.append(gi * (len(ds.t_start) + 1) + ti)
            labels.append(f"{str(g).upper()}\n{int(t)}")
    ax.boxplot(data, positions=positions, widths=0.7, showfliers=False)
    ax.set_xticks(positions, labels, fontsize=7)
    ax.set_ylabel("site DOS MAE (states/eV/atom)")
    ax.set_title("DOS error of generated crystals (forward model)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_examples(ds: xr.Dataset, n_examples: int = 3, t_start: int | None = None):
    """Target total DOS vs the forward-model DOS of the CBG and CFG reconstructions for a few crystals."""
    import matplotlib.pyplot as plt

    t_start = int(ds.t_start.values[-1]) if t_start is None else t_start
    picks = np.linspace(0, ds.sizes["structure"] - 1, min(n_examples, ds.sizes["structure"])).astype(int)
    fig, axes = plt.subplots(1, len(picks), figsize=(4.4 * len(picks), 3.2), squeeze=False)
    energies = ds.energy.values
    for ax, k in zip(axes[0], picks):
        ax.fill_between(energies, ds.dos_target_total.values[k], color="0.85", label="target")
        for g in ds.guidance.values:
            sel = ds.sel(guidance=g, t_start=t_start).isel(structure=k)
            ok = "match" if sel.matched.values == 1 else "no match"
            ax.plot(energies, sel.dos_pred_total.values, lw=1.2, label=f"{str(g).upper()}: {sel.generated_formula.values} ({ok})")
        ax.axvline(0, color="k", lw=0.5, ls=":")
        ax.set_title(f"{ds.formula.values[k]} ({ds.structure.values[k]}), t_start = {t_start}", fontsize=9)
        ax.set_xlabel("E - E_F (eV)")
        ax.set_ylabel("DOS (states/eV/atom)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def lattice_panel_rows(sampler, labeller, samples: int = 4, t_start: int = 200, seed: int = 0,
                       lattice_step: str = DEFAULT_LATTICE_STEP, step_lr: float = DEFAULT_STEP_LR, tie_types: bool = DEFAULT_TIE_TYPES,
                       relaxer=None) -> pd.DataFrame:
    """The lattice test: each crystal of :func:`crystaldos.labellers.panel.lattice_panel`, labelled by ``labeller``
    (the one the models' data set was built with), reconstructed with CFG (omega = 1) from ``t_start``,
    ``samples`` times (all in one batch). One row per crystal: the samples' formulas, their signed volume-per-atom errors (%) and
    how many lie within 5 % of the true volume. The target: >= 3 of 4 within 5 % for >= 5 of the 6 crystals.

    With a ``relaxer`` (:class:`crystaldos.relax.Relaxer`) each sample is also relaxed, as ``design`` relaxes its
    samples, and two more columns give the relaxed volumes' errors ("x": the relaxation failed) and how many lie
    within 5 %: what the potential's equilibrium adds to what the model drew."""
    from crystaldos.labellers.panel import lattice_panel
    from crystaldos.metrics import lattice_errors

    panel = lattice_panel()
    structures = list(panel.values())
    results = sampler.reconstruct(structures, [labeller.label(s) for s in structures], guidance="cfg", strength=1.0,
                                  t_start=t_start, n_samples=samples, seed=seed, progress=False, lattice_step=lattice_step,
                                  step_lr=step_lr, tie_types=tie_types)
    rows = []
    for k, (name, structure) in enumerate(panel.items()):
        mine = results[k * samples : (k + 1) * samples]  # structure-major
        errors = [lattice_errors(r.structure, structure)["volume_error_pct"] for r in mine]
        row = {
            "crystal": name,
            "samples": ", ".join(r.structure.composition.reduced_formula for r in mine),
            "volume errors (%)": ", ".join(f"{e:+.0f}" for e in errors),
            "within 5 %": int(np.sum(np.abs(errors) <= 5.0)),
        }
        if relaxer is not None:
            relaxed = [_relaxed_volume_error(relaxer, r.structure, structure) for r in mine]
            row["relaxed volume errors (%)"] = ", ".join("x" if e is None else f"{e:+.0f}" for e in relaxed)
            row["relaxed within 5 %"] = sum(e is not None and abs(e) <= 5.0 for e in relaxed)
        rows.append(row)
    return pd.DataFrame(rows)


def _relaxed_volume_error(relaxer, sample, truth) -> float | None:
    """Signed volume-per-atom error (%) of ``sample`` relaxed with ``relaxer`` against ``truth``; None if it fails."""
    from crystaldos.metrics import lattice_errors
    from crystaldos.relax import RelaxationError

    try:
        return lattice_errors(relaxer.relax_checked(sample).structure, truth)["volume_error_pct"]
    except RelaxationError:
        return None


def _lattice_step_text(lattice_step: str) -> str:
    if lattice_step == "auto":
        return f"auto (ddim from t_start <= {AUTO_DDIM_MAX_T_START}, ddpm above)"
    return lattice_step


def scored_crystals(ds: xr.Dataset, whole: str = "", subset_note: str = "") -> str:
    """The crystals a results file scored, in words: "256 of the 845 test crystals" and ``subset_note`` for a subset of
    the split (its ``split_size`` attribute), else "845 test crystals" with ``whole`` (e.g. "all ") before it."""
    n, split = ds.sizes["structure"], ds.attrs.get("split", "test")
    size = int(ds.attrs.get("split_size", n))
    return f"{n} of the {size} {split} crystals{subset_note}" if size != n else f"{whole}{n} {split} crystals"


def write_report(ds: xr.Dataset, out: str | Path, command: str = "", design: str = "") -> Path:
    """Save ``results.nc``, ``summary.png``, ``examples.png`` and ``report.md`` in ``out``; ``design`` is the report's
    design section (:func:`crystaldos.experiments.design_rows.design_section`), if any."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(out / "results.nc", engine="h5netcdf", encoding=compressed_encoding(ds))  # 13.5 -> 6.5 MB on the full run
    plot_summary(ds).savefig(out / "summary.png", dpi=120)
    plot_examples(ds).savefig(out / "examples.png", dpi=120)
    table = summary_table(ds)
    text = (
        "# Reconstruction from the atom-level DOS: CBG vs CFG\n\n"
        + (f"Command: `{command}`\n\n" if command else "")
        + f"{scored_crystals(ds)}; strengths {ds.attrs['strengths']}; "
        + (f"{ds.attrs['steps']} reverse steps" if ds.attrs["steps"] else "one reverse step per diffusion step")
        + f"; seed {ds.attrs['seed']}; unconditional score for CBG/none: {ds.attrs.get('unconditional', 'separate')}"
        + f"; lattice steps: {_lattice_step_text(ds.attrs.get('lattice_step', 'ddpm'))}"
        + f"; Langevin corrector step on X: {ds.attrs.get('step_lr', DIFFCSP_STEP_LR):g}"  # results before the option: DiffCSP's
        + ("; sites with identical target DOS tied to one type" if int(ds.attrs.get("tie_types", 0)) else "")
        + f"; StructureMatcher {ds.attrs['matcher']}.\n\n"
        + table.to_markdown(index=False, floatfmt=".3f")
        + _paired_section(ds)
        + design
        + "\n\n![summary](summary.png)\n\n![examples](examples.png)\n"
    )
    (out / "report.md").write_text(text)
    return out / "report.md"


def _paired_section(ds: xr.Dataset) -> str:
    """The report's paired comparison of the guidances (crystal by crystal; :mod:`crystaldos.paired`), or nothing
    for a single guidance."""
    if ds.sizes.get("guidance", 1) < 2:
        return ""
    table = paired_match_table(ds)
    table[P_VALUE_COLUMN] = table[P_VALUE_COLUMN].map(format_p)
    return ("\n\n## Paired comparison\n\nThe same crystals under two guidances: matched by both, by only one, and the "
            "two-sided exact McNemar p-value of the discordant counts (`crystaldos.paired`).\n\n"
            # the p column is text (format_p): keep tabulate from reading it back as a number
            + table.to_markdown(index=False, floatfmt=".1f", disable_numparse=[table.columns.get_loc(P_VALUE_COLUMN)]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="crystaldos evaluate", description=__doc__.splitlines()[0])
    add_arguments(parser)
    run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default=None, help="folder with cfg.pt, uncond.pt, forward.pt (default: shipped); "
                                                         "uncond.pt is not needed with --unconditional cfg-null")
    parser.add_argument("--data", default=None, help="data file (default: embedded)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None, help="first N crystals of the split")
    parser.add_argument("--random", type=int, default=None, metavar="N",
                        help="N crystals of the split drawn at random with --seed, in split order (instead of --limit: "
                             "a split's first crystals need not be typical)")
    parser.add_argument("--guidance", nargs="+", default=["cbg", "cfg"], choices=GUIDANCES,
                        help="cbg-dps: classifier-based guidance through the denoiser's predicted clean crystal (an option)")
    parser.add_argument("--t-start", nargs="+", type=int, default=[1000, 500, 200])
    parser.add_argument("--cfg-strength", type=float, default=1.0, help="omega")
    parser.add_argument("--cbg-strength", type=float, default=1.0, help="s (CBG and CBG-DPS)")
    parser.add_argument("--steps", type=int, default=None, help="reverse steps (default: t_start)")
    parser.add_argument("--spacing", default=SamplingOptions.spacing, choices=SPACINGS,
                        help="where strided steps fall (results before 2026-11-27 used uniform)")
    parser.add_argument("--lattice-step", default=DEFAULT_LATTICE_STEP, choices=LATTICE_STEPS,
                        help="the lattice's reverse step: ancestral (DiffCSP's), deterministic, or auto (deterministic "
                             "from a noised crystal, ancestral from noise; the default, docs/research/lattice.md)")
    parser.add_argument("--step-lr", type=float, default=DEFAULT_STEP_LR,
                        help="Langevin corrector step on the coordinates (DiffCSP's 1e-5; 0, the default: no corrector, docs/research/lattice.md)")
    parser.add_argument("--tie-types", action=argparse.BooleanOptionalAction, default=DEFAULT_TIE_TYPES,
                        help="sites whose target DOS are identical (symmetry-equivalent) get one type (the default; docs/research/lattice.md)")
    parser.add_argument("--unconditional", default=SamplingOptions.unconditional, choices=UNCONDITIONALS,
                        help="score under CBG and 'none': the separate unconditional model or the CFG model's null branch")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--xtb-limit", type=int, default=0, help="recompute the DOS of up to N valid crystals per setting with xTB")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default="results/evaluation")
    parser.add_argument("--parts", default=None,
                        help="folder that keeps every finished batch, so that a killed run resumes (default: <out>/parts); "
                             "runs of some guidances or t_starts on other machines may share it")
    parser.add_argument("--time-limit-minutes", type=float, default=None,
                        help="start no new batch after so many minutes (the parts keep what is done; rerun to continue)")
    parser.add_argument("--design-limit", type=int, default=0,
                        help="also design from the DOS of the first N crystals (k samples each, relaxed and relabelled; "
                             "about a minute per crystal): the report's design section")
    parser.add_argument("--design-k", type=int, default=8, help="samples per crystal of the design section")
    parser.add_argument("--no-progress", action="store_true")


def choose_crystals(split, limit: int | None = None, random: int | None = None, seed: int = 0):
    """The crystals of ``split`` (a :class:`~crystaldos.data.dataset.CrystalDOSDataset`) an experiment scores: its first
    ``limit``, or ``random`` of them drawn with ``seed`` and kept in split order, or all. Raises ``ValueError`` for
    both at once or a count outside 1 ... len(split)."""
    if random is None:
        return split[:limit]
    if limit is not None or not 0 < random <= len(split):
        raise ValueError(f"--random {random}: give a count from 1 to the split's {len(split)} crystals, and not "
                         "together with --limit")
    chosen = np.sort(np.random.default_rng(seed).choice(len(split), random, replace=False))
    return type(split)([split[int(i)] for i in chosen], split.grid, split.attrs)


def run(args: argparse.Namespace) -> None:
    import shlex
    import sys

    from crystaldos.checkpoint import PRETRAINED_DIR
    from crystaldos.data import load_dataset
    from crystaldos.data.store import DataFormatError
    from crystaldos.labellers import XTBLabeller
    from crystaldos.sampler import Sampler

    folder = Path(args.models) if args.models else PRETRAINED_DIR
    # A folder without uncond.pt serves CFG, and CBG or unguided sampling from the CFG model's null branch.
    separate = args.unconditional == "separate" and any(g != "cfg" for g in args.guidance)
    sampler = Sampler.from_pretrained(folder, device=args.device, require_uncond=separate)
    models = model_hashes(folder)
    dataset = load_dataset(args.data)
    whole_split = dataset.split(args.split)
    try:
        split = choose_crystals(whole_split, limit=args.limit, random=args.random, seed=args.seed)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    items = list(split)
    try:
        family_seen = split.family_seen_in(dataset.split("train"))
    except DataFormatError:  # format 1 keeps no prototype family: no seen/unseen columns
        print(f"note: no match rates by prototype family (seen in training or not): data format version "
              f"{dataset.attrs.get('format_version')} keeps no prototype family")
        family_seen = None
    try:
        options = SamplingOptions(steps=args.steps, seed=args.seed, unconditional=args.unconditional, spacing=args.spacing,
                                  lattice_step=args.lattice_step, step_lr=args.step_lr, tie_types=args.tie_types)
        ds = run_experiment(
            sampler, items, tuple(args.guidance), tuple(args.t_start),
            {"cfg": args.cfg_strength, "cbg": args.cbg_strength, "cbg-dps": args.cbg_strength}, options,
            batch_size=args.batch_size, xtb_limit=args.xtb_limit, progress=not args.no_progress,
            labeller=XTBLabeller.for_dataset(dataset.attrs), family_seen=family_seen,
            parts=args.parts or Path(args.out) / "parts", models=models, time_limit_minutes=args.time_limit_minutes,
        )
    except TimeLimitReached as stop:
        print(stop)
        return
    ds.attrs["split"] = args.split  # the report names the split it scored (defaults are chosen on "val")
    ds.attrs["split_size"] = len(whole_split)  # a summary of a subset says "N of M"
    design = ""
    if args.design_limit:
        from crystaldos.experiments.design_rows import design_section, run_design_rows

        store = Path(args.out) / f"design_k{args.design_k}_seed{args.seed}.jsonl"  # one line per crystal: resumable
        outcomes = run_design_rows(sampler, items[: args.design_limit], args.design_k, args.seed, store,
                                   labeller=XTBLabeller.for_dataset(dataset.attrs), progress=not args.no_progress)
        design = design_section(outcomes, args.design_k, args.seed, jobs=2)
    command = "crystaldos evaluate " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["evaluate"] else ""
    report = write_report(ds, args.out, command, design)
    print(report.read_text())


if __name__ == "__main__":
    main()
