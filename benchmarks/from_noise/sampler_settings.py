"""Which sampler settings reconstruct crystals from pure noise? CFG from t_start = 1000 under variants.

    OMP_NUM_THREADS=1 python -m benchmarks.from_noise.sampler_settings --split val --limit 128 \\
        --variant steps=100 --variant steps=100,lattice=hybrid --variant steps=1000,lattice=hybrid

Each ``--variant`` is comma-separated ``key=value``: ``steps`` (reverse steps, default 1000), ``lattice``
(``ddpm``, ``ddim`` or ``hybrid``: DDPM lattice steps above ``crystaldos.sampler.HYBRID_DDIM_MAX_T``, DDIM from there down), ``strength``
(CFG ω, default 1), ``spacing`` (``logsnr`` or ``uniform``), ``guidance`` (default cfg). For the first ``limit``
crystals of the split (val by default: settings are chosen there), one sample each, seed 0, shipped models and
the sampler's defaults otherwise: match rate (%), composition (%), site-type accuracy (%), median |volume error| (%),
volume within 5 % (%), and the crystals matched, so that two variants can be compared crystal by crystal
(McNemar's exact p against the first variant).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from benchmarks.tables import show_row, show_table

import crystaldos
from crystaldos import Sampler
from crystaldos.metrics import score
from crystaldos.paired import format_p, mcnemar_exact


def parse_variant(text: str) -> dict:
    """``"steps=100,lattice=hybrid"`` → the variant's name and its keyword arguments of ``reconstruct``."""
    options = {"steps": 1000, "lattice": "ddpm", "strength": 1.0, "spacing": "logsnr", "guidance": "cfg"}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        if key not in options:
            raise ValueError(f"unknown variant key {key!r} in {text!r}; known: {sorted(options)}")
        options[key] = value
    return {"name": text, "steps": int(options["steps"]), "lattice_step": options["lattice"],
            "strength": float(options["strength"]), "spacing": options["spacing"], "guidance": options["guidance"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="val", choices=["train", "val", "test"])
    parser.add_argument("--limit", type=int, default=128)
    parser.add_argument("--offset", type=int, default=0, help="skip the split's first N crystals")
    parser.add_argument("--variant", action="append", required=True)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    variants = [parse_variant(v) for v in args.variant]
    sampler = Sampler.from_pretrained(device="cpu")
    items = list(crystaldos.load_dataset().split(args.split)[args.offset: args.offset + args.limit])
    rows, matched_first = [], None
    for v in variants:
        start = time.perf_counter()
        scores = []
        for b in range(0, len(items), args.batch_size):
            chunk = items[b: b + args.batch_size]
            results = sampler.reconstruct([i.structure for i in chunk], [i.dos for i in chunk], guidance=v["guidance"],
                                          strength=v["strength"], t_start=1000, steps=v["steps"], seed=args.seed + b,
                                          progress=False, spacing=v["spacing"], lattice_step=v["lattice_step"])
            scores += [score(r.structure, i.structure, r.dos_pred, i.dos) for r, i in zip(results, chunk)]
        seconds = (time.perf_counter() - start) / len(items)
        matched = np.array([s.matched for s in scores])
        dv = np.array([abs(s.volume_error_pct) for s in scores])
        row = {"variant": v["name"], "match (%)": 100 * matched.mean(),
               "composition (%)": 100 * np.mean([s.composition_match for s in scores]),
               "site types (%)": 100 * np.mean([s.site_type_accuracy for s in scores]),
               "median |dV| (%)": float(np.nanmedian(dv)), "V within 5 % (%)": 100 * float(np.mean(dv < 5)),
               "s / crystal": seconds}
        if matched_first is None:
            matched_first = matched
            row["only this / only first"], row["p"] = "", ""
        else:
            test = mcnemar_exact(matched, matched_first)
            row["only this / only first"], row["p"] = f"{test['only_first']} / {test['only_second']}", format_p(test["p"])
        rows.append(row)
        show_row(rows, "%.1f")
        print("matched:", " ".join(str(args.offset + i) for i in np.flatnonzero(matched)), flush=True)
    show_table(rows, f"CFG-model sampling from t_start = 1000: {len(items)} {args.split} crystals from #{args.offset}, one sample each, "
                     f"seed {args.seed}, {torch.get_num_threads()} thread(s)", ".1f")


if __name__ == "__main__":
    main()
