"""Reading and writing labelled crystals.

Two formats:

* **netCDF** (one compressed file, written with xarray + h5netcdf): the format
  of the embedded default. Ragged per-site arrays are concatenated along a
  ``site`` dimension; ``n_sites`` says how many rows belong to each structure.
  Variables::

      n_sites       (structure)                 sites per structure
      lattice       (structure, vector, axis)   Å, rows are lattice vectors
      atomic_number (site)
      frac_coords   (site, axis)
      dos           (site, energy)              states/eV/atom, eV - E_F
      structure_id, source, split (structure)   strings
      <property>    (structure)                 float scalars (band_gap_eV, ...)

  The DOS grid and all provenance live in the global attributes.

* **JSON lines** (or a directory of ``*.json`` / ``*.jsonl[.gz]`` files): one record per line,
  ``{"id": ..., "structure": Structure.as_dict(), "dos": CompleteDos.as_dict()}``
  as pymatgen serialises them (the Materials Project format), or with ``"dos"``
  an xarray ``DataArray.to_dict()`` already in crystaldos' convention.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Iterable, Iterator, NoReturn

import numpy as np
import xarray as xr
from pymatgen.core import Lattice, Structure

from crystaldos.atomic_files import atomic_write
from crystaldos.data.records import CrystalDOS
from crystaldos.dos import DosGrid, DOSValidationError, from_complete_dos, site_dos, validate_site_dos

FORMAT_VERSION = 2
#: What each data format version holds; a reader names the version a feature needs.
FORMAT_VERSIONS = {
    1: "GFN1-xTB Gamma-point supercell labels on -10 ... +10 eV, float32 DOS, no prototype family per crystal",
    2: "adds the prototype family (AFLOW label), parent and origin of every crystal and a 'dos_storage' attribute "
       "(float16 or float32 DOS); the rebuilt embedded data holds converged k-mesh GFN2-xTB labels on -25 ... +10 eV",
}
#: The command that rebuilds the embedded data in the current format (resumable; see the README).
REBUILD_COMMAND = "python -m crystaldos.data.build --work-dir data/default-v2 --chunk-size 40"


class DataFileError(ValueError):
    """A data file that is missing, corrupt or not in a crystaldos format."""


class DataFormatError(DataFileError):
    """A data file in a format version that lacks what is asked of it."""


def require_format(attrs: dict, min_version: int, needed_for: str, source: str = "this data set") -> None:
    """Raise :class:`DataFormatError` if ``attrs`` say format version < ``min_version``, naming the version,
    what ``needed_for`` needs, and the command that rebuilds the data."""
    version = int(attrs.get("format_version", 0))
    if version >= min_version:
        return
    held = FORMAT_VERSIONS.get(version, "an unknown layout")
    raise DataFormatError(
        f"{source} is crystaldos data format version {version} ({held}); {needed_for} needs version >= {min_version}. "
        f"Rebuild the data with: {REBUILD_COMMAND}"
    )


def records_to_xarray(records: Sequence[CrystalDOS], grid: DosGrid, attrs: dict | None = None) -> xr.Dataset:
    """Pack records (all on ``grid``) into one Dataset (see module docstring)."""
    if not records:
        raise ValueError("no records to pack")
    for record in records:
        validate_site_dos(record.dos, n_sites=len(record.structure), grid=grid)
    property_names = sorted({k for r in records for k, v in r.properties.items() if isinstance(v, (int, float))})
    text_properties = sorted({k for r in records for k, v in r.properties.items() if isinstance(v, str)})
    data = {
        "n_sites": ("structure", np.array([len(r.structure) for r in records], dtype=np.int32)),
        "lattice": (("structure", "vector", "axis"), np.stack([r.structure.lattice.matrix for r in records])),
        "atomic_number": ("site", np.concatenate([r.structure.atomic_numbers for r in records]).astype(np.int16)),
        "frac_coords": (("site", "axis"), np.concatenate([r.structure.frac_coords for r in records])),
        "dos": (("site", "energy"), np.concatenate([np.asarray(r.dos.values, np.float32) for r in records])),
        "structure_id": ("structure", np.array([r.id for r in records], dtype=object)),
        "source": ("structure", np.array([r.source for r in records], dtype=object)),
        "split": ("structure", np.array([r.split for r in records], dtype=object)),
    }
    for name in property_names:
        data[name] = ("structure", np.array([float(r.properties.get(name, np.nan)) for r in records]))
    for name in text_properties:
        data[name] = ("structure", np.array([str(r.properties.get(name, "")) for r in records], dtype=object))
    ds = xr.Dataset(data, coords={"energy": grid.energies})
    ds["energy"].attrs["units"] = "eV - E_F"
    ds["dos"].attrs["units"] = "states/eV/atom"
    ds["lattice"].attrs["units"] = "angstrom"
    ds.attrs.update({"format": "crystaldos", "format_version": FORMAT_VERSION, **grid.to_attrs(), **(attrs or {})})
    return ds


DOS_STORAGE = ("float32", "float16")


def write_netcdf(
    records: Sequence[CrystalDOS],
    path: str | Path,
    grid: DosGrid,
    attrs: dict | None = None,
    dos_storage: str = "float32",
) -> Path:
    """Write records to one compressed netCDF file, atomically (never a half-written file).

    ``dos_storage="float16"`` stores the DOS in half precision (byte-shuffled, gzip): 5x smaller than
    float32 on the rebuilt data, with a relative rounding error below 5e-4 (mean absolute 4e-5, largest
    0.008 states/eV on values up to 20; ``benchmarks/data/dos_storage.py``), a thousand times below the
    labels' own convergence noise (~0.05). It is read back as float32.
    """
    if dos_storage not in DOS_STORAGE:
        raise ValueError(f"dos_storage must be one of {DOS_STORAGE}, got {dos_storage!r}")
    path = Path(path)
    ds = records_to_xarray(records, grid, attrs)
    if dos_storage == "float16":
        ds["dos"] = ds["dos"].astype(np.float16)
    ds.attrs["dos_storage"] = dos_storage
    encoding = {name: {"compression": "gzip", "compression_opts": 6} for name in ("dos", "frac_coords", "lattice")}
    encoding["dos"].update(chunksizes=(min(4096, ds.sizes["site"]), ds.sizes["energy"]), shuffle=True)
    with atomic_write(path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf", encoding=encoding, invalid_netcdf=True)
    return path


def compressed_encoding(ds: xr.Dataset, level: int = 6) -> dict:
    """netCDF encoding (h5netcdf engine) that gzips every data variable of ``ds``, lossless: numbers byte-shuffled,
    text (e.g. structures as pymatgen JSON) as character arrays, which netCDF can compress and variable-length
    strings cannot. xarray reads both back as they were."""
    encoding = {}
    for name, var in ds.data_vars.items():
        if var.dtype.kind in "UO":
            encoding[name] = {"dtype": "S1", "zlib": True, "complevel": level}
        elif var.ndim:
            encoding[name] = {"zlib": True, "complevel": level, "shuffle": True}
    return encoding


def open_netcdf(path: str | Path, min_format_version: int = 1) -> xr.Dataset:
    """Open and check a crystaldos netCDF file (loaded into memory, file closed).

    Raises:
        DataFormatError: the file's format version is below ``min_format_version`` (or newer than this
            crystaldos reads); the message names the version and the command that rebuilds the data.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"data file {path} does not exist")
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            ds = ds.load()
        if "dos" in ds and ds["dos"].dtype == np.float16:
            ds["dos"] = ds["dos"].astype(np.float32)  # float16 storage, float32 in memory
    except Exception as err:
        raise DataFileError(f"{path} is not a readable netCDF/HDF5 file ({type(err).__name__}: {err})") from err
    if ds.attrs.get("format") != "crystaldos":
        raise DataFileError(f"{path} is netCDF but not a crystaldos data file (no format='crystaldos' attribute)")
    if int(ds.attrs.get("format_version", -1)) > FORMAT_VERSION:
        raise DataFormatError(f"{path} has format version {ds.attrs['format_version']}, this crystaldos reads <= {FORMAT_VERSION}; "
                              "upgrade crystaldos")
    require_format(ds.attrs, min_format_version, f"opening it with min_format_version={min_format_version}", str(path))
    missing = [v for v in ("n_sites", "lattice", "atomic_number", "frac_coords", "dos", "structure_id") if v not in ds]
    if missing:
        raise DataFileError(f"{path} lacks variables {missing}")
    if int(ds["n_sites"].sum()) != ds.sizes["site"]:
        raise DataFileError(f"{path}: n_sites sums to {int(ds['n_sites'].sum())} but there are {ds.sizes['site']} site rows")
    _check_contents(ds, path)
    return ds


