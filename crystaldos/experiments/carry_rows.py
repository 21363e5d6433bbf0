"""Carry rows of a finished reconstruction table into the parts folder of a new run, so that a release which
changes one network reruns only the rows that use it.

    python -m crystaldos.experiments.carry_rows --results docs/research/evaluation_full/results.nc --guidance cfg none \\
        --parts build/cbg_v2/parts

CFG and the unguided sampler never call the forward model while sampling; only the forward-model DOS columns of
their rows (``dos_site_mae``, ``dos_total_mae``, ``dos_total_wasserstein``, ``dos_pred_total``) read it, after
sampling. Those are recomputed here with the parts folder's forward model from the stored generated crystals;
every other column (matches, RMSE, lattice errors, validity, the xTB-recomputed DOS) is copied. The parts folder
must already hold the new run's settings (``crystaldos evaluate --parts`` writes them on its first batch) and the
table must have been made with the same crystals and sampling settings; anything else is refused.
``crystaldos evaluate --guidance cbg cfg none --parts FOLDER`` then assembles the whole table from the parts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import xarray as xr
from pymatgen.core import Structure

from crystaldos.experiments.parts import (
    SCORE_FIELDS,
    SHARED_OPTIONS,
    XTB_FIELDS,
    PartsMismatchError,
    PartStore,
    batch_part,
    items_digest,
    model_hashes,
    part_name,
    xtb_part_name,
)
from crystaldos.metrics import dos_agreement

#: Settings of a table's attributes that must equal the parts folder's (tie_types is compared as a flag: a folder
#: records it only when on).
_SAMPLING = tuple(name for name in SHARED_OPTIONS if name != "tie_types")


def check_compatible(results: xr.Dataset, settings: dict, items, guidances) -> None:
    """Raise PartsMismatchError unless ``results`` was sampled like the run of ``settings`` on ``items``."""
    if list(results.structure.values) != [i.id for i in items]:
        raise PartsMismatchError("the table holds other crystals (or another order) than the run's split")
    if settings.get("items_sha256") != items_digest(items):
        raise PartsMismatchError("the parts folder's crystals or target DOS differ from the split's")
    differs = [k for k in _SAMPLING if _plain(results.attrs.get(k)) != _plain(settings.get(k))]
    if bool(results.attrs.get("tie_types", 0)) != bool(settings.get("tie_types", False)):
        differs.append("tie_types")
    table_strengths = json.loads(results.attrs.get("strengths", "{}"))
    differs += [f"strength of {g}" for g in guidances if table_strengths.get(g) != settings["strengths"].get(g)]
    missing = [g for g in guidances if g not in results.guidance.values]
    if missing:
        raise ValueError(f"the table has no rows of {missing}; it has {list(results.guidance.values)}")
    if differs:
        raise PartsMismatchError(f"the table was sampled with other settings than the parts folder's: {', '.join(differs)}")


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def carry_rows(results: xr.Dataset, items, guidances, store: PartStore, sampler, batch_size: int) -> list[str]:
    """Write the parts of ``guidances``' rows (every t_start) of ``results`` into ``store``, the forward-model DOS
    columns recomputed with ``sampler.predict_dos``; returns the names written. ``batch_size`` must be the run's."""
    written = []
    n = len(items)
    for guidance in guidances:
        for t_start in results.t_start.values:
            row = results.sel(guidance=guidance, t_start=t_start)
            seconds = float(row.sampling_time_s) / max(1, -(-n // batch_size))  # the row's time, spread over its batches
            for b in range(0, n, batch_size):
                chunk = items[b: b + batch_size]
                generated = row.generated.values[b: b + len(chunk)]
                predictions = sampler.predict_dos([Structure.from_dict(json.loads(g)) for g in generated])
                fields = {f: row[f].values[b: b + len(chunk)].astype(float) for f in SCORE_FIELDS}
                for k, (pred, item) in enumerate(zip(predictions, chunk)):
                    for key, value in dos_agreement(pred, item.dos).items():
                        fields[f"dos_{key}"][k] = value
                part = batch_part(chunk, fields, generated, row.generated_formula.values[b: b + len(chunk)], predictions,
                                  seconds, carried_from="an earlier table (crystaldos.experiments.carry_rows)")
                name = part_name(guidance, t_start, b)
                store.save(name, part)
                written.append(name)
            limit = int(results.attrs.get("xtb_limit", 0))
            if limit:  # the xTB labels of the generated crystals do not depend on the forward model
                name = xtb_part_name(limit, guidance, t_start)
                store.save(name, xr.Dataset({f: ("structure", row[f"xtb_{f}"].values) for f in XTB_FIELDS},
                                            coords={"structure": [i.id for i in items]}))
                written.append(name)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True, help="the finished table (results.nc of crystaldos evaluate)")
    parser.add_argument("--guidance", nargs="+", required=True, help="rows to carry: those that never use the changed network")
    parser.add_argument("--parts", required=True, help="the new run's parts folder (holding its settings.json)")
    parser.add_argument("--models", default=None, help="folder with cfg.pt, uncond.pt, forward.pt (default: shipped)")
    parser.add_argument("--data", default=None)
    parser.add_argument("--split", default=None, help="default: the table's")
    args = parser.parse_args(argv)
    from crystaldos.data import load_dataset
    from crystaldos.sampler import Sampler

    folder = Path(args.parts)
    settings_file = folder / PartStore.SETTINGS_FILE
    if not settings_file.exists():
        raise SystemExit(f"{folder} holds no {PartStore.SETTINGS_FILE}: start the new run on it first (crystaldos evaluate --parts)")
    settings = json.loads(settings_file.read_text())
    with xr.open_dataset(args.results) as opened:
        results = opened.load()
    items = list(load_dataset(args.data).split(args.split or results.attrs.get("split", "test")))
    check_compatible(results, settings, items, args.guidance)
    from crystaldos.checkpoint import PRETRAINED_DIR

    if model_hashes(args.models or PRETRAINED_DIR) != settings.get("models"):
        raise SystemExit(f"{folder} was started with other models than {args.models or PRETRAINED_DIR}")
    sampler = Sampler.from_pretrained(args.models, device="cpu")
    written = carry_rows(results, items, args.guidance, PartStore(folder, settings), sampler, int(settings["batch_size"]))
    print(f"{len(written)} parts written to {folder}")


if __name__ == "__main__":
    main()
