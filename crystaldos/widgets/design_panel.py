"""The dashboard's Design tab: take the chosen crystal's DOS, edit it if you like, and design crystals that have it.

Design draws samples from pure noise with the edited DOS as the target, relaxes each with the universal potential,
recomputes its DOS with the labeller and ranks the candidates by how close that DOS is to the target
(:meth:`crystaldos.Sampler.design`). The panel shows the ranked table, the chosen candidate in 3D and its recomputed
DOS over the target; Export writes every candidate as a CIF file.
"""

from __future__ import annotations

import base64
import html
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

import ipywidgets as widgets
import xarray as xr

from crystaldos.dos_edit import DosEdit
from crystaldos.widgets.dos_view import TOTAL, figure_png, overlay_dos, site_labels
from crystaldos.widgets.structure_view import StructureView

if TYPE_CHECKING:
    from crystaldos.design import DesignResult
    from crystaldos.widgets.dashboard import GuidanceDashboard

#: Candidates drawn by default: top-1 of 8 picked the right crystal twice as often as the first sample on 32 val
#: crystals (docs/research/design.md).
DEFAULT_CANDIDATES = 8
EXPLAIN = (
    "<small>Design starts from pure noise: it keeps only the atom count and the target DOS, draws crystals, "
    "relaxes each with CHGNet, recomputes its DOS with xTB at the relaxed geometry and ranks them by how close "
    "that DOS is to the target (mean per-site difference, states/eV). Edit the target first to ask for a "
    "material that does not exist yet. Each candidate takes a few seconds.</small>"
)