def _check_contents(ds: xr.Dataset, path: Path) -> None:
    """Vectorised sanity checks of a loaded file; the first bad structure is named by id.

    A corrupt value would otherwise surface much later (a NaN DOS in training, a
    zero-volume cell in the matcher) without saying which file or crystal it came from.
    """
    ids = ds["structure_id"].values.astype(str)
    n_sites = ds["n_sites"].values
    owner = np.repeat(np.arange(len(ids)), n_sites)  # structure index of every site row

    def fail(structure_index: int, problem: str) -> NoReturn:
        raise DataFileError(f"{path}: structure '{ids[structure_index]}' (index {structure_index}) {problem}")

    if (n_sites < 1).any():
        fail(int(np.argmax(n_sites < 1)), "has no sites")
    numbers = ds["atomic_number"].values
    bad = (numbers < 1) | (numbers > 118)
    if bad.any():
        fail(int(owner[np.argmax(bad)]), f"has atomic number {int(numbers[np.argmax(bad)])}, not an element")
    lattice = ds["lattice"].values
    finite = np.isfinite(lattice).all(axis=(1, 2))
    if not finite.all():
        fail(int(np.argmin(finite)), "has a non-finite lattice")
    volumes = np.abs(np.linalg.det(lattice))
    if (volumes < 1e-3).any():
        fail(int(np.argmax(volumes < 1e-3)), f"has a degenerate lattice (volume {volumes[np.argmax(volumes < 1e-3)]:.3g} Å^3)")
    frac = np.isfinite(ds["frac_coords"].values).all(axis=1)
    if not frac.all():
        fail(int(owner[np.argmin(frac)]), "has non-finite fractional coordinates")
    dos = ds["dos"].values
    finite_dos = np.isfinite(dos).all(axis=1)
    if not finite_dos.all():
        fail(int(owner[np.argmin(finite_dos)]), "has NaN or infinite DOS values")
    negative = (dos < 0).any(axis=1)
    if negative.any():
        fail(int(owner[np.argmax(negative)]), "has negative DOS values")


