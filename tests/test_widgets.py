"""Widget logic, driven from Python: real Structures, the shipped models, the embedded data set."""

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

import crystaldos
from crystaldos import Sampler
from crystaldos.widgets import GuidanceDashboard, StructureView, TrajectoryPlayer, overlay_dos, show, show_trajectory
from crystaldos.widgets.dos_view import TOTAL
from crystaldos.widgets.structure_view import StructureTrajectory, structure_to_cif


@pytest.fixture(scope="module")
def dataset():
    return crystaldos.load_dataset()


@pytest.fixture(scope="module")
def sampler():
    return Sampler.from_pretrained(device="cpu")


@pytest.fixture
def nacl():
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_show_puts_the_crystal_with_its_cell_into_one_nglview_component(nacl):
    view = show(nacl)
    assert len(view._ngl_component_ids) == 1
    cif = structure_to_cif(nacl)
    assert "_cell_length_a   5.64" in cif and cif.count(" Na") >= 4 and cif.count(" Cl") >= 4


def test_structure_view_swaps_the_crystal_in_place(nacl):
    view = StructureView(nacl)
    widget = view.widget
    view.set_structure(Structure(Lattice.cubic(2.87), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]]))
    assert view.widget is widget and len(widget._ngl_component_ids) == 1
    assert view.structure.composition.reduced_formula == "Fe"


def test_show_rejects_what_it_cannot_draw(nacl):
    with pytest.raises(TypeError, match="pymatgen Structure"):
        show(nacl.as_dict())
    disordered = nacl.copy()
    disordered.replace_species({"Na": {"Na": 0.5, "K": 0.5}})
    with pytest.raises(ValueError, match="ordered"):
        show(disordered)


def test_trajectory_player_frames_follow_the_slider(nacl):
    frames = [nacl.copy() for _ in range(5)]
    for k, frame in enumerate(frames):
        frame.translate_sites([0], [0.02 * k, 0, 0])
    player = TrajectoryPlayer(frames)
    assert player.n_frames == 5 and player.slider.max == 4 and player.view.max_frame == 4
    player.slider.value = 3
    assert player.view.frame == 3
    coords = player.trajectory.get_coordinates(3)
    assert coords.shape == (len(nacl), 3) and np.allclose(coords, frames[3].cart_coords, atol=1e-5)
    assert show_trajectory(frames).children[0].max_frame == 4
    with pytest.raises(ValueError, match="same number of sites"):
        StructureTrajectory([nacl, Structure(Lattice.cubic(3), ["Fe"], [[0, 0, 0]])])


