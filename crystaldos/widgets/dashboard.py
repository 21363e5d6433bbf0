"""``GuidanceDashboard``: reconstruct a held-out crystal with CBG and CFG side by side, or design crystals from its
(edited) DOS, in Jupyter or voila.

>>> from crystaldos import Sampler, load_dataset
>>> from crystaldos.widgets import GuidanceDashboard
>>> GuidanceDashboard(Sampler.from_pretrained(), load_dataset())

Controls: a searchable structure box (formula or id, or "random"), ``t_start``
(1 ... T, presets 200/500/1000), the CFG ω and CBG s strengths, which variables they guide
(atom types, coordinates, lattice), samples, seed,
reverse steps, and whether to recompute the DOS with xTB. Run samples the same
target with both guidance types (the same seed) and shows the target and the two
reconstructions in three nglview views with linked cameras, a DOS overlay (total
or per site), a metrics table and a trajectory player. Export writes the target and every sample of the last run as CIF files
(pymatgen's ``CifWriter``) and the DOS overlay as PNG, and offers them as downloads (in voila too).

The Design tab (:class:`~crystaldos.widgets.design_panel.DesignPanel`) takes the chosen crystal's DOS, lets you
shift it, open or close a gap and scale a peak, and designs candidates from it: relaxed, their DOS recomputed with
xTB, ranked by distance to the target, shown in 3D with their DOS over the target, exported as CIF.
"""

from __future__ import annotations

import base64
import html
import math
import re
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import xarray as xr

from crystaldos.data.dataset import CrystalDOSDataset
from crystaldos.data.records import CrystalDOS
from crystaldos.guidance import VARIABLES
from crystaldos.metrics import ReconstructionScore, dos_agreement, score
from crystaldos.options import SamplingOptions
from crystaldos.sampler import Sampler, SampleResult
from crystaldos.widgets.dos_view import TOTAL, figure_png, overlay_dos, site_labels
from crystaldos.widgets.structure_view import StructureView, TrajectoryPlayer

RANDOM = "random"
#: Default reverse steps of a Run (strided, log-SNR spacing), chosen on the first 64 validation crystals with the
#: sampler's defaults (python -m benchmarks.speed.dashboard_steps --split val, docs/research/dashboard_steps_val.txt): from t_start
#: = 200 CFG matched 95.3 / 95.3 / 96.9 / 96.9 % with 20 / 50 / 100 / all 200 steps, CBG 84 / 89 / 89 / 88 %; from
#: t_start = 1000 CFG matched 10.9 / 7.8 / 12.5 / 6.2 % with 20 / 50 / 100 / 200 steps, and on 128 val crystals
#: 11.7 % with 100 steps against 3.9 % with all 1000 (section 13), and on the whole test split 6.2 against 6.6 %
#: (section 15). A Run of both guidance types on a 12-atom crystal takes about 1 s on one core with 100 steps.
DEFAULT_STEPS = 100
STEPS_NOTE = ("<small>Fewer reverse steps run faster: 100 (the default) rebuild crystals about as well as the full "
              "schedule, in a tenth of the time.</small>")
GUIDANCE_NAMES = {"cbg": "CBG", "cfg": "CFG"}
GUIDED_LABELS = {"types": "atom types", "coords": "fractional coordinates", "lattice": "lattice"}


def _item_label(item: CrystalDOS) -> str:
    return f"{item.formula} · {item.id}"


