"""Sampler.design: samples screened, relaxed, relabelled and ranked by their recomputed DOS; drops said with reasons."""

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

import crystaldos
from crystaldos import Sampler
from crystaldos.design import DESIGN_FMAX, DESIGN_MAX_STEPS, DesignError, Dropped, design_relaxer, dos_distance, rank, screen
from crystaldos.dos import DosGrid, DOSValidationError
from crystaldos.labellers import XTBLabeller
from crystaldos.relax import Relaxer

#: Bounded relaxations keep the tests short (samples of few reverse steps relax slowly or not at all). The labeller
#: is the data set's own: without its SCF retry, none of the fixture's samples is labelled.
LABELLER = XTBLabeller.for_dataset(crystaldos.load_dataset().attrs)
QUICK = dict(relaxer=design_relaxer(max_steps=100), jobs=1, progress=False,
             labeller=LABELLER)


@pytest.fixture(scope="module")
def sampler():
    return Sampler.from_pretrained(device="cpu")


@pytest.fixture(scope="module")
def target():
    """CsCl, two atoms, ionic: 4 samples relax and label in about 20 s (beta-Sn's, a metal's, in 90 s)."""
    return next(i for i in crystaldos.load_dataset().split("test") if i.id == "aflow-240")


@pytest.fixture(scope="module")
def designed(sampler, target):
    """From a data set item (a reconstruction target): its DOS is the target."""
    return sampler.design(target, n_samples=4, seed=0, steps=50, **QUICK)


def test_design_returns_relaxed_relabelled_candidates_ranked_best_first(designed, target):
    assert len(designed) + len(designed.dropped) == 4 and len(designed) >= 1
    distances = [c.distance for c in designed]
    assert distances == sorted(distances) and [c.rank for c in designed] == list(range(len(designed)))
    labeller = QUICK["labeller"]
    for candidate in designed:
        # (re-ranking in another test may reorder a list, never these objects' structures or DOS)
        assert len(candidate.structure) == 2 and candidate.dos.dims == ("site", "energy")
        relaxation = candidate.relaxation
        assert relaxation.converged and relaxation.max_force <= DESIGN_FMAX + 1e-9  # relaxed, not the raw sample
        assert candidate.structure is relaxation.structure and candidate.sample.structure is relaxation.initial
        assert np.isfinite(candidate.energy_per_atom) and candidate.energy_per_atom < 0
        # The distance is to the target.
        assert candidate.distance == pytest.approx(dos_distance(candidate.dos, designed.target, "site"))
    # The DOS is the labeller's at the relaxed geometry (checked on the best candidate: a label takes seconds).
    # (to the SCF's tolerance: one crystal labelled twice differed by up to 4e-5 states/eV; the label noise is 0.03)
    np.testing.assert_allclose(designed[0].dos.values, labeller.label(designed[0].structure).values, atol=1e-3)
    table = designed.table()
    assert list(table.index) == list(range(len(designed))) and "energy_per_atom_eV" in table
    assert set(designed.timings) == {"sample", "relax and label", "total"}


def test_the_ranking_distance_is_chosen_by_name(sampler, designed, target):
    assert designed.target.equals(target.dos.assign_attrs(designed.target.attrs))
    by_total = rank(list(designed), designed.target, "total")
    assert [c.distance for c in by_total] == sorted(c.distance for c in by_total)
    for c in by_total:
        assert c.distance == pytest.approx(dos_distance(c.dos, designed.target, "total"))
    with pytest.raises(ValueError, match="distance must be one of"):
        sampler.design(target.dos, n_samples=1, steps=5, distance="cosine", **QUICK)


def test_dropped_samples_say_where_and_why(sampler, target):
    # Raw samples of 2 reverse steps are mostly noise: atoms on top of each other, cells that run away.
    try:
        result = sampler.design(target.dos, n_samples=2, seed=3, steps=2, **QUICK)
        dropped = result.dropped
    except DesignError as error:  # none survived: the error carries the reasons
        dropped = error.dropped
    assert dropped and all(isinstance(d, Dropped) and d.stage in ("screen", "relax", "label") and d.reason for d in dropped)
    assert sorted(d.sample_index for d in dropped) == [d.sample_index for d in dropped]
    # The screen names atoms on top of each other; compositions are left to the relaxation and the DOS (AlB2 passes).
    stacked = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.01, 0, 0]])
    assert "0.040 Å apart" in screen(stacked)
    alb2 = Structure(Lattice.hexagonal(3.0, 3.25), ["Al", "B", "B"], [[0, 0, 0], [1 / 3, 2 / 3, 0.5], [2 / 3, 1 / 3, 0.5]])
    assert screen(alb2) is None


def test_a_bad_target_dos_is_refused_before_anything_is_sampled(sampler, target):
    with pytest.raises(DOSValidationError, match="negative"):
        sampler.design(-target.dos, n_samples=1, progress=False)
    with pytest.raises(DOSValidationError, match="must be on the model's grid"):
        sampler.design(np.ones((2, 100)), n_samples=1, progress=False)
    with pytest.raises(ValueError, match="lie outside the 1 ... 20 atoms"):
        sampler.design(np.ones((30, DosGrid().n_points)), n_samples=1, progress=False)