class DesignPanel:
    """Design from the dashboard's chosen crystal's DOS, edited with sliders.

    Attributes (widgets, so that code and tests can drive it):
        shift, gap, gap_centre, peak_factor, peak_centre, peak_width, reset_button: the edit of the target DOS.
        n_candidates, seed, steps, design_button, progress, status: the design run.
        table, candidate, site, view, dos_plot, export_button, downloads: the results.
        result: the last :class:`~crystaldos.design.DesignResult` (None before a run or after the crystal changed).
        target: the target DOS of the last run (the edited one).
    """

    def __init__(self, dashboard: GuidanceDashboard, steps: int, jobs: int = 2) -> None:
        self.dashboard = dashboard
        self.jobs = jobs
        self.result: DesignResult | None = None
        self.target: xr.DataArray | None = None
        self._design_edit: DosEdit | None = None
        self.error: str | None = None
        style = {"description_width": "110px"}
        wide = widgets.Layout(width="360px")

        def slider(value, low, high, step, description, tooltip):
            return widgets.FloatSlider(value=value, min=low, max=high, step=step, description=description, tooltip=tooltip,
                                       style=style, layout=wide, continuous_update=False)

        self.shift = slider(0.0, -3.0, 3.0, 0.1, "shift (eV)", "move the whole DOS to higher (+) or lower (−) energies")
        self.gap = slider(0.0, -2.0, 2.0, 0.1, "gap change (eV)", "open (+) or close (−) a gap at the energy below")
        self.gap_centre = slider(0.0, -5.0, 5.0, 0.1, "gap at (eV)", "where the gap opens or closes")
        self.peak_factor = slider(1.0, 0.0, 3.0, 0.1, "peak ×", "scale the DOS near the energy below (1: unchanged)")
        self.peak_centre = slider(0.0, -10.0, 5.0, 0.1, "peak at (eV)", "centre of the scaled region")
        self.peak_width = slider(1.0, 0.2, 5.0, 0.1, "peak width (eV)", "full width at half maximum of the scaled region")
        self.edits = [self.shift, self.gap, self.gap_centre, self.peak_factor, self.peak_centre, self.peak_width]
        self.reset_button = widgets.Button(description="Reset edits", icon="undo")
        self.n_candidates = widgets.IntSlider(value=DEFAULT_CANDIDATES, min=1, max=16, description="candidates", style=style,
                                              layout=wide, continuous_update=False)
        self.seed = widgets.IntText(value=0, description="seed", style=style, layout=widgets.Layout(width="220px"))
        self.steps = widgets.IntSlider(value=steps, min=10, max=dashboard.sampler.diffusion.timesteps, step=10,
                                       description="reverse steps", style=style, layout=wide, continuous_update=False)
        self.design_button = widgets.Button(description="Design", button_style="primary", icon="flask")
        self.design_button.add_class("crystaldos-design")
        self.progress = widgets.IntProgress(value=0, min=0, max=1, layout=widgets.Layout(width="300px"))
        self.status = widgets.HTML()
        self.status.add_class("crystaldos-design-status")
        self.table = widgets.HTML()
        self.table.add_class("crystaldos-design-table")
        self.candidate = widgets.Dropdown(options=[], description="candidate", style=style, layout=widgets.Layout(width="300px"))
        self.site = widgets.Dropdown(description="DOS of", style=style, layout=widgets.Layout(width="280px"))
        self.view = StructureView()
        self.view.widget.add_class("crystaldos-view-design")
        self.view_title = widgets.HTML()
        self.dos_plot = widgets.Image(format="png", layout=widgets.Layout(width="560px"))
        self.dos_plot.add_class("crystaldos-design-dos")
        self.export_button = widgets.Button(description="Export", icon="download",
                                            tooltip="save every candidate as CIF, the table as CSV and the DOS plot as PNG")
        self.export_button.add_class("crystaldos-design-export")
        self.downloads = widgets.HTML()
        self.downloads.add_class("crystaldos-design-downloads")

        for control in self.edits:
            control.observe(lambda _: self._on_edit(), names="value")
        self.reset_button.on_click(lambda _: self.reset_edits())
        self.design_button.on_click(lambda _: self.run())
        self.export_button.on_click(lambda _: self._export_clicked())
        self.candidate.observe(lambda _: self._show_candidate(), names="value")
        self.site.observe(lambda _: self._draw_dos(), names="value")

        controls = widgets.VBox([
            widgets.HTML("<b>Target DOS</b>: the chosen crystal's, edited"), *self.edits, self.reset_button,
            widgets.HTML("<b>Design</b>"), self.n_candidates, self.steps, self.seed,
            widgets.HBox([self.design_button, self.progress]), self.status, widgets.HTML(EXPLAIN, layout=wide),
            widgets.HBox([self.export_button, self.downloads]),
        ], layout=widgets.Layout(width="480px"))
        results = widgets.VBox([widgets.HBox([self.candidate, self.site]), self.dos_plot,
                                widgets.VBox([self.view_title, self.view.widget])])
        self.widget = widgets.VBox([widgets.HBox([controls, results]), self.table])
        self.widget.add_class("crystaldos-design-panel")
        self.target_changed()

    # ------------------------------------------------------------------ the target
    def edit(self) -> DosEdit:
        """The edit the sliders describe."""
        return DosEdit(shift=self.shift.value, gap=self.gap.value, gap_centre=self.gap_centre.value,
                       peak_factor=self.peak_factor.value, peak_centre=self.peak_centre.value, peak_width=self.peak_width.value)

    def edited_target(self) -> xr.DataArray:
        """The dashboard's chosen crystal's DOS with the edit applied."""
        return self.edit().apply(self.dashboard.item.dos)

    def reset_edits(self) -> None:
        for control, value in zip(self.edits, (0.0, 0.0, 0.0, 1.0, 0.0, 1.0)):
            control.value = value

    def target_changed(self) -> None:
        """The dashboard chose another crystal: clear the results and show its DOS."""
        self.result, self.target, self._design_edit = None, None, None
        self.table.value = self.downloads.value = self.view_title.value = ""
        self.candidate.options = []
        self.site.options = site_labels(self.dashboard.item.dos)
        self.site.value = TOTAL
        self._draw_dos()

    def _on_edit(self) -> None:
        if self.result is not None and self.edit() != self._design_edit:
            self.status.value = "the edit changed: press Design to design for the new target (the plot shows the last design's)"
        self._draw_dos()

    # ------------------------------------------------------------------ running
    def run(self) -> None:
        """Design candidates for the edited target DOS. Errors go to the status line (and ``self.error``)."""
        self.error = None
        n = int(self.n_candidates.value)
        steps = int(self.steps.value)
        self.progress.max, self.progress.value, self.progress.bar_style = steps + n, 0, "info"
        self.design_button.disabled = True

        def advance(stage: str, done: int, total: int) -> None:
            self.progress.value = done if stage == "sample" else steps + done
            if stage == "sample" and done == 1:
                self.status.value = f"sampling {n} crystals from noise ({steps} steps)…"
            elif stage != "sample":
                self.status.value = f"relaxing and recomputing the DOS: {done} of {total}…"

        try:
            edit = self.edit()
            target = edit.apply(self.dashboard.item.dos)
            self.status.value = f"sampling {n} crystals from noise ({steps} steps)…"
            result = self.dashboard.sampler.design(
                target, n_samples=n, seed=int(self.seed.value), progress=False, steps=steps, jobs=self.jobs,
                labeller=self.dashboard.labeller(), callback=advance)
            self.result, self.target, self._design_edit = result, target, edit
            self.candidate.options = [(f"#{c.rank} {c.structure.composition.reduced_formula}", c.rank) for c in result]
            self.candidate.value = 0
            self._write_table()
            self._show_candidate()
            self.progress.bar_style = "success"
            self.status.value = (f"done: {len(result)} candidates of {n} samples ({len(result.dropped)} dropped) in "
                                 f"{result.timings['total']:.0f} s")
        except Exception as error:  # noqa: BLE001 - shown, not raised: a dashboard must not die silently
            self.error = f"{type(error).__name__}: {error}"
            self.progress.bar_style = "danger"
            if hasattr(error, "dropped"):  # DesignError: no sample survived; say why for each
                self.status.value = ("<span style='color:#b00020'><b>no candidate</b>: none of the samples survived "
                                     "relaxation and labelling; try more candidates or another seed</span>")
                self.table.value = _dropped_list(error.dropped)
            else:
                self.status.value = f"<span style='color:#b00020'><b>error</b>: {html.escape(self.error)}</span>"
            self._traceback = traceback.format_exc()
        finally:
            self.design_button.disabled = False

    # ------------------------------------------------------------------ outputs
    def _chosen(self):
        if self.result is None or self.candidate.value is None:
            return None
        return self.result[int(self.candidate.value)]

    def _show_candidate(self) -> None:
        candidate = self._chosen()
        if candidate is None:
            return
        self.view.set_structure(candidate.structure)
        self.view_title.value = (f"<b>candidate #{candidate.rank}</b> {html.escape(candidate.structure.composition.reduced_formula)}"
                                 f" · relaxed · distance {candidate.distance:.3f} · {candidate.energy_per_atom:.3f} eV/atom")
        self._draw_dos()

    def _draw_dos(self) -> None:
        import matplotlib.pyplot as plt

        item = self.dashboard.item
        site = None if self.site.value in (None, TOTAL) else int(self.site.value)
        note = ""
        if self.target is not None:  # after a design: the target it was made for
            edited, edited_now = self.target, self._design_edit is not None and not self._design_edit.is_identity
        else:
            edited_now = not self.edit().is_identity
            try:
                edited = self.edited_target()
            except ValueError as error:  # an edit that empties the window: said, the crystal's own DOS drawn
                edited, note = None, str(error)
        curves = {"target" + (" (as given)" if edited_now else ""): item.dos}
        if edited is not None and edited_now:
            curves["edited target"] = edited
        candidate = self._chosen()
        if candidate is not None:
            curves[f"#{candidate.rank} relaxed, DOS recomputed with xTB"] = candidate.dos
            curves[f"#{candidate.rank} raw sample, forward-model guess"] = candidate.sample.dos_pred
        fig, ax = plt.subplots(figsize=(6.5, 3.0))
        title = f"{item.formula}: " + ("total DOS per atom" if site is None else self.site.label)
        overlay_dos(curves, site=site, ax=ax, title=title)
        if note:
            ax.text(0.01, 0.97, note[:100], transform=ax.transAxes, fontsize=7, color="#b00020", va="top")
        self.dos_plot.value = figure_png(fig)

    def _write_table(self) -> None:
        result = self.result
        rows = [
            f"<tr><td>{c.rank}</td><td>{html.escape(c.structure.composition.reduced_formula)}</td><td>{c.distance:.3f}</td>"
            f"<td>{c.energy_per_atom:.3f}</td><td>{100 * c.relaxation.volume_change:+.1f}</td><td>{c.relaxation.steps}</td>"
            f"<td>{c.sample.settings.get('sample')}</td></tr>" for c in result
        ]
        self.table.value = (
            "<table style='border-collapse:collapse' cellpadding='4'><tr><th>rank</th><th>formula</th>"
            f"<th>distance ({html.escape(result.distance)})</th><th>energy (eV/atom)</th><th>ΔV on relaxing %</th>"
            "<th>relax steps</th><th>sample</th></tr>" + "".join(rows) + "</table>"
            + _dropped_list(result.dropped)
            + "<small>distance: mean over sites of the difference between the candidate's recomputed DOS and the target "
              "(states/eV); energy: CHGNet's, of the relaxed crystal.</small>"
        )

    # ------------------------------------------------------------------ export
    def export(self, folder: str | Path | None = None) -> list[Path]:
        """Write every candidate of the last design as CIF, the ranked table as CSV and the DOS plot as PNG.

        Returns:
            The written files: ``candidate<rank>_<formula>.cif`` per candidate, ``candidates.csv``, ``dos.png``.

        Raises:
            RuntimeError: no design has been run for the chosen crystal.
        """
        from pymatgen.io.cif import CifWriter

        from crystaldos.widgets.dashboard import _safe_name

        if self.result is None:
            raise RuntimeError("nothing to export yet: press Design first")
        item_id = _safe_name(self.dashboard.item.id)
        folder = (Path(folder) if folder is not None
                  else self.dashboard.export_dir / f"design-{item_id}-{time.strftime('%Y%m%d-%H%M%S')}")
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for candidate in self.result:
            path = folder / f"candidate{candidate.rank}_{_safe_name(candidate.structure.composition.reduced_formula)}.cif"
            CifWriter(candidate.structure).write_file(path)
            written.append(path)
        table = folder / "candidates.csv"
        self.result.table().to_csv(table)
        png = folder / "dos.png"
        png.write_bytes(self.dos_plot.value)
        return [*written, table, png]

    def _export_clicked(self) -> None:
        try:
            paths = self.export()
        except Exception as error:  # noqa: BLE001 - shown, not raised
            self.downloads.value = f"<span style='color:#b00020'>{html.escape(f'{type(error).__name__}: {error}')}</span>"
            return
        mimes = {".png": "image/png", ".csv": "text/csv", ".cif": "chemical/x-cif"}
        links = [f"<a download='{html.escape(p.name)}' href='data:{mimes[p.suffix]};base64,"
                 f"{base64.b64encode(p.read_bytes()).decode('ascii')}'>{html.escape(p.name)}</a>" for p in paths]
        self.downloads.value = (f"<small>saved in <code>{html.escape(str(paths[0].parent))}</code>: "
                                + " · ".join(links) + "</small>")


def _dropped_list(dropped) -> str:
    """The dropped samples as an HTML list: which sample, at which stage, why."""
    if not dropped:
        return ""
    items = "".join(f"<li>sample {d.sample_index} ({html.escape(d.stage)}): {html.escape(d.reason[:160])}</li>" for d in dropped)
    return f"<b>dropped</b><ul>{items}</ul>"
