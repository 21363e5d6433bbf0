"""The embedded default data set, the file formats and their failure modes."""

import gzip
import json
import shutil

import numpy as np
import pytest
import xarray as xr
from pymatgen.core import Structure

import crystaldos
from crystaldos.data import DataFileError, default_path, load_dataset, read_json_records, write_json_records, write_netcdf
from crystaldos.data.records import CrystalDOS
from crystaldos.dos import DOSValidationError, DosGrid, from_complete_dos, site_dos, to_complete_dos


@pytest.fixture(scope="module")
def dataset():
    return crystaldos.load_dataset()


def test_default_is_shipped_inside_the_package():
    path = default_path()
    assert path.is_file() and path.parent.parent.name == "data"
    assert path.stat().st_size < 30e6
    assert (path.parent / "CARD.md").is_file() and (path.parent / "card.png").is_file()


def test_default_has_at_least_2000_crystals_split_60_20_20(dataset):
    n = len(dataset)
    assert n >= 1900
    sizes = {name: len(dataset.split(name)) for name in ("train", "test", "val")}
    assert sum(sizes.values()) == n
    # Whole prototype families go to one split, so the fractions hold to a family's size, not to one crystal.
    slack = 0.03 * n if dataset.attrs.get("split_kind") == "family" else 1
    assert abs(sizes["train"] - 0.6 * n) <= slack and abs(sizes["test"] - 0.2 * n) <= slack
    assert abs(sizes["val"] - 0.2 * n) <= slack
    ids = [r.id for r in dataset]
    assert len(set(ids)) == n
    # Splits are disjoint and deterministic (stored with the data).
    assert not {r.id for r in dataset.split("train")} & {r.id for r in dataset.split("test")}
    with pytest.raises(ValueError, match="unknown split"):
        dataset.split("training")


def test_items_are_structures_with_finite_atom_level_dos(dataset):
    grid = dataset.grid
    assert grid == DosGrid()
    for item in dataset.split("test")[:50]:
        assert isinstance(item.structure, Structure) and item.structure.is_ordered
        assert item.dos.dims == ("site", "energy")
        assert item.dos.sizes["site"] == len(item.structure)
        assert list(item.dos["element"].values) == [s.specie.symbol for s in item.structure]
        assert np.all(np.isfinite(item.dos.values)) and item.dos.values.min() >= 0.0
        assert item.source in ("prototype", "substituted") and item.id
    all_dos = np.concatenate([r.dos.values for r in dataset])
    assert np.isfinite(all_dos).all() and all_dos.max() > 1.0  # real peaks, not empty curves


def test_provenance_and_build_command_are_stored(dataset):
    assert dataset.attrs["build_command"].startswith("python -m crystaldos.data.build")
    assert int(dataset.attrs["seed"]) == 0
    assert dataset.attrs["labeller_method"] == "GFN2-xTB" and dataset.attrs["labeller_sampling"] == "kmesh"
    sources = {r.source for r in dataset}
    assert sources == {"prototype", "substituted"}
    substituted = next(r for r in dataset if r.source == "substituted")
    parent = dataset.by_id(substituted.properties["parent"])
    assert parent.source == "prototype"


def _records(n=3):
    dataset = crystaldos.load_dataset()
    return dataset.split("val")[:n].records, dataset.grid


def test_netcdf_round_trip(tmp_path):
    records, grid = _records()
    path = write_netcdf(records, tmp_path / "few.nc", grid, {"note": "test"})
    back = load_dataset(path)
    assert len(back) == 3 and back.attrs["note"] == "test"
    for a, b in zip(records, back):
        assert a.id == b.id and a.split == b.split
        assert a.structure == b.structure
        np.testing.assert_allclose(a.dos.values, b.dos.values)


def test_a_whole_file_packs_as_read_and_a_slice_is_repacked(tmp_path):
    from crystaldos.data.dataset import dataset_as_xarray

    records, grid = _records()
    back = load_dataset(write_netcdf(records, tmp_path / "few.nc", grid, {"note": "test"}))
    whole = dataset_as_xarray(back)
    assert whole.sizes["structure"] == 3 and whole.attrs["note"] == "test" and "source_file" not in whole.attrs
    part = dataset_as_xarray(back[1:])
    assert list(part["structure_id"].values) == [r.id for r in records[1:]]
    np.testing.assert_allclose(part["dos"].values, whole["dos"].values[len(records[0].structure):], atol=1e-6)
    # A crystal alone (what the card's statistics read) is the record's crystal.
    assert back.records.structure(2) == back[2].structure and back[1:].records.structure(1) == records[2].structure