class PackedRecords(Sequence):
    """Records of a packed Dataset, built on first access and cached (loading stays O(1)).

    Slicing and :meth:`take` give views that share the arrays and the cache.
    ``ids`` and ``splits`` are available without building any record.
    """

    def __init__(self, ds: xr.Dataset, indices: np.ndarray | None = None, _shared: dict | None = None) -> None:
        if _shared is None:
            from pymatgen.core.periodic_table import Element

            numbers = ds["atomic_number"].values
            _shared = {
                "grid": DosGrid.from_attrs(ds.attrs),
                "starts": np.concatenate([[0], np.cumsum(ds["n_sites"].values)]),
                "numbers": numbers,
                "symbols": {int(z): Element.from_Z(int(z)).symbol for z in np.unique(numbers)},
                "frac": ds["frac_coords"].values,
                "dos": ds["dos"].values,
                "lattice": ds["lattice"].values,
                "ids": ds["structure_id"].values.astype(str),
                "sources": ds["source"].values.astype(str) if "source" in ds else np.full(ds.sizes["structure"], ""),
                "splits": ds["split"].values.astype(str) if "split" in ds else np.full(ds.sizes["structure"], ""),
                "scalars": {
                    n: ds[n].values
                    for n, v in ds.data_vars.items()
                    if v.dims == ("structure",) and n not in ("n_sites", "structure_id", "source", "split")
                },
                "cache": {},
                "dataset": ds,
            }
        self._shared = _shared
        self._indices = np.arange(len(_shared["ids"])) if indices is None else np.asarray(indices, dtype=int)

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return PackedRecords(None, self._indices[index], self._shared)
        return self._build(int(self._indices[index]))

    def take(self, indices: np.ndarray) -> "PackedRecords":
        """A view on the records at ``indices`` (positions in this view)."""
        return PackedRecords(None, self._indices[np.asarray(indices, dtype=int)], self._shared)

    @property
    def ids(self) -> np.ndarray:
        return self._shared["ids"][self._indices]

    @property
    def splits(self) -> np.ndarray:
        return self._shared["splits"][self._indices]

    def column(self, name: str) -> np.ndarray | None:
        """The per-structure property ``name`` of every record in this view (None if the file has none)."""
        values = self._shared["scalars"].get(name)
        return None if values is None else values[self._indices]

    def structure(self, index: int) -> Structure:
        """The crystal of record ``index`` (a position in this view), without building its DOS (for statistics
        over every crystal of a file: about four times faster than the whole record)."""
        i = int(self._indices[index])
        cached = self._shared["cache"].get(i)
        return cached.structure if cached is not None else self._structure(i, self._species(i))

    def as_xarray(self) -> xr.Dataset | None:
        """The packed Dataset these records were read from, when this view holds all of them in file order
        (None for a slice or a selection: repack those with :func:`records_to_xarray`)."""
        whole = len(self._indices) == len(self._shared["ids"]) and (self._indices == np.arange(len(self._indices))).all()
        return self._shared["dataset"] if whole else None

    def _species(self, i: int) -> list[str]:
        sh = self._shared
        return [sh["symbols"][int(z)] for z in sh["numbers"][sh["starts"][i]:sh["starts"][i + 1]]]

    def _structure(self, i: int, species: list[str]) -> Structure:
        sh = self._shared
        return Structure(Lattice(sh["lattice"][i]), species, sh["frac"][sh["starts"][i]:sh["starts"][i + 1]])

    def _build(self, i: int) -> CrystalDOS:
        sh = self._shared
        if i not in sh["cache"]:
            lo, hi = sh["starts"][i], sh["starts"][i + 1]
            species = self._species(i)
            structure = self._structure(i, species)
            properties = {n: (v[i].item() if hasattr(v[i], "item") else v[i]) for n, v in sh["scalars"].items()}
            sh["cache"][i] = CrystalDOS(
                id=str(sh["ids"][i]),
                structure=structure,
                dos=site_dos(sh["dos"][lo:hi], species, sh["grid"]),
                source=str(sh["sources"][i]),
                split=str(sh["splits"][i]),
                properties=properties,
            )
        return sh["cache"][i]


