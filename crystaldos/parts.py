"""A folder of finished pieces of a long computation, so that a killed or time-limited run resumes where it stopped.

    store = PartStore(Path("results/evaluation/parts"), settings={"seed": 0, "steps": 1000})
    part = store.load("cfg_t200_b00064")          # None until it has been saved
    store.save("cfg_t200_b00064", part_dataset)    # atomic: a kill never leaves half a part

The folder keeps the settings that its parts were made with (``settings.json``); a store opened on the
same folder with other settings raises :class:`PartsMismatchError` naming what differs, so that parts of
two different experiments are never mixed. Parts are xarray Datasets in gzipped netCDF, small enough to
commit, so a run may also continue on another machine or in another working session.
"""

from __future__ import annotations

import json
from pathlib import Path

import xarray as xr

from crystaldos.atomic_files import atomic_write


class PartsMismatchError(ValueError):
    """A parts folder holds pieces made with other settings."""


def _canonical(settings: dict) -> dict:
    """``settings`` as JSON would give it back (tuples become lists, keys strings), for comparison."""
    return json.loads(json.dumps(settings, sort_keys=True))


class PartStore:
    """Named xarray parts in ``folder``, all made with the same ``settings`` (JSON-serialisable)."""

    SETTINGS_FILE = "settings.json"

    def __init__(self, folder: str | Path, settings: dict) -> None:
        self.folder = Path(folder)
        self.settings = _canonical(settings)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / self.SETTINGS_FILE
        if path.exists():
            old = json.loads(path.read_text())
            differs = sorted(k for k in set(old) | set(self.settings) if old.get(k) != self.settings.get(k))
            if differs:
                shown = "; ".join(f"{k}: {_short(old.get(k))} there, {_short(self.settings.get(k))} now" for k in differs)
                raise PartsMismatchError(
                    f"{self.folder} holds parts of a run with other settings ({shown}); "
                    f"choose another folder, or delete {self.folder} to start afresh")
        else:
            path.write_text(json.dumps(self.settings, indent=1, sort_keys=True))

    def path(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"part name {name!r} must be a plain file name")
        return self.folder / f"{name}.nc"

    def names(self) -> list[str]:
        """The finished parts, sorted."""
        return sorted(p.stem for p in self.folder.glob("*.nc"))

    def load(self, name: str) -> xr.Dataset | None:
        """The part saved under ``name`` (loaded into memory), or None if there is none yet."""
        path = self.path(name)
        if not path.exists():
            return None
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            return ds.load()

    def save(self, name: str, part: xr.Dataset) -> Path:
        """Write ``part`` under ``name``: to a temporary file first, then renamed, so a kill leaves no torn part."""
        from crystaldos.data.store import compressed_encoding

        path = self.path(name)
        with atomic_write(path) as tmp:
            part.to_netcdf(tmp, engine="h5netcdf", encoding=compressed_encoding(part))
        return path


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