def test_json_lines_in_pymatgen_format(tmp_path):
    """Records as pymatgen/Materials Project serialise them: Structure.as_dict + CompleteDos.as_dict."""
    records, grid = _records(2)
    path = tmp_path / "mp_like.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        for r in records:
            cdos = to_complete_dos(r.dos, r.structure, efermi=5.0)
            handle.write(json.dumps({"material_id": f"mp-{r.id}", "structure": r.structure.as_dict(), "dos": cdos.as_dict()}) + "\n")
    back = read_json_records(path, grid)
    assert [b.id for b in back] == [f"mp-{r.id}" for r in records]
    for r, b in zip(records, back):
        assert b.structure == r.structure
        # The loader smears with the grid's sigma (MP DOS are raw): the area is kept.
        np.testing.assert_allclose(b.dos.integrate("energy"), r.dos.integrate("energy"), rtol=0.05, atol=0.05)
    # crystaldos' own JSON lines (DataArray dicts) round-trip exactly.
    own = write_json_records(records, tmp_path / "own.jsonl")
    again = load_dataset(own)
    np.testing.assert_allclose(again[0].dos.values, records[0].dos.values, rtol=1e-6)


def test_bad_materials_project_records_name_file_record_and_site(tmp_path):
    from monty.json import MontyEncoder

    (record,), grid = _records(1)
    complete = json.loads(json.dumps(to_complete_dos(record.dos, record.structure, efermi=2.0).as_dict(), cls=MontyEncoder))

    def write(name, structure, dos):
        path = tmp_path / f"{name}.jsonl"
        path.write_text(json.dumps({"material_id": "mp-1", "structure": structure.as_dict(), "dos": dos}) + "\n")
        return path

    densities = complete["pdos"][0]["s"]["densities"]["1"]
    peak = max(densities)
    small_dip = json.loads(json.dumps(complete))
    small_dip["pdos"][0]["s"]["densities"]["1"][5] = -0.01 * peak  # VASP-like numerical dip: clipped
    assert float(read_json_records(write("dip", record.structure, small_dip), grid)[0].dos.min()) == 0.0
    corrupt = json.loads(json.dumps(complete))
    corrupt["pdos"][0]["s"]["densities"]["1"][5] = -peak
    with pytest.raises(DataFileError, match=r"negative.jsonl record 0 \(mp-1\): site 0 .*strongly negative"):
        load_dataset(write("negative", record.structure, corrupt))
    nan = json.loads(json.dumps(complete))
    nan["pdos"][0]["s"]["densities"]["1"][5] = float("nan")
    with pytest.raises(DataFileError, match=r"nan.jsonl record 0 \(mp-1\): DOS has NaN"):
        load_dataset(write("nan", record.structure, nan))
    other = record.structure.copy()
    other.replace(0, "Og")
    with pytest.raises(DataFileError, match="no projected DOS for site 0 \\(Og"):
        load_dataset(write("other", other, complete))


def test_float16_storage_halves_the_file_and_rounds_far_below_the_label_noise(tmp_path):
    records, grid = _records(40)
    for record in records:  # labels as the labeller makes them: float32, not values a float16 file already rounded
        record.dos = record.dos * np.float32(1 + 1e-4)
    full = write_netcdf(records, tmp_path / "f32.nc", grid)
    half = write_netcdf(records, tmp_path / "f16.nc", grid, dos_storage="float16")
    import h5py

    def stored_dos_bytes(path):  # the DOS variable's compressed size; the file also holds every per-crystal field
        with h5py.File(path) as f:
            return f["dos"].id.get_storage_size()

    # Measured: 0.32 of the float32 bytes on the format-1 labels, 0.50 on the format-2 preview's.
    assert stored_dos_bytes(half) < 0.6 * stored_dos_bytes(full) and half.stat().st_size < full.stat().st_size
    back = load_dataset(half)
    assert back.attrs["dos_storage"] == "float16" and back[0].dos.dtype == np.float32
    for a, b in zip(records, back):
        error = np.abs(a.dos.values - b.dos.values)
        assert error.max() <= 5e-4 * max(1.0, float(np.abs(a.dos.values).max()))  # float16: 11 significant bits
    with pytest.raises(ValueError, match="dos_storage"):
        write_netcdf(records, tmp_path / "x.nc", grid, dos_storage="int8")


