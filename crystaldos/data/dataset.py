"""The labelled data set: records, splits and the embedded default."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Iterator, overload

import numpy as np
import xarray as xr

from crystaldos.data.records import CrystalDOS
from crystaldos.data.store import DataFileError, PackedRecords, open_netcdf, read_json_records, require_format
from crystaldos.dos import DosGrid

SPLITS = ("train", "test", "val")


class CrystalDOSDataset(Sequence):
    """A sequence of :class:`CrystalDOS` records sharing one DOS grid.

    ``ds[i]`` is a record, ``ds.split("train")`` a sub-dataset, ``ds.attrs``
    the file's provenance, ``ds.grid`` the energy grid.
    """

    def __init__(self, records: Sequence[CrystalDOS], grid: DosGrid, attrs: dict | None = None) -> None:
        # PackedRecords (from a netCDF file) build items lazily; anything else is kept as a list.
        self.records = records if isinstance(records, PackedRecords) else list(records)
        self.grid = grid
        self.attrs = dict(attrs or {})

    @overload
    def __getitem__(self, index: int) -> CrystalDOS: ...
    @overload
    def __getitem__(self, index: slice) -> "CrystalDOSDataset": ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return CrystalDOSDataset(self.records[index], self.grid, self.attrs)
        return self.records[index]

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[CrystalDOS]:
        return iter(self.records)

    def __repr__(self) -> str:
        splits = self._splits()
        sizes = {s: n for s in SPLITS if (n := int(np.sum(splits == s)))}
        return f"CrystalDOSDataset({len(self)} crystals, splits={sizes}, grid={self.grid})"

    def split(self, name: str) -> "CrystalDOSDataset":
        """Records of one split: ``"train"``, ``"test"`` or ``"val"``."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; choose one of {SPLITS}")
        selected = np.flatnonzero(self._splits() == name)
        if isinstance(self.records, PackedRecords):
            return CrystalDOSDataset(self.records.take(selected), self.grid, self.attrs)
        return CrystalDOSDataset([self.records[i] for i in selected], self.grid, self.attrs)

    def _splits(self) -> np.ndarray:
        if isinstance(self.records, PackedRecords):
            return self.records.splits
        return np.array([r.split for r in self.records], dtype=str)

    def by_id(self, record_id: str) -> CrystalDOS:
        """The record with this id (``KeyError`` if absent)."""
        return self.records[int(self.positions([record_id])[0])]

    def positions(self, record_ids) -> np.ndarray:
        """(k,) positions in this data set of the records with these ids (``KeyError`` naming the absent ones)."""
        missing = [str(r) for r in record_ids if str(r) not in self._index]
        if missing:
            raise KeyError(f"{len(missing)} ids are not in the data set, e.g. {missing[:3]}")
        return np.array([self._index[str(r)] for r in record_ids], dtype=int)

    @cached_property
    def _index(self) -> dict[str, int]:
        return {str(record_id): i for i, record_id in enumerate(self._ids())}

    def _ids(self) -> np.ndarray:
        """(n,) record ids, without building packed records."""
        return self.records.ids if isinstance(self.records, PackedRecords) else np.array([r.id for r in self.records])

    def column(self, name: str) -> np.ndarray | None:
        """The property ``name`` of every record (e.g. ``"band_gap_eV"``, ``"prototype"``), None if no record has it."""
        if isinstance(self.records, PackedRecords):
            return self.records.column(name)
        if not any(name in r.properties for r in self.records):
            return None
        return np.array([r.properties.get(name) for r in self.records], dtype=object)

    def prototype_families(self) -> np.ndarray:
        """Each crystal's prototype family, (n,) str: the AFLOW label of its prototype (data format 2; a
        substitution belongs to its parent's family, a prototype without AFLOW label to its own id), or in
        data format 1, which keeps no AFLOW label, the id of its parent prototype.

        Raises:
            DataFormatError: a data set with neither (e.g. a Materials Project download), naming its format version.
        """
        ids = self._ids()
        labels, parents = self.column("prototype"), self.column("parent")
        if labels is None and parents is None:
            require_format(self.attrs, 2, "the prototype family of each crystal", self.attrs.get("source_file", "this data set"))
            raise DataFileError("this data set keeps no prototype family (no 'prototype' or 'parent' property)")
        labels = labels if labels is not None else np.full(len(ids), "")
        parents = parents if parents is not None else np.full(len(ids), "")
        return np.array([str(label or "") or str(parent or "") or str(i) for label, parent, i in zip(labels, parents, ids)])

    def family_seen_in(self, reference: "CrystalDOSDataset") -> np.ndarray:
        """(n,) bool: whether each crystal's prototype family has members in ``reference`` (e.g. the train split)."""
        seen = set(reference.prototype_families())
        return np.array([family in seen for family in self.prototype_families()])

    @property
    def elements(self) -> list[str]:
        """Sorted element symbols present in the data."""
        return sorted({el.symbol for r in self.records for el in r.structure.composition.elements})

    def to_graphs(self):
        """All records as a list of torch-geometric ``Data`` (see :mod:`crystaldos.data.graph`)."""
        from crystaldos.data.graph import to_data

        return [to_data(r) for r in self.records]

    def table(self):
        """One row per record (id, formula, n_sites, split, source, scalar properties) as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(
            [
                {"id": r.id, "formula": r.formula, "n_sites": len(r.structure), "split": r.split, "source": r.source, **r.properties}
                for r in self.records
            ]
        ).set_index("id")


def default_path() -> Path:
    """Path of the embedded default data file inside the package."""
    from crystaldos.data.build import DEFAULT_PATH

    return DEFAULT_PATH


def load_dataset(path: str | Path | None = None, grid: DosGrid | None = None, min_format_version: int = 1) -> CrystalDOSDataset:
    """Load a labelled data set; the embedded default when ``path`` is None.

    Args:
        path: a crystaldos netCDF file (``.nc``), or JSON lines / a directory of
            JSON records as pymatgen serialises them (see :mod:`crystaldos.data.store`).
        grid: DOS grid for JSON records (netCDF files carry their own).
        min_format_version: refuse netCDF files of an older data format (``DataFormatError`` naming
            the version and the command that rebuilds the data).

    Raises:
        DataFileError: missing, corrupt or foreign file, naming the problem.
    """
    path = Path(path) if path is not None else default_path()
    if path.suffix == ".nc" or (path.is_file() and path.read_bytes()[:4] == b"\x89HDF"):
        ds = open_netcdf(path, min_format_version)
        return CrystalDOSDataset(PackedRecords(ds), DosGrid.from_attrs(ds.attrs), dict(ds.attrs) | {"source_file": str(path)})
    if path.is_dir() or path.suffix in (".jsonl", ".json", ".gz"):
        records = read_json_records(path, grid)
        return CrystalDOSDataset(records, grid or DosGrid(), {"source_file": str(path)})
    raise DataFileError(f"{path}: unknown data format (expected .nc, .jsonl[.gz] or a directory of .json files)")


def dataset_as_xarray(dataset: CrystalDOSDataset) -> xr.Dataset:
    """The packed netCDF layout of a data set (for saving with ``to_netcdf``). For a whole file as read, these are
    the arrays its records are built from: ``.copy(deep=True)`` before changing values in place."""
    from crystaldos.data.store import records_to_xarray

    attrs = {k: v for k, v in dataset.attrs.items() if k != "source_file"}  # where it was read from, not what it is
    stored = dataset.records.as_xarray() if isinstance(dataset.records, PackedRecords) else None
    if stored is not None:  # a whole file as read: its arrays, not a repacking of every record (10 s for 8,000)
        return stored.assign_attrs(attrs)
    return records_to_xarray(dataset.records, dataset.grid, attrs)


def split_sizes(dataset: CrystalDOSDataset) -> dict[str, int]:
    """Number of records per split."""
    names, counts = np.unique(dataset._splits(), return_counts=True)
    return {str(n): int(c) for n, c in zip(names, counts)}
