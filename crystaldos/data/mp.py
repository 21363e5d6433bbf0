"""Build an "MP DOS" data set from the Materials Project with its own client (``mp-api``).

>>> report = download_mp_dos("data/mp_dos", max_sites=20, limit=100)     # needs MP_API_KEY and a network
>>> crystaldos.load_dataset("data/mp_dos")                                 # doctest: +SKIP

Command line: ``crystaldos data mp --out data/mp_dos [--max-sites 20] [--elements Si O] [--ids ids.txt] [--limit N]``.

The output folder holds JSON-lines files that :func:`crystaldos.load_dataset` reads:

* ``mp_dos_NNNNN.jsonl.gz``: finished chunks of ``chunk_size`` records, each written whole (temp file, rename);
* ``in_progress.jsonl``: the records since the last chunk, one line each, flushed and fsynced as it is written;
* ``manifest.json``: the query, the date, the client version, the skipped materials with their reason;
* ``CARD.md``: where and when the data came from, and under which licence.

Every record is ``{"id": "mp-149", "source": "materials-project", "split": ..., "structure": Structure.as_dict(),
"dos": ...}``: the atom-level DOS in crystaldos' convention (``DataArray.to_dict()``, on ``grid``), or with
``raw=True`` the Materials Project's own ``CompleteDos.as_dict()`` (larger; keeps the choice of grid for later).
The split is a seeded hash of the material ID (0.6 / 0.2 / 0.2), so it does not depend on the download order and a
crystal keeps its split when the set grows. A rerun skips every material already written or skipped; an
interrupted run loses at most the line being written, which the next run drops.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Protocol, Sequence

from crystaldos.atomic_files import atomic_write, write_text_atomic
from crystaldos.data.build import SPLIT_FRACTIONS, count_reasons
from crystaldos.dos import DosGrid, DOSValidationError, from_complete_dos

MP_API_URL = "https://api.materialsproject.org"
LICENCE = ("Materials Project data are licensed under CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/); cite "
           "A. Jain et al., APL Materials 1, 011002 (2013), doi:10.1063/1.4812323, and the Materials Project's "
           "electronic-structure workflow papers for the DOS.")
SOURCE = "materials-project"
IN_PROGRESS = "in_progress.jsonl"


class MaterialsProjectError(RuntimeError):
    """The Materials Project could not be used: no key, a rejected key, or no connection."""


class MissingAPIKeyError(MaterialsProjectError):
    pass


class InvalidAPIKeyError(MaterialsProjectError):
    pass


class NoNetworkError(MaterialsProjectError):
    pass


class MaterialsClient(Protocol):
    """What the downloader needs from a Materials Project client (``MPClient``, or a test double)."""

    def search(self, elements: Sequence[str] | None, max_sites: int | None, limit: int | None) -> list[str]:
        """Material IDs that have a DOS, within the selection."""

    def complete_dos(self, material_id: str):
        """The material's pymatgen ``CompleteDos`` with site projections (its ``.structure`` is the crystal)."""


def api_key_from(api_key: str | None) -> str:
    """The API key (argument, else ``MP_API_KEY``), checked for form; never printed."""
    key = api_key or os.environ.get("MP_API_KEY")
    if not key:
        raise MissingAPIKeyError("no Materials Project API key: pass --api-key KEY or set the MP_API_KEY environment "
                                 "variable (get a key at https://next-gen.materialsproject.org/api)")
    if len(key) != 32 or not key.isalnum():
        raise InvalidAPIKeyError(f"that is not a Materials Project API key: keys are 32 letters and digits, this one has "
                                 f"{len(key)} characters (see https://next-gen.materialsproject.org/api)")
    return key


def _is_connection_error(error: BaseException) -> bool:
    import requests

    return isinstance(error, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError))


def _status_code(error: BaseException) -> int | None:
    """The HTTP status in an mp-api ``MPRestError`` message ("... error status code 401 ..."), if any."""
    import re

    found = re.search(r"status code (\d{3})", str(error))
    return int(found.group(1)) if found else None


