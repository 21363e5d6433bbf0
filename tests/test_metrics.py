"""Reconstruction metrics on real pymatgen structures and DOS agreement on real data."""

import math

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

import crystaldos
from crystaldos.metrics import dos_agreement, is_plausible_cell, is_valid, match, min_distance, score, summarise


@pytest.fixture(scope="module")
def item():
    return next(i for i in crystaldos.load_dataset().split("test") if len(i.structure) >= 3)


def test_match_is_invariant_to_rotation_translation_and_permutation(item):
    s = item.structure
    assert match(s, s) == (True, pytest.approx(0.0, abs=1e-8))
    moved = s.copy()
    moved.apply_operation(__import__("pymatgen.core.operations", fromlist=["SymmOp"]).SymmOp.from_axis_angle_and_translation([1, 2, 3], 37.0))
    moved.translate_sites(list(range(len(moved))), [0.31, 0.12, 0.77])
    shuffled = Structure.from_sites([moved[i] for i in np.random.default_rng(0).permutation(len(moved))])
    matched, rmse = match(shuffled, s)
    assert matched and rmse < 1e-6


def test_rmse_grows_with_displacement_and_far_structures_do_not_match(item):
    s = item.structure
    small = s.copy()
    small.perturb(0.05, min_distance=0.05)
    matched, rmse = match(small, s)
    assert matched and 0 < rmse < 0.1
    large = s.copy()
    large.perturb(0.3, min_distance=0.3)
    matched_large, rmse_large = match(large, s)
    assert not matched_large or rmse_large > rmse
    other = Structure(Lattice.cubic(5.64), ["Na"] * 4 + ["Cl"] * 4,
                      [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5], [0.5, 0.5, 0.5]])
    assert match(other, s)[0] is False and math.isnan(match(other, s)[1])


def test_validity_rejects_overlapping_atoms_and_flat_cells():
    good = Structure(Lattice.cubic(4.0), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    assert is_valid(good) and min_distance(good) == pytest.approx(np.sqrt(3) * 1.0)
    assert not is_valid(Structure(Lattice.cubic(4.0), ["Si", "Si"], [[0, 0, 0], [0.05, 0, 0]]))
    assert not is_valid(Structure(Lattice([[4, 0, 0], [0, 4, 0], [0, 0, 1e-4]]), ["Si"], [[0, 0, 0]]))
    assert match(Structure(Lattice.cubic(4.0), ["Si", "Si"], [[0, 0, 0], [0.05, 0, 0]]), good) == (False, pytest.approx(math.nan, nan_ok=True))
    # Valid by CDVAE's test but needle-thin: not plausible, never sent to the (slow) matcher.
    needle = Structure(Lattice([[30, 0, 0], [0, 30, 0], [29.9, 0, 0.02]]), ["Si"], [[0, 0, 0]])
    assert is_valid(needle) and not is_plausible_cell(needle)
    assert match(needle, good)[0] is False


def test_dos_agreement_zero_for_identical_and_shift_for_shifted(item):
    same = dos_agreement(item.dos, item.dos)
    assert same == {"site_mae": 0.0, "total_mae": 0.0, "total_wasserstein": 0.0}
    step = float(item.dos.energy[1] - item.dos.energy[0])
    # The top 4 points are emptied first so that the shift loses no mass at the window's edge (a wide window
    # can end inside a band): then the earth mover's distance is exactly the shift.
    base = item.dos.copy()
    base[:, -4:] = 0.0
    shifted = base.roll(energy=4, roll_coords=False)
    agreement = dos_agreement(shifted, base)
    assert agreement["total_wasserstein"] == pytest.approx(4 * step, rel=1e-6)
    assert agreement["site_mae"] > 0
    with pytest.raises(ValueError, match="shapes differ"):
        dos_agreement(item.dos[:1], item.dos)


def test_score_and_summary(item):
    good = score(item.structure, item.structure, item.dos, item.dos)
    assert good.valid and good.matched and good.composition_match and good.site_type_accuracy == 1.0
    swapped = item.structure.copy()
    swapped.replace_species({swapped[0].specie: "Rn"})
    bad = score(swapped, item.structure, item.dos, item.dos)
    assert not bad.matched and not bad.composition_match and bad.site_type_accuracy < 1
    summary = summarise([good, bad])
    assert summary["n"] == 2 and summary["match_rate"] == 50.0 and summary["rmse"] == pytest.approx(0.0, abs=1e-8)
    with pytest.raises(ValueError):
        summarise([])


def test_cdvae_protocol_needs_both_crystals_valid_with_smact():
    from crystaldos.metrics import cdvae_valid

    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    be2se = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.14), ["Se", "Be"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    assert cdvae_valid(nacl) and not cdvae_valid(be2se) and is_valid(be2se)
    s = score(be2se, be2se, _flat_dos(be2se), _flat_dos(be2se))
    assert s.matched and not s.matched_cdvae and not s.reference_valid_cdvae
    s = score(nacl, nacl, _flat_dos(nacl), _flat_dos(nacl))
    assert s.matched and s.matched_cdvae


def test_lattice_errors_on_known_strains():
    from crystaldos.metrics import lattice_errors

    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    bigger = nacl.copy()
    bigger.scale_lattice(nacl.volume * 1.10)  # +10 % volume: lengths +3.2 %, angles unchanged
    errors = lattice_errors(bigger, nacl)
    assert errors["volume_error_pct"] == pytest.approx(10.0, abs=1e-6)
    assert errors["length_error_pct"] == pytest.approx(100 * (1.1 ** (1 / 3) - 1), abs=1e-3)
    assert errors["angle_error_deg"] == pytest.approx(0.0, abs=1e-6)
    # A sheared cell that cannot match: compared after Niggli reduction, angle error is the shear.
    sheared = Structure(Lattice.from_parameters(5.64, 5.64, 5.64, 90, 90, 110), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    cubic = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    errors = lattice_errors(sheared, cubic, matched=False)
    assert errors["angle_error_deg"] == pytest.approx(20.0 / 3, abs=0.01)
    assert errors["volume_error_pct"] == pytest.approx(100 * (np.sin(np.radians(110)) - 1), abs=1e-6)


def _flat_dos(structure):
    from crystaldos.dos import DosGrid, site_dos

    grid = DosGrid(n_points=32)
    return site_dos(np.ones((len(structure), 32)), [s.specie.symbol for s in structure], grid)