def xarray_to_records(ds: xr.Dataset) -> list[CrystalDOS]:
    """Unpack every record of a Dataset written by :func:`records_to_xarray`."""
    return list(PackedRecords(ds))


def _json_records(path: Path) -> Iterator[dict]:
    """Yield JSON objects from a ``.jsonl``/``.jsonl.gz`` file, or a directory of ``.json`` files (one record
    each) and ``.jsonl``/``.jsonl.gz`` files (e.g. what ``crystaldos data mp`` writes)."""
    if path.is_dir():
        for file in sorted(path.glob("*.json")):
            if file.name == "manifest.json":  # crystaldos data mp's bookkeeping, not a record
                continue
            yield json.loads(file.read_text())
        for file in sorted([*path.glob("*.jsonl"), *path.glob("*.jsonl.gz")]):
            yield from _json_records(file)
        return
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        for line_number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataFileError(f"{path}:{line_number}: not valid JSON ({err.msg})") from err


def read_json_records(path: str | Path, grid: DosGrid | None = None, source: str = "json") -> list[CrystalDOS]:
    """Read ``{structure, dos}`` records as pymatgen serialises them (``as_dict()``).

    ``dos`` may be a pymatgen ``CompleteDos`` dict (Materials Project; converted
    with :func:`crystaldos.dos.from_complete_dos` onto ``grid``) or an xarray
    ``DataArray.to_dict()`` in crystaldos' convention. Records may carry
    ``id``/``material_id`` and ``split``.
    """
    from pymatgen.electronic_structure.dos import CompleteDos

    path = Path(path)
    if not path.exists():
        raise DataFileError(f"{path} does not exist")
    grid = grid or DosGrid()
    records = []
    for n, obj in enumerate(_json_records(path)):
        where = f"{path} record {n}"
        if "structure" not in obj or "dos" not in obj:
            raise DataFileError(f"{where}: needs keys 'structure' and 'dos', has {sorted(obj)}")
        try:
            structure = Structure.from_dict(obj["structure"])
        except Exception as err:
            raise DataFileError(f"{where}: 'structure' is not a pymatgen Structure dict ({err})") from err
        raw = obj["dos"]
        record_id = str(obj.get("id") or obj.get("material_id") or f"{path.stem}-{n}")
        try:
            if raw.get("@class") == "CompleteDos":
                dos = from_complete_dos(CompleteDos.from_dict(raw), grid, structure)
            elif "dims" in raw and "data" in raw:
                dos = xr.DataArray.from_dict(raw)
            else:
                raise DataFileError(f"{where}: 'dos' is neither a CompleteDos dict nor an xarray DataArray dict")
            records.append(CrystalDOS(record_id, structure, dos, source=obj.get("source", source), split=obj.get("split", "")))
        except DOSValidationError as err:  # name the file and record, not only the site
            raise DataFileError(f"{where} ({record_id}): {err}") from err
    if not records:
        raise DataFileError(f"{path} holds no records")
    return records


def write_json_records(records: Iterable[CrystalDOS], path: str | Path) -> Path:
    """Write records as JSON lines: pymatgen ``Structure.as_dict()`` and the DOS as ``DataArray.to_dict()``."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt") as handle:
        for r in records:
            dos = r.dos.copy()
            dos.attrs = {k: (list(v) if isinstance(v, (list, tuple, np.ndarray)) else v) for k, v in dos.attrs.items()}
            line = {"id": r.id, "source": r.source, "split": r.split, "structure": r.structure.as_dict(), "dos": dos.to_dict()}
            handle.write(json.dumps(line, default=_json_default) + "\n")
    return path


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot serialise {type(value).__name__}")
