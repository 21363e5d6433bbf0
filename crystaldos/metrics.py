"""Metrics of generated crystals: reconstruction (CDVAE/DiffCSP), validity and DOS agreement.

Reconstruction follows CDVAE (Xie et al. 2022) and DiffCSP (Jiao et al. 2023):
a generated crystal *matches* its reference when it is valid and pymatgen's
``StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)`` finds a mapping; its
RMSE is the matcher's RMS displacement normalised by ``(V / N)^(1/3)``
(``get_rms_dist``), averaged over matched pairs only. Validity is CDVAE's
structural check: every interatomic distance > 0.5 Å and volume > 0.1 Å³.
Before matching, generated cells must also be plausible (faces >= 1 Å apart,
2-200 Å³ per atom); see :func:`match`.

CDVAE's and DiffCSP's published match rates count a match only when *both* the
generated and the true crystal pass their full validity test (:func:`cdvae_valid`:
the structural check above plus SMACT charge neutrality with Pauling's
electronegativity test, alloys allowed); ``matched_cdvae`` is that protocol, so
numbers can be set beside theirs. Lattice errors (:func:`lattice_errors`) compare
the volume per atom always, and lengths and angles after matching (the generated
lattice mapped onto the reference's by the matcher), or between Niggli-reduced
cells where the crystals do not match.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import xarray as xr
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from crystaldos.dos import mae, total_dos, wasserstein
from crystaldos.geometry import implausible_cell_reason

MATCHER_SETTINGS = {"stol": 0.5, "angle_tol": 10, "ltol": 0.3}


def structure_matcher() -> StructureMatcher:
    """The matcher of CDVAE/DiffCSP's reconstruction benchmark."""
    return StructureMatcher(**MATCHER_SETTINGS)


def min_distance(structure: Structure) -> float:
    """Shortest interatomic distance (Å) including periodic images (an atom's own images for one-atom cells)."""
    if len(structure) == 1:
        return float(min(structure.lattice.abc))
    d = structure.distance_matrix
    return float(d[~np.eye(len(structure), dtype=bool)].min())


def is_valid(structure: Structure, min_dist: float = 0.5, min_volume: float = 0.1) -> bool:
    """CDVAE's structural validity: all distances > ``min_dist`` Å and volume > ``min_volume`` Å³, finite lattice."""
    matrix = structure.lattice.matrix
    if not np.all(np.isfinite(matrix)) or abs(structure.volume) <= min_volume:
        return False
    return min_distance(structure) > min_dist


def is_plausible_cell(structure: Structure) -> bool:
    """A cell an electronic-structure code can treat (see :func:`crystaldos.geometry.implausible_cell_reason`)."""
    return implausible_cell_reason(structure) is None


def match(generated: Structure, reference: Structure, matcher: StructureMatcher | None = None) -> tuple[bool, float]:
    """(matched, normalised RMSE) of a generated crystal against its reference; RMSE is NaN when not matched.

    Crystals failing :func:`is_valid` or :func:`is_plausible_cell` count as not
    matched without calling the matcher: the Niggli reduction of a needle-thin
    generated cell can take minutes, and such a cell cannot be within ltol = 0.3
    of a real one anyway.
    """
    if not (is_valid(generated) and is_plausible_cell(generated)):
        return False, math.nan
    try:
        rms = (matcher or structure_matcher()).get_rms_dist(generated, reference)
    except (ValueError, np.linalg.LinAlgError):  # degenerate cells the matcher cannot reduce
        return False, math.nan
    return (True, float(rms[0])) if rms is not None else (False, math.nan)


def cdvae_valid(structure: Structure) -> bool:
    """CDVAE/DiffCSP's validity: :func:`is_valid` (structure) and SMACT composition validity."""
    from crystaldos.chemistry import smact_valid

    return is_valid(structure) and smact_valid(structure.composition)


def lattice_errors(generated: Structure, reference: Structure, matcher: StructureMatcher | None = None,
                   matched: bool | None = None) -> dict[str, float]:
    """Lattice agreement of a generated crystal with its reference.

    Returns:
        ``volume_error_pct``: signed error of the volume per atom, % of the reference's;
        ``length_error_pct``: mean |error| of a, b, c in % and ``angle_error_deg``: mean |error| of
        alpha, beta, gamma in degrees, after mapping the generated lattice onto the reference's with
        the matcher when the two match (``get_s2_like_s1``), else between the Niggli-reduced cells
        (lengths sorted with their angles). NaN where the generated cell is not plausible.
    """
    volume = (generated.volume / len(generated)) / (reference.volume / len(reference)) - 1.0
    out = {"volume_error_pct": 100.0 * float(volume), "length_error_pct": math.nan, "angle_error_deg": math.nan}
    if not (np.all(np.isfinite(generated.lattice.matrix)) and is_plausible_cell(generated)):
        return out
    lattice, ref_lattice = None, reference.lattice
    if matched is None or matched:
        try:
            mapped = (matcher or structure_matcher()).get_s2_like_s1(reference, generated)
            lattice = mapped.lattice if mapped is not None else None
        except (ValueError, np.linalg.LinAlgError):
            lattice = None
    if lattice is None:
        try:
            lattice, ref_lattice = generated.lattice.get_niggli_reduced_lattice(), reference.lattice.get_niggli_reduced_lattice()
        except (ValueError, np.linalg.LinAlgError):
            return out
    ref_lengths = np.array(ref_lattice.abc)
    out["length_error_pct"] = float(np.mean(np.abs(np.array(lattice.abc) / ref_lengths - 1.0)) * 100.0)
    out["angle_error_deg"] = float(np.mean(np.abs(np.array(lattice.angles) - np.array(ref_lattice.angles))))
    return out