def test_format_versions_name_what_is_missing_and_the_rebuild_command(tmp_path):
    from crystaldos.data.store import FORMAT_VERSION, DataFormatError

    records, grid = _records(4)
    assert FORMAT_VERSION == 2 and int(load_dataset(write_netcdf(records, tmp_path / "new.nc", grid)).attrs["format_version"]) == 2
    # A format-1 file (as the format-1 embedded file was written: no AFLOW label): families are the parents' ids.
    old_records = _records(3)[0]
    for r in old_records:
        r.properties.pop("prototype", None)
    old = load_dataset(write_netcdf(old_records, tmp_path / "old.nc", grid, {"format_version": 1}))
    assert int(old.attrs["format_version"]) == 1
    assert list(old.prototype_families()) == [str(r.properties["parent"]) for r in old_records]
    bare = [r for r in _records(2)[0]]
    for r in bare:
        r.properties = {}
    no_family = load_dataset(write_netcdf(bare, tmp_path / "bare.nc", grid, {"format_version": 1}))
    with pytest.raises(DataFormatError, match=r"format version 1 .*prototype family.*python -m crystaldos.data.build"):
        no_family.prototype_families()
    with pytest.raises(DataFormatError, match=r"version 1 .*min_format_version=2.*Rebuild"):
        load_dataset(tmp_path / "old.nc", min_format_version=2)
    assert int(load_dataset(default_path(), min_format_version=2).attrs["format_version"]) == 2  # the embedded file
    future = tmp_path / "future.nc"
    write_netcdf(records, future, grid, {"format_version": 99})
    with pytest.raises(DataFormatError, match="format version 99.*upgrade crystaldos"):
        load_dataset(future)


def test_prototype_families_and_which_were_seen_in_training(tmp_path):
    records, grid = _records(4)
    families = ["AB_cF8_225_a_b", "AB_cF8_225_a_b", "", "A_cF4_225_a"]
    parents = ["p0", "p0", "pmg-SrTiO3", "p3"]
    for record, family, parent in zip(records, families, parents):
        record.properties.update(prototype=family, parent=parent)
    ds = load_dataset(write_netcdf(records, tmp_path / "fam.nc", grid))
    assert list(ds.prototype_families()) == ["AB_cF8_225_a_b", "AB_cF8_225_a_b", "pmg-SrTiO3", "A_cF4_225_a"]
    train, test = ds[:2], ds[1:]
    assert list(test.family_seen_in(train)) == [True, False, False]


def test_corrupt_and_foreign_files_are_named(tmp_path):
    records, grid = _records(2)
    good = write_netcdf(records, tmp_path / "good.nc", grid)
    truncated = tmp_path / "truncated.nc"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataFileError, match="truncated.nc"):
        load_dataset(truncated)
    foreign = tmp_path / "foreign.nc"
    xr.Dataset({"x": ("t", np.arange(3))}).to_netcdf(foreign, engine="h5netcdf")
    with pytest.raises(DataFileError, match="not a crystaldos data file"):
        load_dataset(foreign)
    with pytest.raises(DataFileError, match="does not exist"):
        load_dataset(tmp_path / "missing.nc")
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"structure": 1}\n')
    with pytest.raises(DataFileError, match="needs keys"):
        load_dataset(bad_json)
    # The user's file is untouched by a failed load.
    assert good.read_bytes() == (tmp_path / "good.nc").read_bytes()


@pytest.mark.parametrize(
    "variable, index, value, problem",
    [
        ("dos", (2, 5), np.nan, "NaN or infinite DOS"),
        ("dos", (-1, 0), -1.0, "negative DOS"),
        ("atomic_number", 0, 0, "atomic number 0"),
        ("lattice", 1, 0.0, "degenerate lattice"),
        ("frac_coords", (0, 1), np.inf, "non-finite fractional"),
    ],
)
def test_corrupt_values_in_a_data_file_name_the_structure(tmp_path, variable, index, value, problem):
    records, grid = _records()
    good = xr.load_dataset(write_netcdf(records, tmp_path / "good.nc", grid), engine="h5netcdf")
    good[variable].values[index] = value
    good.to_netcdf(tmp_path / "bad.nc", engine="h5netcdf")
    with pytest.raises(DataFileError, match=rf"bad.nc: structure '[^']+' \(index \d\) .*{problem}"):
        load_dataset(tmp_path / "bad.nc")


def test_failed_write_never_leaves_a_half_file(tmp_path):
    records, grid = _records(2)
    target = tmp_path / "keep.nc"
    shutil.copy(default_path(), target)
    before = target.read_bytes()
    with pytest.raises(DOSValidationError):
        write_netcdf(records, target, DosGrid(n_points=64))  # records are on another grid
    assert target.read_bytes() == before


def test_records_reject_a_dos_that_does_not_fit_the_structure():
    record = _records(1)[0][0]
    with pytest.raises(DOSValidationError, match="sites"):
        CrystalDOS("x", record.structure, record.dos.isel(site=slice(0, 0)))
    nan = record.dos.copy()
    nan[0, 0] = np.nan
    with pytest.raises(DOSValidationError, match="NaN"):
        CrystalDOS("x", record.structure, nan)


def test_complete_dos_converter_on_shipped_data():
    record = _records(1)[0][0]
    back = from_complete_dos(to_complete_dos(record.dos, record.structure, efermi=-3.2), smear=False)
    np.testing.assert_allclose(back.values, record.dos.values, atol=1e-5)
    assert isinstance(site_dos(back.values, list(back["element"].values), DosGrid()), xr.DataArray)