class MPClient:
    """The real client: ``mp_api.client.MPRester`` (optional extra ``mp``), with clear errors.

    Raises:
        MissingAPIKeyError, InvalidAPIKeyError, NoNetworkError (naming what it tried to reach).
    """

    def __init__(self, api_key: str | None = None) -> None:
        key = api_key_from(api_key)
        try:
            from mp_api.client import MPRester
        except ImportError as err:
            raise MaterialsProjectError("the Materials Project client is not installed: pip install -e '.[mp]' "
                                        "(or pip install mp-api)") from err
        try:
            self._rester = MPRester(key, mute_progress_bars=True)
        except Exception as err:  # noqa: BLE001 - translated into what the user can act on
            raise self.translate(err) from None

    @staticmethod
    def translate(error: BaseException) -> BaseException:
        """A connection failure or a rejected key as a MaterialsProjectError; anything else unchanged."""
        if _is_connection_error(error):
            return NoNetworkError(f"crystaldos data mp needs a network connection to the Materials Project: it could not "
                                  f"reach {MP_API_URL} ({type(error).__name__}). Run it on a machine with internet access.")
        if _status_code(error) in (401, 403):
            return InvalidAPIKeyError("the Materials Project rejected the API key (HTTP "
                                      f"{_status_code(error)}); check MP_API_KEY or --api-key")
        return error

    def search(self, elements: Sequence[str] | None, max_sites: int | None, limit: int | None) -> list[str]:
        query = {"has_props": ["dos"], "fields": ["material_id"]}
        if elements:
            query["elements"] = list(elements)
        if max_sites:
            query["num_sites"] = (1, int(max_sites))
        if limit:
            query["chunk_size"] = min(1000, int(limit))
            query["num_chunks"] = -(-int(limit) // query["chunk_size"])
        try:
            docs = self._rester.materials.summary.search(**query)
        except Exception as err:  # noqa: BLE001
            raise self.translate(err) from None
        return [str(doc.material_id) for doc in docs][: limit or None]

    def complete_dos(self, material_id: str):
        return self._rester.get_dos_by_material_id(material_id, load_projections=True)


def split_of(material_id: str, seed: int = 0, fractions: dict[str, float] = SPLIT_FRACTIONS) -> str:
    """The split of a material: a seeded hash of its ID mapped onto the split fractions (train/test/val)."""
    digest = hashlib.sha256(f"{seed}:{material_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    edge = 0.0
    for name, fraction in fractions.items():
        edge += fraction
        if u < edge:
            return name
    return list(fractions)[-1]


@dataclass
class DownloadReport:
    """What a download run did. ``written`` and ``skipped`` count this run; ``total`` all records in the folder."""

    out: Path
    written: int = 0
    already_there: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    total: int = 0

    def __str__(self) -> str:
        return (f"{self.out}: {self.written} written, {self.already_there} already there, {len(self.skipped)} skipped "
                f"{count_reasons(self.skipped) or ''}; {self.total} records in all")


def record_of(material_id: str, cdos, grid: DosGrid, seed: int, raw: bool) -> dict:
    """One JSON record, or ValueError naming why the DOS is unusable (no projections, a missing site, corrupt)."""
    if not getattr(cdos, "pdos", None):
        raise ValueError("no atom projections: the DOS has no site-projected densities")
    structure = cdos.structure
    missing = [i for i, site in enumerate(structure) if site not in cdos.pdos]
    if missing:
        raise ValueError(f"missing site projections: sites {missing[:5]} of {len(structure)} have no projected DOS")
    try:
        dos = from_complete_dos(cdos, grid, structure)  # also validates what raw records keep
    except DOSValidationError as err:
        raise ValueError(f"invalid DOS: {err}") from None
    if raw:
        payload = cdos.as_dict()
    else:
        dos.attrs = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in dos.attrs.items()}
        payload = dos.to_dict()
    return {"id": material_id, "source": SOURCE, "split": split_of(material_id, seed), "structure": structure.as_dict(),
            "dos": payload}


class _Folder:
    """The output folder: finished chunks, the in-progress file, the manifest."""

    def __init__(self, out: Path, chunk_size: int) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.chunk_size = chunk_size
        self.manifest_path = self.out / "manifest.json"
        self.manifest = json.loads(self.manifest_path.read_text()) if self.manifest_path.exists() else {"skipped": {}, "runs": []}
        self.in_progress = self.out / IN_PROGRESS
        sealed = set(self._ids_in_chunks())
        self._repair_in_progress(sealed)
        pending = self._pending_ids()
        self.n_pending = len(pending)  # counted here, not re-read from the file at every append
        self.ids = sealed | set(pending)

    def _chunks(self) -> list[Path]:
        return sorted(self.out.glob("mp_dos_*.jsonl.gz"))

    def _ids_in_chunks(self) -> Iterable[str]:
        for path in self._chunks():
            with gzip.open(path, "rt") as handle:
                for line in handle:
                    yield json.loads(line)["id"]

    def _pending_lines(self) -> list[str]:
        return self.in_progress.read_text().splitlines() if self.in_progress.exists() else []

    def _pending_ids(self) -> list[str]:
        return [json.loads(line)["id"] for line in self._pending_lines()]

    def _repair_in_progress(self, sealed: set[str]) -> None:
        """Drop a last line cut off by an interruption (every whole line ends with a newline), and records
        already sealed into a chunk (an interruption between writing the chunk and deleting this file)."""
        if not self.in_progress.exists():
            return
        data = self.in_progress.read_bytes()
        lines = data[: data.rfind(b"\n") + 1].decode().splitlines(keepends=True)
        kept = [line for line in lines if json.loads(line)["id"] not in sealed]
        if "".join(kept).encode() != data:
            self.in_progress.write_text("".join(kept))

    def append(self, record: dict) -> None:
        with open(self.in_progress, "a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.ids.add(record["id"])
        self.n_pending += 1
        if self.n_pending >= self.chunk_size:
            self.seal()

    def seal(self) -> None:
        """Move the in-progress records into the next finished chunk (written whole, then renamed)."""
        lines = self._pending_lines()
        if not lines:
            return
        chunks = self._chunks()
        index = int(chunks[-1].name[7:12]) + 1 if chunks else 0
        path = self.out / f"mp_dos_{index:05d}.jsonl.gz"
        with atomic_write(path) as tmp, gzip.open(tmp, "wt") as handle:
            handle.write("\n".join(lines) + "\n")
        self.in_progress.unlink()
        self.n_pending = 0

    def save_manifest(self) -> None:
        write_text_atomic(self.manifest_path, json.dumps(self.manifest, indent=1))


def download_mp_dos(
    out: str | Path,
    api_key: str | None = None,
    material_ids: Sequence[str] | None = None,
    elements: Sequence[str] | None = None,
    max_sites: int | None = None,
    limit: int | None = None,
    client: MaterialsClient | None = None,
    grid: DosGrid | None = None,
    raw: bool = False,
    seed: int = 0,
    chunk_size: int = 500,
    retries: int = 4,
    backoff_s: float = 2.0,
    progress: bool = True,
) -> DownloadReport:
    """Download Materials Project crystals with atom-projected DOS into ``out`` (resumable).

    Args:
        out: output folder (created); a rerun continues it.
        api_key: Materials Project API key (default ``MP_API_KEY``); used only to talk to the API, never written.
        material_ids: exactly these materials (e.g. read from a file); else a search.
        elements: the search keeps materials containing all of these elements.
        max_sites: the search keeps cells of at most this many sites.
        limit: at most this many materials from the selection.
        client: a :class:`MaterialsClient` (default :class:`MPClient`, the real ``mp-api`` client).
        grid: the DOS grid of the records (default ``DosGrid()``); ignored with ``raw``.
        raw: store the Materials Project ``CompleteDos`` dicts as they come.
        seed: seeds the split hash.
        chunk_size: records per finished chunk file.
        retries: tries per material on transient errors (connection, HTTP 429/5xx), waiting
            ``backoff_s``, 2 ``backoff_s``, 4 ``backoff_s``, ... in between.
        progress: a tqdm bar (notebook-aware).

    Returns:
        A :class:`DownloadReport`.

    Raises:
        MissingAPIKeyError, InvalidAPIKeyError, NoNetworkError: before anything is written.
    """
    from tqdm.auto import tqdm

    grid = grid or DosGrid()
    client = client if client is not None else MPClient(api_key)
    folder = _Folder(Path(out), chunk_size)
    if material_ids is not None:
        wanted = list(dict.fromkeys(str(m).strip() for m in material_ids if str(m).strip()))[: limit or None]
    else:
        wanted = _with_retries(lambda: client.search(elements, max_sites, limit), retries, backoff_s)
    skipped_before = folder.manifest["skipped"]
    todo = [m for m in wanted if m not in folder.ids and m not in skipped_before]
    report = DownloadReport(folder.out, already_there=len(wanted) - len(todo))
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    try:
        for material_id in tqdm(todo, desc="Materials Project DOS", disable=not progress):
            cdos = _with_retries(lambda: client.complete_dos(material_id), retries, backoff_s)
            try:
                record = record_of(material_id, cdos, grid, seed, raw) if cdos is not None else None
                if record is None:
                    raise ValueError("no DOS: the Materials Project has none for this material")
            except ValueError as reason:
                report.skipped[material_id] = str(reason)
                skipped_before[material_id] = str(reason)
                continue
            folder.append(record)
            report.written += 1
    finally:
        folder.manifest["runs"].append({
            "started_utc": started, "query": {"material_ids": None if material_ids is None else len(wanted), "elements": elements,
                                              "max_sites": max_sites, "limit": limit},
            "written": report.written, "skipped": len(report.skipped), "client": _client_version(client),
            "grid": None if raw else grid.to_attrs(), "raw": raw, "seed": seed,
        })
        folder.save_manifest()
        report.total = len(folder.ids)
        write_card(folder)
    return report


def _with_retries(call, retries: int, backoff_s: float):
    """``call()``, retried on transient errors with exponential back-off; no connection at all raises NoNetworkError."""
    for attempt in range(max(1, retries)):
        try:
            return call()
        except MaterialsProjectError:
            raise
        except Exception as err:  # noqa: BLE001 - sorted below
            transient = _is_connection_error(err) or (_status_code(err) or 0) in (429, 500, 502, 503, 504)
            if not transient:
                raise MPClient.translate(err) from None
            if attempt == max(1, retries) - 1:
                raise MPClient.translate(err) from None
            time.sleep(backoff_s * 2**attempt)


def _client_version(client) -> str:
    if isinstance(client, MPClient):
        from importlib.metadata import version

        return f"mp-api {version('mp-api')}"
    return type(client).__name__


def write_card(folder: _Folder) -> Path:
    """``CARD.md``: what the folder holds, where and when it came from, the licence."""
    skipped = folder.manifest["skipped"]
    reasons = count_reasons(skipped)
    runs = folder.manifest["runs"]
    lines = [
        "# Materials Project DOS (downloaded by `crystaldos data mp`)",
        "",
        f"- Records: {len(folder.ids)} crystals with atom-projected DOS ({', '.join(f'{k} {v:.0%}' for k, v in SPLIT_FRACTIONS.items())} "
        "split by a seeded hash of the material ID).",
        f"- Source: the Materials Project API ({MP_API_URL}), {len(runs)} run(s), the first on {runs[0]['started_utc'] if runs else '-'}"
        f", the last on {runs[-1]['started_utc'] if runs else '-'} (UTC), client {runs[-1]['client'] if runs else '-'}.",
        f"- Skipped: {len(skipped)} materials " + (f"({', '.join(f'{k}: {v}' for k, v in sorted(reasons.items()))})" if reasons else "")
        + "; listed with their reasons in manifest.json.",
        f"- Licence and credit: {LICENCE}",
        "- Load with `crystaldos.load_dataset(<this folder>)`.",
    ]
    path = folder.out / "CARD.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def add_arguments(parser) -> None:
    """Options of ``crystaldos data mp``."""
    parser.add_argument("--out", required=True, type=Path, help="output folder (a rerun continues it)")
    parser.add_argument("--api-key", default=None, help="Materials Project API key (default: $MP_API_KEY)")
    parser.add_argument("--ids", type=Path, default=None, help="file of material IDs, one per line (default: search)")
    parser.add_argument("--elements", nargs="*", default=None, help="search: materials containing all of these")
    parser.add_argument("--max-sites", type=int, default=None, help="search: at most this many sites per cell")
    parser.add_argument("--limit", type=int, default=None, help="at most this many materials")
    parser.add_argument("--raw", action="store_true", help="store the CompleteDos dicts as they come (larger)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the split")
    parser.set_defaults(func=run)


def run(args) -> None:
    ids = None
    if args.ids is not None:
        if not args.ids.exists():
            raise SystemExit(f"no file {args.ids}")
        ids = [line.split("#")[0].strip() for line in args.ids.read_text().splitlines()]
        ids = [i for i in ids if i]
    try:
        report = download_mp_dos(args.out, api_key=args.api_key, material_ids=ids, elements=args.elements,
                                 max_sites=args.max_sites, limit=args.limit, raw=args.raw, seed=args.seed)
    except MaterialsProjectError as err:
        raise SystemExit(f"crystaldos data mp: {err}") from None
    print(report)


def pack(source: str | Path, out: str | Path) -> Path:
    """Pack a JSON-lines data set (e.g. a ``crystaldos data mp`` folder) into one crystaldos netCDF file.

    Training reads the netCDF file in seconds; 50,000 JSON records take minutes to parse.
    """
    from crystaldos.data.dataset import load_dataset
    from crystaldos.data.store import write_netcdf

    source = Path(source)
    dataset = load_dataset(source)
    card = source / "CARD.md"
    attrs = {"title": f"crystaldos data set packed from {source.name}", "packed_from": str(source)}
    if card.exists():
        attrs["data_card"] = card.read_text()
    return write_netcdf(list(dataset), out, dataset.grid, attrs | {k: v for k, v in dataset.attrs.items() if k != "source_file"})


def add_pack_arguments(parser) -> None:
    """Options of ``crystaldos data pack``."""
    parser.add_argument("source", type=Path, help="a folder or .jsonl[.gz] file of records")
    parser.add_argument("--out", required=True, type=Path, help="the netCDF file to write")
    parser.set_defaults(func=lambda args: print(f"wrote {pack(args.source, args.out)}"))
