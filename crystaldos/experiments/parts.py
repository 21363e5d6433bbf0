"""A folder of finished pieces of a long computation, so that a killed or time-limited run resumes where it stopped;
and the pieces of a reconstruction table (``crystaldos evaluate``): their names, fields and digests.

    store = PartStore(Path("results/evaluation/parts"), settings={"seed": 0, "steps": 1000})
    part = store.load("cfg_t200_b00064")          # None until it has been saved
    store.save("cfg_t200_b00064", part_dataset)    # atomic: a kill never leaves half a part

The folder keeps the settings that its parts were made with (``settings.json``); a store opened on the
same folder with other settings raises :class:`PartsMismatchError` naming what differs, so that parts of
two different experiments are never mixed. Parts are xarray Datasets in gzipped netCDF, small enough to
commit, so a run may also continue on another machine or in another working session.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from crystaldos.atomic_files import atomic_write
from crystaldos.dos import total_dos
from crystaldos.options import SamplingOptions

#: DOS agreement of the xTB-recomputed DOS of a generated crystal with the target (``xtb_`` variables).
XTB_FIELDS = ("site_mae", "total_mae", "total_wasserstein")

#: The sampling options every row of a table shares (each row sets its own guidance, strength and t_start), stored in
#: a table's attributes and in its parts folder's settings.
SHARED_OPTIONS = ("steps", "seed", "unconditional", "spacing", "lattice_step", "step_lr", "tie_types")

SCORE_FIELDS = (
    "valid", "matched", "rmse", "valid_cdvae", "reference_valid_cdvae", "matched_cdvae", "volume_error_pct", "length_error_pct",
    "angle_error_deg", "composition_match", "site_type_accuracy", "dos_site_mae", "dos_total_mae", "dos_total_wasserstein",
)


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


def batch_part(chunk, fields: dict[str, np.ndarray], generated: Sequence[str], formulas: Sequence[str],
               dos_pred: Sequence[xr.DataArray], seconds: float, **attrs) -> xr.Dataset:
    """One part of the experiment (dims structure[, energy]) for the items ``chunk``: the :data:`SCORE_FIELDS`
    (each (len(chunk),)), the generated crystals as pymatgen JSON and their reduced formulas, their forward-model
    DOS (stored as the total per atom) and the sampling time (s)."""
    return xr.Dataset(
        {f: ("structure", np.asarray(fields[f], dtype=float)) for f in SCORE_FIELDS}
        | {
            "generated": ("structure", np.array(generated, dtype=str)),
            "generated_formula": ("structure", np.array(formulas, dtype=str)),
            # float16 like the data set's labels (its dos_storage): only plotted, the scores use full precision
            "dos_pred_total": (("structure", "energy"), np.stack(
                [total_dos(d).values / d.sizes["site"] for d in dos_pred]).astype(np.float16)),
        },
        coords={"structure": [i.id for i in chunk], "energy": chunk[0].dos["energy"].values},
        attrs={"sampling_time_s": seconds} | attrs,
    )


def part_name(guidance: str, t_start: int, batch_start: int) -> str:
    """The name of the part of the batch starting at item ``batch_start`` of one (guidance, t_start) row."""
    return f"{guidance}_t{int(t_start)}_b{batch_start:05d}"


def xtb_part_name(xtb_limit: int, guidance: str, t_start: int) -> str:
    """The name of the part holding one row's xTB-recomputed DOS errors."""
    return f"xtb{xtb_limit}_{guidance}_t{int(t_start)}"


def experiment_settings(items, strengths: dict, options: SamplingOptions, batch_size: int, models: dict | None = None) -> dict:
    """What a part of the experiment depends on besides its (guidance, t_start, batch): a parts folder made with
    other settings, other crystals or other target DOS (digest of ids and DOS values) cannot be resumed."""
    settings = {"strengths": strengths, "steps": options.steps or 0, "seed": options.seed, "batch_size": batch_size,
                "unconditional": options.unconditional, "spacing": options.spacing, "lattice_step": options.lattice_step,
                "step_lr": options.step_lr, "n_items": len(items), "items_sha256": items_digest(items), "models": models or {}}
    # Only when on, so that parts folders made before the option existed (untied) still resume.
    return settings | ({"tie_types": True} if options.tie_types else {})


def items_digest(items) -> str:
    """SHA-256 of the items' ids and target DOS values: which crystals and targets a run scored."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(str(item.id).encode())
        digest.update(np.ascontiguousarray(item.dos.values, dtype=np.float32).tobytes())
    return digest.hexdigest()


def model_hashes(folder: str | Path) -> dict[str, str]:
    """SHA-256 of every checkpoint (``*.pt``) in ``folder``, by file name: which models made a run's parts."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).glob("*.pt"))}