def test_expanded_cells_keep_atoms_apart_and_leave_sound_cells_alone():
    from pymatgen.core.periodic_table import Element

    from crystaldos.design import EXPAND_TO, expanded

    silicon = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]]).get_primitive_structure()
    squeezed = silicon.copy()
    squeezed.scale_lattice(silicon.volume * 0.3)  # bonds at 0.67 x their length
    radius = Element("Si").atomic_radius_calculated
    opened = expanded(squeezed)
    shortest = np.min(opened.distance_matrix + np.eye(len(opened)) * 99)
    assert shortest == pytest.approx(EXPAND_TO * 2 * radius, rel=1e-6)
    np.testing.assert_allclose(opened.frac_coords, squeezed.frac_coords)  # isotropic: the same fractional positions
    assert expanded(silicon).volume == pytest.approx(silicon.volume)  # bonds already long enough: unchanged


def test_a_sample_whose_relaxation_fails_is_relaxed_again_from_its_expanded_cell():
    from crystaldos.design import RETRY_MAX_STEPS, relax_sample
    from crystaldos.relax import NotConvergedError

    silicon = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]]).get_primitive_structure()
    squeezed = silicon.copy()
    squeezed.scale_lattice(silicon.volume * 0.6)
    hasty = Relaxer(match_start=False, max_volume_change=None, max_steps=2)  # cannot converge in two steps
    with pytest.raises(NotConvergedError):
        hasty.relax_checked(squeezed)
    with pytest.raises(NotConvergedError):
        relax_sample(hasty, squeezed)  # without the retry (design's default) the failure stands
    result = relax_sample(hasty, squeezed, retry=True)  # the retry: expanded cell, RETRY_MAX_STEPS
    assert result.converged and 2 < result.steps <= RETRY_MAX_STEPS
    assert result.structure.volume / len(result.structure) == pytest.approx(silicon.volume / len(silicon), rel=0.05)


def test_design_relaxes_to_its_own_tolerance_whatever_the_volume_change():
    relaxer = design_relaxer()
    assert relaxer.fmax == DESIGN_FMAX > Relaxer().fmax  # looser than the data build's
    assert not relaxer.match_start and relaxer.max_volume_change is None
    assert relaxer.max_steps == DESIGN_MAX_STEPS < Relaxer().max_steps  # capped: slow relaxations are rarely right
    assert design_relaxer(max_steps=7).max_steps == 7 and design_relaxer(max_steps=7).fmax == DESIGN_FMAX
    # A cell at twice its volume relaxes back: a change the data build (at most 50 %) would refuse.
    silicon = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]]).get_primitive_structure()
    swollen = silicon.copy()
    swollen.scale_lattice(silicon.volume * 2.0)
    result = relaxer.relax_checked(swollen)
    assert result.converged and result.max_force <= DESIGN_FMAX + 1e-9 and result.volume_change < -0.4


def test_a_converged_sample_is_refined_to_the_tighter_tolerance_before_labelling():
    from crystaldos.design import DESIGN_REFINE_FMAX, relax_sample

    silicon = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]]).get_primitive_structure()
    swollen = silicon.copy()
    swollen.scale_lattice(silicon.volume * 1.5)
    swollen.perturb(0.1, min_distance=0.05)
    loose = design_relaxer().relax_checked(swollen)
    refined = relax_sample(design_relaxer(), swollen, refine_fmax=DESIGN_REFINE_FMAX)
    assert DESIGN_REFINE_FMAX < DESIGN_FMAX
    assert refined.converged and refined.max_force <= DESIGN_REFINE_FMAX + 1e-9
    assert refined.steps >= loose.steps and refined.initial is not None
    assert refined.initial.volume == pytest.approx(swollen.volume)  # the change is counted from the raw sample
    assert refined.volume_change == pytest.approx(refined.structure.volume / swollen.volume - 1)
    assert refined.energy_per_atom <= loose.energy_per_atom + 1e-4


def test_with_a_pool_the_workers_load_the_potential_before_the_sampling_starts(sampler, target, monkeypatch):
    """So that relaxing starts as soon as the samples are drawn: each worker's first task loads CHGNet."""
    import crystaldos.design as design_module

    events = []
    real_warm_pool = design_module.warm_pool

    def recording_warm_pool(jobs):
        futures = real_warm_pool(jobs)
        events.append(("warm", jobs, [future.result(timeout=300) for future in futures]))
        return futures

    monkeypatch.setattr(design_module, "warm_pool", recording_warm_pool)
    settings = {**QUICK, "jobs": 2}
    try:
        sampler.design(target, n_samples=2, seed=0, steps=20, callback=lambda stage, done, total: events.append(stage),
                       **settings)
    except DesignError:  # whether 20-step samples survive does not matter here
        pass
    warm, *stages = events
    assert warm[:2] == ("warm", 2) and all(name.startswith("CHGNet") for name in warm[2])
    assert stages[0] == "sample" and "relax and label" in stages
