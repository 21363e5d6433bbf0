"""Symmetry-equivalent sites share one DOS: the spread is measured on real structures, labels are averaged over
each orbit, and the data build drops labels whose equivalent sites disagree beyond the label noise."""

import gzip
import json

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from crystaldos.data.build import _write_chunk, assemble
from crystaldos.data.candidates import Candidate
from crystaldos.data.dataset import load_dataset
from crystaldos.dos import DosGrid, site_dos
from crystaldos.labellers import SymmetryBrokenError, XTBLabeller
from crystaldos.labellers.symmetry import MAX_EQUIVALENT_SPREAD, equivalent_site_spread, equivalent_sites, symmetrise_site_dos

GRID = DosGrid(n_points=128)


def cu3au() -> Structure:
    """L1_2 Cu3Au: the three Cu (face centres) are equivalent, Au (corner) is alone."""
    return Structure(Lattice.cubic(3.75), ["Au", "Cu", "Cu", "Cu"], [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def dos_with_spread(structure: Structure, spread: float, **attrs):
    """A smooth site DOS on GRID, identical on equivalent sites except that site 1 is shifted by ``spread``
    states/eV/atom at every energy (so its MAE to its orbit's mean is 2/3 of that for a 3-site orbit)."""
    e = GRID.energies
    values = np.stack([np.exp(-((e + 1.0 + 0.5 * site.specie.Z / 79) ** 2)) + 0.2 for site in structure])
    values[1] += spread
    return site_dos(values, [site.specie.symbol for site in structure], GRID, **attrs)


def test_orbits_of_real_structures():
    assert equivalent_sites(cu3au()).tolist() == [0, 1, 1, 1]
    silicon = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.431), ["Si"], [[0, 0, 0]]).get_primitive_structure()
    assert equivalent_sites(silicon).tolist() == [0, 0]
    # Displacing one Cu breaks the cubic symmetry: it leaves its orbit.
    distorted = cu3au()
    distorted.translate_sites([1], [0.02, 0, 0])
    assert len(set(equivalent_sites(distorted).tolist())) > 2


def test_symmetrising_averages_each_orbit_and_reports_the_spread():
    structure = cu3au()
    dos = dos_with_spread(structure, 0.06, band_gap_eV=0.0)
    orbits = equivalent_sites(structure)
    assert equivalent_site_spread(dos.values, orbits) == pytest.approx(0.06 * 2 / 3, rel=1e-4)
    symmetric, spread = symmetrise_site_dos(dos, structure)
    assert spread == pytest.approx(0.04, rel=1e-4) and symmetric.attrs["equivalent_site_spread"] == spread
    np.testing.assert_array_equal(symmetric.values[1], symmetric.values[2])
    np.testing.assert_array_equal(symmetric.values[2], symmetric.values[3])
    np.testing.assert_allclose(symmetric.values[0], dos.values[0])  # Au's orbit has one site
    # Electrons are neither made nor lost, and the labels stay labelled.
    np.testing.assert_allclose(symmetric.values.sum(), dos.values.sum(), rtol=1e-5)
    assert list(symmetric["element"].values) == ["Au", "Cu", "Cu", "Cu"] and symmetric.attrs["band_gap_eV"] == 0.0
    # Idempotent.
    again, zero = symmetrise_site_dos(symmetric, structure)
    assert zero == 0.0 and np.array_equal(again.values, symmetric.values)
    with pytest.raises(ValueError, match="4 sites but the structure has 2"):
        symmetrise_site_dos(dos.isel(site=slice(0, 4)), Structure(Lattice.cubic(3), ["Cu", "Cu"], [[0, 0, 0], [0.5, 0.5, 0.5]]))


def test_the_labeller_refuses_a_broken_symmetry_beyond_the_label_noise():
    structure = cu3au()
    labeller = XTBLabeller(grid=GRID)
    kept = labeller.symmetrise(structure, dos_with_spread(structure, 0.03))  # spread 0.02 < 0.03
    assert kept.attrs["equivalent_site_spread"] < MAX_EQUIVALENT_SPREAD
    with pytest.raises(SymmetryBrokenError, match=r"Cu3Au: .* up to 0\.067 states/eV/atom \(> 0\.03"):
        labeller.symmetrise(structure, dos_with_spread(structure, 0.1))
    lenient = XTBLabeller(grid=GRID, max_equivalent_spread=None)
    assert lenient.symmetrise(structure, dos_with_spread(structure, 0.1)).attrs["equivalent_site_spread"] > 0.06
    assert "labeller_max_equivalent_spread" not in lenient.describe()  # netCDF attrs cannot hold None


def test_assembly_averages_equivalent_sites_and_drops_broken_labels(tmp_path):
    """Chunks labelled before the labeller symmetrised: assembly averages their labels and names the broken one."""
    work = tmp_path / "work"
    structure = cu3au()
    candidates = [Candidate("slight", structure, "prototype", "slight", "test"),
                  Candidate("broken", structure.copy(), "prototype", "broken", "test"),
                  Candidate("averaged", structure.copy(), "prototype", "averaged", "test")]
    (work / "labels").mkdir(parents=True)
    with gzip.open(work / "candidates.json.gz", "wt") as handle:
        json.dump([c.to_dict() for c in candidates], handle)
    labels = [dos_with_spread(structure, spread, band_gap_eV=0.0, efermi_eV=-5.0, scf_temperature_K=3000.0)
              for spread in (0.01, 0.2, 0.02)]
    labels[2] = XTBLabeller(grid=GRID).symmetrise(structure, labels[2])  # as the labeller now stores it
    old_labeller = XTBLabeller(grid=GRID, max_equivalent_spread=None)  # the labeller's settings as chunks record them
    _write_chunk(work / "labels" / "chunk_0000.nc", candidates, labels, old_labeller, GRID)
    ds = load_dataset(assemble(work, tmp_path / "out" / "data.nc", seed=0, command="test"))
    assert [r.id for r in ds] == ["slight", "averaged"]
    # A label averaged when it was made keeps the spread it had then (not the 0 of averaging it again).
    assert ds.by_id("averaged").properties["equivalent_site_spread"] == pytest.approx(0.02 * 2 / 3, rel=0.05)
    kept = ds.by_id("slight")
    np.testing.assert_allclose(kept.dos.values[1], kept.dos.values[3], atol=1e-3)  # float16 storage
    assert kept.properties["equivalent_site_spread"] == pytest.approx(0.01 * 2 / 3, rel=0.05)
    assert json.loads(ds.attrs["failures_by_reason"]) == {"SymmetryBrokenError": 1}
    assert float(ds.attrs["labeller_max_equivalent_spread"]) == MAX_EQUIVALENT_SPREAD
    assert "averaged over symmetry-equivalent sites" in ds.attrs["provenance"]