def test_overlay_dos_draws_total_or_one_site_and_names_bad_input(dataset):
    dos = dataset.split("test")[0].dos
    ax = overlay_dos({"target": dos, "CFG": dos * 0.5, "CFG (xTB)": dos}, site=None)
    assert [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")] == ["CFG", "CFG (xTB)"]
    total_per_atom = dos.sum("site").values / dos.sizes["site"]
    assert np.allclose(ax.get_lines()[0].get_ydata(), 0.5 * total_per_atom)
    ax = overlay_dos({"CBG": dos}, site=1)
    assert np.allclose(ax.get_lines()[0].get_ydata(), dos.isel(site=1).values)
    with pytest.raises(IndexError, match="site 99"):
        overlay_dos({"CBG": dos}, site=99)
    with pytest.raises(ValueError, match="dims"):
        overlay_dos({"CBG": dos.T})
    plt.close("all")


def test_dashboard_run_fills_views_dos_metrics_and_trajectory(sampler, dataset):
    board = GuidanceDashboard(sampler, dataset, steps=10)
    target = board.item
    assert board.views["target"].structure == target.structure
    dos_before = board.dos_plot.value
    assert dos_before[:4] == b"\x89PNG"

    board.presets.value = 500
    assert board.t_start.value == 500
    board.t_start.value = 100
    board.omega.value, board.cbg_scale.value, board.n_samples.value, board.seed.value = 2.0, 0.5, 2, 3
    board.run_button.click()

    assert board.error is None, board.error
    assert board.progress.value == board.progress.max == 20 and board.progress.bar_style == "success"
    assert "done" in board.status.value and "ω = 2" in board.status.value
    for name, strength in (("cbg", 0.5), ("cfg", 2.0)):
        results = board.results[name]
        assert len(results) == 2 and all(len(r.structure) == len(target.structure) for r in results)
        assert results[0].settings["strength"] == strength and results[0].settings["t_start"] == 100
        assert board.views[name].structure == results[0].structure
    assert board.dos_plot.value != dos_before
    assert board.metrics.value.count("<tr>") == 1 + 4  # header + 2 guidances x 2 samples

    board.sample.value = 1
    assert board.views["cfg"].structure == board.results["cfg"][1].structure
    image = board.dos_plot.value
    board.site.value = 0
    assert board.dos_plot.value != image
    board.site.value = TOTAL

    assert board.trajectory is not None and board.trajectory.n_frames == 11  # start + 10 steps
    board.trajectory_guidance.value = "cbg"
    assert board.trajectory.trajectory.structures[-1] == board.results["cbg"][1].structure
    board.trajectory.slider.value = 4
    assert board.trajectory.view.frame == 4


def test_dashboard_guides_only_the_chosen_variables(sampler, dataset):
    board = GuidanceDashboard(sampler, dataset, steps=10)
    board.t_start.value, board.cbg_scale.value, board.omega.value = 50, 0.5, 1.0
    board.guided["coords"].value = board.guided["lattice"].value = False
    board.run()
    assert board.error is None, board.error
    assert board.results["cbg"][0].settings["strength"] == {"types": 0.5}
    assert board.results["cfg"][0].settings["strength"] == {"types": 1.0}
    assert "on types" in board.status.value
    # The dashboard's run is the sampler's run with the same per-variable strength and seed.
    direct = sampler.reconstruct(board.item.structure, board.item.dos, guidance="cbg", strength={"types": 0.5}, t_start=50,
                                 steps=10, seed=board.seed.value, progress=False)[0]
    assert direct.structure == board.results["cbg"][0].structure
    # The controls are one SamplingOptions, stored with every result.
    options = board.options("cbg")
    assert (options.guidance, options.strength, options.t_start, options.steps) == ("cbg", {"types": 0.5}, 50, 10)
    assert board.results["cbg"][0].settings == options.to_dict() | {"sample": 0, "lattice_step": "ddim"}
    board.guided["types"].value = False
    board.run()
    assert board.results["cbg"][0].settings["strength"] == {} and "on no variable" in board.status.value


def test_dashboard_recomputes_the_dos_with_xtb_on_request(sampler, dataset):
    board = GuidanceDashboard(sampler, dataset, steps=10)
    board.select(min(range(len(board.items)), key=lambda i: len(board.items[i].structure)))  # smallest crystal: fast xTB
    board.t_start.value = 20
    board.run()
    image = board.dos_plot.value
    board.xtb.value = True
    assert set(board.xtb_dos) == {("cbg", 0), ("cfg", 0)}
    assert board.dos_plot.value != image
    labelled = [v for v in board.xtb_dos.values() if not isinstance(v, str)]
    assert labelled and labelled[0].dims == ("site", "energy")
    assert "DOS MAE (xTB)" in board.metrics.value and "ΔV/atom %" in board.metrics.value


def test_dashboard_selection_by_id_and_random(sampler, dataset):
    board = GuidanceDashboard(sampler, dataset, steps=10)
    other = board.items[5]
    board.select(other.id)
    assert board.item.id == other.id and board.views["target"].structure == other.structure
    assert board.structure.value.endswith(other.id)
    board.seed.value = 7
    board.structure.value = "random"
    expected = board.items[int(np.random.default_rng(7).integers(len(board.items)))]
    assert board.item.id == expected.id
    with pytest.raises(KeyError, match="no crystal"):
        board.select("not-an-id")


def test_dashboard_takes_a_users_crystal_as_atoms_or_a_typed_file_path(sampler, dataset, tmp_path, nacl):
    from pymatgen.io.ase import AseAtomsAdaptor

    board = GuidanceDashboard(sampler, dataset, steps=10)
    mine = dataset.split("val")[0]
    record = board.add_crystal(AseAtomsAdaptor.get_atoms(mine.structure), mine.dos, name="my crystal")
    assert board.item is record and board.structure.value == f"{mine.formula} · my crystal"
    assert board.views["target"].structure.composition == mine.structure.composition
    board.t_start.value = 20
    board.run()
    assert board.error is None and len(board.results["cfg"][0].structure) == len(mine.structure)
    # A CIF path typed into the crystal box: labelled with the data set's labeller, offered and selected.
    path = tmp_path / "NaCl.cif"
    nacl.get_primitive_structure().to(filename=str(path))
    board.structure.value = str(path)
    assert board.item.id == "NaCl" and board.item.dos.sizes["site"] == 2, board.status.value
    assert board.structure.value in board.structure.options
    board.structure.value = str(tmp_path / "missing.cif")  # not a file: nothing happens, the selection stays
    assert board.item.id == "NaCl"
    (tmp_path / "bad.cif").write_text("not a crystal")
    board.structure.value = str(tmp_path / "bad.cif")
    assert "could not read a crystal" in board.status.value and board.item.id == "NaCl"


def test_dashboard_shows_errors_instead_of_raising(sampler, dataset):
    board = GuidanceDashboard(sampler, dataset, steps=10)
    item = board.item
    # A DOS with one site fewer than the structure: the sampler refuses it, the dashboard says why.
    board.item = SimpleNamespace(structure=item.structure, dos=item.dos.isel(site=slice(1, None)), formula=item.formula)
    board.run()
    assert board.error is not None and "site" in board.error
    assert "error" in board.status.value and board.progress.bar_style == "danger"
    assert not board.run_button.disabled and board.results == {}


def test_dashboard_refuses_a_data_set_on_another_dos_grid(sampler, dataset):
    from crystaldos.data.dataset import CrystalDOSDataset
    from crystaldos.dos import DosGrid

    other = CrystalDOSDataset(dataset.split("test")[:2].records, DosGrid(n_points=128), dataset.attrs)
    with pytest.raises(ValueError, match="not the models' grid"):
        GuidanceDashboard(sampler, other)


def test_dashboard_export_writes_cif_that_reads_back_and_the_dos_png(sampler, dataset, tmp_path):
    import base64
    import re

    from pymatgen.analysis.structure_matcher import StructureMatcher

    board = GuidanceDashboard(sampler, dataset, steps=5, export_dir=tmp_path)
    board.t_start.value, board.n_samples.value = 50, 2
    board.run_button.click()
    assert board.error is None, board.error

    board.export_button.click()
    folders = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(folders) == 1 and folders[0].name.startswith(board.item.id)
    files = sorted(p.name for p in folders[0].iterdir())
    assert len(files) == 1 + 2 + 2 + 1 and "dos_overlay.png" in files  # target, 2 CBG, 2 CFG, the plot
    assert (folders[0] / "dos_overlay.png").read_bytes() == board.dos_plot.value

    # Every CIF reads back to the same crystal: the same sites (species and fractional coordinates; pymatgen's CIF
    # reader may list them in another order), lattice parameters (a CIF keeps no orientation).
    def sites(structure):
        return sorted((site.species_string, *np.mod(np.round(site.frac_coords, 5), 1.0)) for site in structure)

    expected = {"target": board.item.structure, **{f"{g}_sample{r.settings['sample']}": r.structure
                                                  for g, rs in board.results.items() for r in rs}}
    for stem, structure in expected.items():
        [path] = folders[0].glob(f"{stem}_*.cif")
        back = Structure.from_file(path)
        np.testing.assert_allclose(back.lattice.parameters, structure.lattice.parameters, atol=1e-4)
        assert [site[0] for site in sites(back)] == [site[0] for site in sites(structure)]
        np.testing.assert_allclose([site[1:] for site in sites(back)], [site[1:] for site in sites(structure)], atol=2e-5)
        assert StructureMatcher().fit(back, structure)

    # The download links carry the same bytes, so a served app (voila) can hand the files over.
    links = dict(re.findall(r"download='([^']+)' href='data:[^;]+;base64,([^']+)'", board.downloads.value))
    assert set(links) == set(files)
    assert base64.b64decode(links["dos_overlay.png"]) == board.dos_plot.value


def test_dashboard_exports_the_target_before_any_run(sampler, dataset, tmp_path):
    board = GuidanceDashboard(sampler, dataset, steps=5)
    paths = board.export(tmp_path / "out")
    assert [p.suffix for p in paths] == [".cif", ".png"]
    assert Structure.from_file(paths[0]).composition == board.item.structure.composition


def test_dashboard_default_steps_and_the_note_that_says_why(sampler, dataset):
    from crystaldos.widgets.dashboard import DEFAULT_STEPS

    board = GuidanceDashboard(sampler, dataset)
    assert board.steps.value == DEFAULT_STEPS == 100
    # The note speaks to users: no research references in the interface.
    assert "100 (the default)" in board.steps_note.value and "benchmarks/" not in board.steps_note.value
    assert "%" not in board.steps_note.value
    assert GuidanceDashboard(sampler, dataset, steps=None).steps.value == sampler.diffusion.timesteps


def test_design_tab_edits_the_target_designs_ranked_relaxed_candidates_and_exports_them(sampler, dataset, tmp_path):
    """The Design tab: an edited target DOS, candidates relaxed and relabelled (in the kernel, jobs=1), ranked by their
    distance to the edited target, shown with their recomputed DOS, exported as CIF; a new crystal clears them."""
    import base64
    import re

    board = GuidanceDashboard(sampler, dataset, steps=20, export_dir=tmp_path, design_jobs=1)
    panel = board.design
    assert board.tabs.titles == ("Reconstruct", "Design")
    # CsCl, 2 atoms, ionic: its samples relax and label in seconds (a metal's SCF takes 10 s); with 20 steps from noise
    # one of its 2 samples survives (seed 0), where none of CsF's does.
    board.select("aflow-240")
    untouched = panel.dos_plot.value
    panel.shift.value = 0.2
    assert panel.dos_plot.value != untouched  # the edited target is drawn over the crystal's own
    edited = panel.edited_target()
    np.testing.assert_allclose(edited.values, panel.edit().apply(board.item.dos).values)
    assert not np.allclose(edited.values, board.item.dos.values)

    panel.n_candidates.value = 2
    panel.design_button.click()
    assert panel.error is None, panel.error
    result = panel.result
    assert len(result) + len(result.dropped) == 2 and len(result) >= 1
    assert "done:" in panel.status.value and panel.progress.bar_style == "success"
    distances = [c.distance for c in result]
    assert distances == sorted(distances)
    from crystaldos.design import dos_distance

    for candidate in result:  # ranked against the edited target, with the DOS recomputed at the relaxed geometry
        assert candidate.distance == pytest.approx(dos_distance(candidate.dos, edited))
        assert candidate.relaxation.converged and candidate.structure == candidate.relaxation.structure
    assert re.search(r"<td>0</td><td>[A-Za-z0-9]+</td><td>\d\.\d{3}</td>", panel.table.value)
    assert panel.candidate.value == 0 and panel.view.widget.get_state()  # the best candidate is shown

    panel.export_button.click()
    [folder] = [p for p in tmp_path.iterdir() if p.is_dir() and p.name.startswith("design-")]
    cifs = sorted(folder.glob("candidate*.cif"))
    assert len(cifs) == len(result)
    back = Structure.from_file(cifs[0])
    assert back.composition.reduced_formula == result[0].structure.composition.reduced_formula
    links = dict(re.findall(r"download='([^']+)' href='data:[^;]+;base64,([^']+)'", panel.downloads.value))
    assert base64.b64decode(links["dos.png"]) == panel.dos_plot.value and "candidates.csv" in links

    panel.shift.value = 0.0  # after a design, a changed edit is said, not silently applied
    assert "press Design" in panel.status.value
    board.select(0)
    assert panel.result is None and panel.candidate.options == () and panel.table.value == ""


def test_design_tab_says_why_when_no_sample_survives(sampler, dataset, monkeypatch, nacl):
    """When every sample is dropped, the status says so and the table lists each sample's stage and reason."""
    from crystaldos.design import DesignError, Dropped

    board = GuidanceDashboard(sampler, dataset, steps=20, design_jobs=1)
    dropped = [Dropped(0, nacl, "screen", "sites 0 and 1 are 0.30 Å apart"),
               Dropped(1, nacl, "relax", "NotConvergedError: NaCl: largest force 0.400 eV/Å after 300 steps")]

    def nothing_survives(*args, **kwargs):
        raise DesignError("none of the 2 samples survived", dropped)

    monkeypatch.setattr(board.sampler, "design", nothing_survives)
    board.design.design_button.click()
    assert board.design.result is None and board.design.progress.bar_style == "danger"
    assert "no candidate" in board.design.status.value
    assert "sample 0 (screen): sites 0 and 1 are 0.30 Å apart" in board.design.table.value
    assert "sample 1 (relax): NotConvergedError" in board.design.table.value