def dos_agreement(generated: xr.DataArray, target: xr.DataArray) -> dict[str, float]:
    """DOS similarity of one crystal: site-by-site and total, states/eV/atom and eV.

    ``site_mae``: mean over sites of the MAE between site curves (sites in order);
    ``total_mae``: MAE of the total DOS per atom; ``total_wasserstein``: earth
    mover's distance (eV) between the area-normalised total DOS curves.
    """
    generated = generated.drop_vars("element", errors="ignore")
    target = target.drop_vars("element", errors="ignore")
    if generated.sizes["site"] != target.sizes["site"] or generated.sizes["energy"] != target.sizes["energy"]:
        raise ValueError(f"DOS shapes differ: {dict(generated.sizes)} vs {dict(target.sizes)}")
    generated = generated.assign_coords(energy=target["energy"].values)
    n = target.sizes["site"]
    gen_total, tgt_total = total_dos(generated) / n, total_dos(target) / n
    return {
        "site_mae": float(mae(generated, target).mean()),
        "total_mae": float(mae(gen_total, tgt_total)),
        "total_wasserstein": float(wasserstein(gen_total, tgt_total)),
    }


@dataclass
class ReconstructionScore:
    """Scores of one generated crystal against its reference and target DOS."""

    valid: bool
    matched: bool
    rmse: float
    valid_cdvae: bool
    reference_valid_cdvae: bool
    matched_cdvae: bool
    volume_error_pct: float
    length_error_pct: float
    angle_error_deg: float
    composition_match: bool
    site_type_accuracy: float
    dos_site_mae: float
    dos_total_mae: float
    dos_total_wasserstein: float

    def to_dict(self) -> dict:
        return asdict(self)


def score(generated: Structure, reference: Structure, dos_generated: xr.DataArray, dos_target: xr.DataArray,
          matcher: StructureMatcher | None = None) -> ReconstructionScore:
    """All reconstruction and DOS metrics of one generated crystal.

    ``dos_generated`` is the DOS of the generated crystal from the forward model
    or from the xTB labeller; ``site_type_accuracy`` compares atom types site by site
    (the DOS of site i conditions atom i).
    """
    matched, rmse = match(generated, reference, matcher)
    agreement = dos_agreement(dos_generated, dos_target)
    same_sites = [a.specie == b.specie for a, b in zip(generated, reference)]
    valid_cdvae, reference_valid = cdvae_valid(generated), cdvae_valid(reference)
    lattice = lattice_errors(generated, reference, matcher, matched)
    return ReconstructionScore(
        valid=is_valid(generated),
        matched=matched,
        rmse=rmse,
        valid_cdvae=valid_cdvae,
        reference_valid_cdvae=reference_valid,
        matched_cdvae=matched and valid_cdvae and reference_valid,
        volume_error_pct=lattice["volume_error_pct"],
        length_error_pct=lattice["length_error_pct"],
        angle_error_deg=lattice["angle_error_deg"],
        composition_match=generated.composition.reduced_formula == reference.composition.reduced_formula,
        site_type_accuracy=float(np.mean(same_sites)) if same_sites else math.nan,
        dos_site_mae=agreement["site_mae"],
        dos_total_mae=agreement["total_mae"],
        dos_total_wasserstein=agreement["total_wasserstein"],
    )


def summarise(scores: list[ReconstructionScore]) -> dict[str, float]:
    """Benchmark summary: match rate (%), mean RMSE over matches, validity (%), composition accuracy (%), mean DOS errors."""
    if not scores:
        raise ValueError("no scores to summarise")
    rows = [s.to_dict() for s in scores]

    def mean(key):
        values = np.array([r[key] for r in rows], dtype=float)
        values = values[np.isfinite(values)]
        return float(values.mean()) if values.size else math.nan

    def mean_abs(key):
        values = np.abs(np.array([r[key] for r in rows], dtype=float))
        values = values[np.isfinite(values)]
        return float(values.mean()) if values.size else math.nan

    return {
        "n": len(rows),
        "match_rate": 100 * mean("matched"),
        "match_rate_cdvae": 100 * mean("matched_cdvae"),
        "volume_error_pct": mean_abs("volume_error_pct"),
        "length_error_pct": mean("length_error_pct"),
        "angle_error_deg": mean("angle_error_deg"),
        "rmse": mean("rmse"),
        "validity": 100 * mean("valid"),
        "composition_accuracy": 100 * mean("composition_match"),
        "site_type_accuracy": 100 * mean("site_type_accuracy"),
        "dos_site_mae": mean("dos_site_mae"),
        "dos_total_mae": mean("dos_total_mae"),
        "dos_total_wasserstein": mean("dos_total_wasserstein"),
    }