def _fmt(value: float, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


class GuidanceDashboard:
    """CBG vs CFG reconstruction of one test crystal, with 3D views, DOS overlays and live guidance settings; and a
    Design tab that designs crystals from the chosen crystal's DOS, edited or not.

    Args:
        sampler: the models (``Sampler.from_pretrained()``).
        dataset: a ``CrystalDOSDataset``; its ``split`` split is offered (all of it if that split is empty).
        split: which split to pick crystals from.
        steps: default number of reverse steps (default :data:`DEFAULT_STEPS`; None: the full schedule,
            ``t_start`` steps; fewer strides it).
        labeller: computes a Structure's atom-level DOS for the xTB comparison and for Design: an object with
            ``.label(structure)`` or a function (default: the labeller the data set was built with,
            ``XTBLabeller.for_dataset(dataset.attrs)``).
        export_dir: where Export writes its folders (default ``crystaldos-export`` in the working directory).
        design_jobs: processes that relax and label Design's candidates in parallel (1: in the kernel itself).

    Attributes (the widgets, so that code and tests can drive the dashboard):
        structure, t_start, presets, omega, cbg_scale, guided ({"types"|"coords"|"lattice": ToggleButton}),
        n_samples, seed, steps, xtb, run_button, export_button,
        progress, status, sample, site, dos_plot, metrics, downloads, trajectory_guidance, views, widget.
        results: {"cbg": [SampleResult], "cfg": [SampleResult]} from the last run.
        scores: {"cbg": [ReconstructionScore], "cfg": [...]} against the target (forward-model DOS).
    """

    def __init__(self, sampler: Sampler, dataset: CrystalDOSDataset, split: str = "test", steps: int | None = DEFAULT_STEPS,
                 labeller=None, export_dir: str | Path = "crystaldos-export", design_jobs: int = 2) -> None:
        self.sampler = sampler
        self.export_dir = Path(export_dir)
        items = dataset.split(split)
        self.items = items if len(items) else dataset
        if not len(self.items):
            raise ValueError("the data set is empty")
        if dataset.grid != sampler.grid:
            # Caught here rather than at the first Run: every crystal of this data set would fail.
            raise ValueError(f"the data set's DOS grid {dataset.grid} is not the models' grid {sampler.grid}; "
                             "resample it (crystaldos.dos.resample) or load models trained on it")
        self._index = {_item_label(item): i for i, item in enumerate(self.items)}
        self._added: dict[str, CrystalDOS] = {}  # crystals a user brought (add_crystal, or a file path typed in the box)
        self._labeller = labeller
        self._dataset_attrs = dict(dataset.attrs)
        self.results: dict[str, list[SampleResult]] = {}
        self.scores: dict[str, list[ReconstructionScore]] = {}
        self.xtb_dos: dict[tuple[str, int], xr.DataArray | str] = {}
        self.error: str | None = None
        self.item: CrystalDOS = self.items[0]
        T = sampler.diffusion.timesteps

        style = {"description_width": "90px"}
        wide = widgets.Layout(width="340px")
        self.structure = widgets.Combobox(
            options=[RANDOM, *self._index], value=_item_label(self.item), ensure_option=False,
            placeholder="a formula or id, 'random', or a CIF/POSCAR path", description="crystal", style=style, layout=wide,
        )
        self.t_start = widgets.IntSlider(value=min(200, T), min=1, max=T, description="t_start", style=style, layout=wide,
                                         continuous_update=False)
        self.presets = widgets.ToggleButtons(options=[p for p in (200, 500, 1000) if p <= T], value=None, description="presets",
                                             style={**style, "button_width": "60px"})
        self.omega = widgets.FloatSlider(value=1.0, min=0.0, max=5.0, step=0.1, description="CFG ω", style=style, layout=wide)
        self.cbg_scale = widgets.FloatSlider(value=1.0, min=0.0, max=5.0, step=0.1, description="CBG s", style=style, layout=wide)
        # Which variables the guidance acts on (benchmarks/guidance/ablation.py: CBG helps only through the types).
        self.guided = {name: widgets.ToggleButton(value=True, description=name, tooltip=f"guide the {GUIDED_LABELS[name]}",
                                                  layout=widgets.Layout(width="76px"))
                       for name in VARIABLES}
        self.n_samples = widgets.IntSlider(value=1, min=1, max=8, description="samples", style=style, layout=wide)
        self.seed = widgets.IntText(value=0, description="seed", style=style, layout=widgets.Layout(width="200px"))
        self.steps = widgets.IntSlider(value=steps or T, min=10, max=T, step=10, description="reverse steps", style=style, layout=wide,
                                       tooltip="strided reverse steps; capped at t_start")
        self.steps_note = widgets.HTML(STEPS_NOTE, layout=widgets.Layout(width="440px"))
        self.xtb = widgets.Checkbox(value=False, description="recompute the DOS with xTB", indent=False)
        self.run_button = widgets.Button(description="Run", button_style="primary", icon="play")
        self.run_button.add_class("crystaldos-run")
        self.export_button = widgets.Button(description="Export", icon="download",
                                            tooltip="save the target and the samples as CIF and the DOS plot as PNG")
        self.export_button.add_class("crystaldos-export")
        self.downloads = widgets.HTML()
        self.downloads.add_class("crystaldos-downloads")
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="", layout=widgets.Layout(width="340px"))
        self.status = widgets.HTML()
        self.status.add_class("crystaldos-status")

        self.views = {name: StructureView() for name in ("target", "cbg", "cfg")}
        for name, view in self.views.items():
            view.widget.add_class(f"crystaldos-view-{name}")
            # nglview's own camera sync: rotating one view rotates the others.
            view.widget._set_sync_camera([v.widget for other, v in self.views.items() if other != name])
        self.view_titles = {name: widgets.HTML() for name in self.views}
        self.sample = widgets.Dropdown(options=[("sample 0", 0)], value=0, description="show", style=style,
                                       layout=widgets.Layout(width="200px"))
        self.site = widgets.Dropdown(description="DOS of", style=style, layout=widgets.Layout(width="260px"))
        self.dos_plot = widgets.Image(format="png", layout=widgets.Layout(width="560px"))
        self.dos_plot.add_class("crystaldos-dos-plot")
        self.metrics = widgets.HTML()
        self.metrics.add_class("crystaldos-metrics")
        self.trajectory_guidance = widgets.ToggleButtons(options=[("CBG", "cbg"), ("CFG", "cfg")], value="cfg",
                                                         description="trajectory", style=style)
        self.trajectory_box = widgets.VBox()
        self.trajectory: TrajectoryPlayer | None = None

        self.structure.observe(self._on_structure, names="value")
        self.presets.observe(self._on_preset, names="value")
        self.run_button.on_click(lambda _: self.run())
        self.export_button.on_click(lambda _: self._export_clicked())
        self.sample.observe(self._on_sample, names="value")
        self.site.observe(lambda _: self._draw_dos(), names="value")
        self.xtb.observe(lambda _: (self._draw_dos(), self._write_metrics()), names="value")
        self.trajectory_guidance.observe(lambda _: self._show_trajectory(), names="value")

        controls = widgets.VBox([
            self.t_start, self.presets, self.omega, self.cbg_scale,
            widgets.HBox([widgets.Label("guide", layout=widgets.Layout(width="90px")), *self.guided.values()]),
            self.n_samples, self.steps, self.steps_note, widgets.HBox([self.seed, self.xtb]),
            widgets.HBox([self.run_button, self.progress]), self.status,
            widgets.HBox([self.export_button, self.downloads]),
        ], layout=widgets.Layout(width="480px"))
        dos_panel = widgets.VBox([widgets.HBox([self.sample, self.site]), self.dos_plot])
        panels = widgets.HBox([widgets.VBox([self.view_titles[n], self.views[n].widget]) for n in self.views])
        reconstruct = widgets.VBox([
            widgets.HBox([controls, dos_panel]), panels, self.metrics,
            widgets.HTML("<b>Denoising trajectory</b> (positions along the reverse process; elements of the final crystal)"),
            self.trajectory_guidance, self.trajectory_box,
        ])
        from crystaldos.widgets.design_panel import DesignPanel

        self.design = DesignPanel(self, steps=steps or DEFAULT_STEPS, jobs=design_jobs)
        self.tabs = widgets.Tab(children=[reconstruct, self.design.widget])
        self.tabs.titles = ("Reconstruct", "Design")
        # NGL draws nothing into a view that was hidden when it was made: redraw the design view when shown.
        self.tabs.observe(lambda change: self.design.view.widget.handle_resize() if change["new"] == 1 else None,
                          names="selected_index")
        self.widget = widgets.VBox([
            widgets.HTML("<h3>crystaldos: crystals from their atom-level DOS</h3>"),
            self.structure, self.tabs,
        ])
        self.widget.add_class("crystaldos-dashboard")
        self.select(self.item)

    # ------------------------------------------------------------------ display
    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    # ------------------------------------------------------------------ selection
    def select(self, item: CrystalDOS | str | int) -> None:
        """Show a target crystal (a record, its label/id, or an index into the split) and clear old results."""
        if isinstance(item, (int, np.integer)):
            item = self.items[int(item)]
        elif isinstance(item, str):
            if item in self._added:
                item = self._added[item]
            elif item in self._index:
                item = self.items[self._index[item]]
            else:
                matches = [label for label in self._index if label.endswith(f"· {item}")]
                if not matches:
                    raise KeyError(f"no crystal {item!r} in this split")
                item = self.items[self._index[matches[0]]]
        self.item = item
        self.results, self.scores, self.xtb_dos = {}, {}, {}
        self.views["target"].set_structure(item.structure)
        self.view_titles["target"].value = f"<b>target</b> {html.escape(item.formula)} ({len(item.structure)} atoms)"
        for name in ("cbg", "cfg"):
            self.view_titles[name].value = f"<b>{GUIDANCE_NAMES[name]}</b> (press Run)"
        self.site.options = site_labels(item.dos)
        self.site.value = TOTAL
        label = _item_label(item)
        if self.structure.value != label:
            self.structure.value = label
        self.metrics.value = ""
        self.downloads.value = ""
        self.trajectory_box.children = []
        self._draw_dos()
        if hasattr(self, "design"):  # not yet while the dashboard is built
            self.design.target_changed()

    def _on_structure(self, change) -> None:
        value = change["new"]
        if value == RANDOM:
            rng = np.random.default_rng(self.seed.value)
            self.select(int(rng.integers(len(self.items))))
        elif value in self._index or value in self._added:
            self.select(value)
        elif value and Path(value).expanduser().is_file():  # a crystal file of the user's: label it and offer it
            self.status.value = f"computing the DOS of {html.escape(value)} with xTB…"
            try:
                self.add_crystal(Path(value).expanduser(), name=Path(value).stem)
                self.status.value = ""
            except Exception as error:  # noqa: BLE001 - unreadable file, labeller refusal: said in the status line
                self.status.value = f"<span style='color:#b00020'><b>error</b>: {html.escape(f'{type(error).__name__}: {error}')}</span>"

    def add_crystal(self, crystal, dos=None, name: str | None = None) -> CrystalDOS:
        """Offer a crystal of your own as the target, and select it.

        Args:
            crystal: a pymatgen Structure, an ASE Atoms, or the path of a crystal file (CIF, POSCAR).
            dos: its atom-level DOS in any form the sampler takes (xarray DOS, array on the models' grid, pymatgen
                ``CompleteDos``); None computes it with the labeller (seconds to a minute).
            name: how the crystal box lists it (default ``mine-1``, ``mine-2``, ...).

        Raises:
            TypeError, ValueError: a crystal or DOS the sampler would not take (the message says why).
        """
        from crystaldos.dos_inputs import as_site_dos
        from crystaldos.structures import as_structure

        structure = as_structure(crystal)
        if dos is None:
            dos = self._label(structure)
        dos = as_site_dos(dos, self.sampler.grid, structure, len(structure))
        record = CrystalDOS(name or f"mine-{len(self._added) + 1}", structure, dos, source="user")
        label = _item_label(record)
        self._added[label] = record
        self.structure.options = [*self.structure.options, label]
        self.select(label)
        return record

    def labeller(self):
        """The labeller (an object with ``.label(structure)``; default: the data set's own)."""
        if self._labeller is None:
            from crystaldos.labellers import XTBLabeller

            self._labeller = XTBLabeller.for_dataset(self._dataset_attrs)
        return self._labeller if hasattr(self._labeller, "label") else FunctionLabeller(self._labeller)

    def _label(self, structure) -> xr.DataArray:
        """The atom-level DOS of ``structure`` from the labeller."""
        return self.labeller().label(structure)

    def _on_preset(self, change) -> None:
        if change["new"] is not None:
            self.t_start.value = int(change["new"])

    # ------------------------------------------------------------------ running
    def options(self, guidance: str) -> SamplingOptions:
        """The sampling options a Run uses for ``guidance`` ("cbg" or "cfg"), read off the controls."""
        t_start = int(self.t_start.value)
        value = float(self.cbg_scale.value if guidance == "cbg" else self.omega.value)
        guided = [name for name, button in self.guided.items() if button.value]
        strength = value if len(guided) == len(VARIABLES) else {name: value for name in guided}
        return SamplingOptions(guidance=guidance, strength=strength, t_start=t_start, n_samples=int(self.n_samples.value),
                               seed=int(self.seed.value), steps=min(int(self.steps.value), t_start))

    def run(self) -> None:
        """Sample CBG and CFG reconstructions of the selected crystal with the current settings.

        Errors are shown in the status line (and kept in ``self.error``), never raised into the notebook.
        """
        self.error = None
        t_start = int(self.t_start.value)
        steps = min(int(self.steps.value), t_start)
        total = 2 * steps
        self.progress.max, self.progress.value, self.progress.bar_style = total, 0, "info"
        self.run_button.disabled = True
        before = 0  # steps of the guidance runs already finished

        def advance(step: int, _: int) -> None:
            self.progress.value = before + step

        try:
            results = {}
            for name in ("cbg", "cfg"):
                self.status.value = f"sampling {GUIDANCE_NAMES[name]} from t = {t_start} ({steps} steps)…"
                results[name] = self.sampler.reconstruct(self.item.structure, self.item.dos, self.options(name),
                                                         keep_trajectory=True, progress=False, callback=advance)
                before += steps
            self.status.value = "scoring…"
            self.results = results
            self.scores = {name: [score(r.structure, self.item.structure, r.dos_pred, self.item.dos) for r in rs]
                           for name, rs in results.items()}
            self.xtb_dos = {}
            # Reset the sample selector quietly, then draw once (its observer would redraw too).
            self.sample.unobserve(self._on_sample, names="value")
            try:
                self.sample.options = [(f"sample {k}", k) for k in range(int(self.n_samples.value))]
                self.sample.value = 0
            finally:
                self.sample.observe(self._on_sample, names="value")
            self._on_sample()
            self.progress.bar_style = "success"
            self.status.value = (f"done: {len(results['cbg'])} CBG and {len(results['cfg'])} CFG samples "
                                 f"(t_start = {t_start}, {steps} steps, ω = {self.omega.value:g}, s = {self.cbg_scale.value:g} "
                                 f"on {' + '.join(n for n, b in self.guided.items() if b.value) or 'no variable'}, "
                                 f"seed {self.seed.value})")
        except Exception as error:  # noqa: BLE001 - shown, not raised: a dashboard must not die silently
            self.error = f"{type(error).__name__}: {error}"
            self.progress.bar_style = "danger"
            self.status.value = f"<span style='color:#b00020'><b>error</b>: {html.escape(self.error)}</span>"
            self._traceback = traceback.format_exc()
        finally:
            self.run_button.disabled = False

    # ------------------------------------------------------------------ outputs
    def _selected(self, name: str) -> SampleResult | None:
        results = self.results.get(name)
        if not results:
            return None
        return results[min(int(self.sample.value or 0), len(results) - 1)]

    def _xtb(self, name: str) -> xr.DataArray | str:
        """xTB DOS of the shown sample of one guidance (cached), or a message saying why there is none."""
        key = (name, int(self.sample.value or 0))
        if key not in self.xtb_dos:
            self.status.value = f"xTB for the {GUIDANCE_NAMES[name]} crystal…"
            try:
                self.xtb_dos[key] = self._label(self._selected(name).structure)
            except Exception as error:  # noqa: BLE001 - implausible cells, SCF failures: said in the plot
                self.xtb_dos[key] = f"{type(error).__name__}: {error}"
        return self.xtb_dos[key]

    def _on_sample(self, _change=None) -> None:
        """Show the selected sample everywhere: views, DOS, metrics, trajectory."""
        self._show_views()
        self._draw_dos()
        self._write_metrics()
        self._show_trajectory()

    def _show_views(self) -> None:
        for name in ("cbg", "cfg"):
            result = self._selected(name)
            if result is None:
                continue
            self.views[name].set_structure(result.structure)
            k = result.settings["sample"]
            s = self.scores[name][k]
            verdict = f"match, RMSE {s.rmse:.3f}" if s.matched else "no match"
            self.view_titles[name].value = (f"<b>{GUIDANCE_NAMES[name]}</b> {html.escape(result.structure.composition.reduced_formula)}"
                                            f" · {verdict}")

    def _draw_dos(self) -> None:
        import matplotlib.pyplot as plt

        curves = {"target": self.item.dos}
        notes = []
        for name in ("cbg", "cfg"):
            result = self._selected(name)
            if result is None:
                continue
            curves[f"{GUIDANCE_NAMES[name]} (forward model)"] = result.dos_pred
            if self.xtb.value:
                xtb = self._xtb(name)
                if isinstance(xtb, str):
                    notes.append(f"{GUIDANCE_NAMES[name]} xTB failed: {xtb[:80]}")
                else:
                    curves[f"{GUIDANCE_NAMES[name]} (xTB)"] = xtb
        fig, ax = plt.subplots(figsize=(6.5, 3.0))
        site = None if self.site.value in (None, TOTAL) else int(self.site.value)
        title = f"{self.item.formula}: " + ("total DOS per atom" if site is None else self.site.label)
        overlay_dos(curves, site=site, ax=ax, title=title)
        for i, note in enumerate(notes):
            ax.text(0.01, 0.97 - 0.08 * i, note, transform=ax.transAxes, fontsize=7, color="#b00020", va="top")
        self.dos_plot.value = figure_png(fig)

    def _write_metrics(self) -> None:
        rows = []
        for name in ("cbg", "cfg"):
            for k, s in enumerate(self.scores.get(name, [])):
                r = self.results[name][k]
                xtb = self.xtb_dos.get((name, k))
                xtb_mae = "–"
                if isinstance(xtb, xr.DataArray):
                    xtb_mae = _fmt(dos_agreement(xtb, self.item.dos)["site_mae"])
                rows.append(
                    f"<tr><td>{GUIDANCE_NAMES[name]}</td><td>{k}</td><td>{html.escape(r.structure.composition.reduced_formula)}</td>"
                    f"<td>{'✔' if s.matched else '✘'}</td><td>{_fmt(s.rmse)}</td><td>{s.volume_error_pct:+.1f}</td>"
                    f"<td>{_fmt(s.length_error_pct, 1)}</td><td>{_fmt(s.angle_error_deg, 1)}</td><td>{100 * s.site_type_accuracy:.0f}</td>"
                    f"<td>{'✔' if s.valid else '✘'}</td><td>{_fmt(s.dos_site_mae)}</td><td>{_fmt(s.dos_total_wasserstein)}</td>"
                    f"<td>{xtb_mae}</td></tr>"
                )
        header = ("<tr><th>guidance</th><th>sample</th><th>formula</th><th>match</th><th>RMSE</th><th>ΔV/atom %</th>"
                  "<th>lengths %</th><th>angles °</th><th>site types %</th>"
                  "<th>valid</th><th>DOS MAE (fwd)</th><th>DOS EMD eV (fwd)</th><th>DOS MAE (xTB)</th></tr>")
        self.metrics.value = (
            "<table style='border-collapse:collapse' cellpadding='4'>" + header + "".join(rows) + "</table>"
            "<small>match/RMSE: StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3); ΔV/atom: signed volume-per-atom error; "
            "lengths/angles: mean |error| after matching (else between Niggli cells); DOS MAE in states/eV per site.</small>"
        )

    def _show_trajectory(self) -> None:
        result = self._selected(self.trajectory_guidance.value)
        if result is None or not result.trajectory:
            self.trajectory_box.children = []
            self.trajectory = None
            return
        self.trajectory = TrajectoryPlayer(result.trajectory, width="420px", height="320px")
        self.trajectory.view.add_class("crystaldos-trajectory")
        self.trajectory_box.children = [self.trajectory.widget]

    # ------------------------------------------------------------------ export
    def export(self, folder: str | Path | None = None) -> list[Path]:
        """Write the target and every sample of the last run as CIF, and the DOS overlay as PNG.

        Args:
            folder: where to write (created; default ``export_dir / "<id>-<YYYYmmdd-HHMMSS>"``).

        Returns:
            The written files: ``target_<formula>.cif``, ``cbg_sample<k>_<formula>.cif``,
            ``cfg_sample<k>_<formula>.cif`` for each sample, and ``dos_overlay.png`` (the plot as shown).
        """
        from pymatgen.io.cif import CifWriter

        item_id = _safe_name(self.item.id)
        folder = Path(folder) if folder is not None else self.export_dir / f"{item_id}-{time.strftime('%Y%m%d-%H%M%S')}"
        folder.mkdir(parents=True, exist_ok=True)
        structures = {f"target_{self.item.formula}": self.item.structure}
        for name, results in self.results.items():
            for result in results:
                structures[f"{name}_sample{result.settings['sample']}_{result.structure.composition.reduced_formula}"] = result.structure
        written = []
        for stem, structure in structures.items():
            path = folder / f"{_safe_name(stem)}.cif"
            CifWriter(structure).write_file(path)
            written.append(path)
        png = folder / "dos_overlay.png"
        png.write_bytes(self.dos_plot.value)
        written.append(png)
        return written

    def _export_clicked(self) -> None:
        """Export, then list the files as download links (data URIs: they work in voila, which serves no files)."""
        try:
            paths = self.export()
        except Exception as error:  # noqa: BLE001 - shown, not raised
            self.downloads.value = f"<span style='color:#b00020'>export failed: {html.escape(f'{type(error).__name__}: {error}')}</span>"
            return
        links = []
        for path in paths:
            mime = "image/png" if path.suffix == ".png" else "chemical/x-cif"
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            links.append(f"<a download='{html.escape(path.name)}' href='data:{mime};base64,{data}'>{html.escape(path.name)}</a>")
        note = "" if self.results else " (press Run to add the CBG and CFG samples)"
        self.downloads.value = (f"<small>saved in <code>{html.escape(str(paths[0].parent))}</code>{note}: "
                                + " · ".join(links) + "</small>")


@dataclass(frozen=True)
class FunctionLabeller:
    """A labelling function as a labeller (``.label``), for the design's workers."""

    function: Callable

    def label(self, structure) -> xr.DataArray:
        return self.function(structure)


def _safe_name(text: str) -> str:
    """A file-name-safe version of a formula or id: Cr(Fe4Ni)3 -> Cr-Fe4Ni-3."""
    return re.sub(r"[^A-Za-z0-9_.]+", "-", text).strip("-") or "crystal"
