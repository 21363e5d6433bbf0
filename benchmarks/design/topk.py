"""Does ranking relaxed, relabelled samples by their DOS pick the right crystal? Top-1 of k against the first sample
and the oracle of k, for each ranking distance.

For each of the first ``--limit`` crystals of a split: k samples from pure noise (``Sampler.generate``, CFG, the
sampler's defaults), every one screened, relaxed and relabelled as ``Sampler.design`` does; a sample counts as right
when its relaxed crystal matches the target (StructureMatcher 0.5 / 10° / 0.3, volumes scaled). Per crystal the
samples are saved (resumable) in ``--out``; the table is printed and written beside them.

    python -m benchmarks.design.topk --split val --limit 32 --k 8 --out docs/research/design_val
    python -m benchmarks.design.topk --data build/preview.nc --cfg build/run/model.pt --split test   # another data set's
        # crystals, designed with a CFG checkpoint trained on it (relabelled with that data set's labeller)
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=32)
    parser.add_argument("--k", type=int, default=8, help="samples per crystal (the table gives every power of 2 up to it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("docs/research/design_val"))
    parser.add_argument("--retry", action="store_true", help="relax failed samples again from their expanded cell")
    parser.add_argument("--max-steps", type=int, default=None, help="relaxation step cap (default: design's)")
    parser.add_argument("--data", type=Path, default=None, help="data file of the targets (default: the embedded set)")
    parser.add_argument("--cfg", type=Path, default=None,
                        help="a CFG denoiser's checkpoint to design with (default: the shipped models)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    import pandas as pd
    import torch

    import crystaldos
    from crystaldos import Sampler
    from crystaldos.checkpoint import PRETRAINED_DIR
    from crystaldos.design import design_relaxer
    from crystaldos.experiments.design_rows import TABLE_KS, run_design_rows, summarise
    from crystaldos.labellers import XTBLabeller

    torch.set_num_threads(1)
    dataset = crystaldos.load_dataset(args.data)
    items = dataset.split(args.split)[: args.limit]
    if args.cfg is None:
        sampler = Sampler.from_pretrained(device="cpu")
    else:  # design samples with CFG alone; the shipped forward model only fills the sampler's slot
        sampler = Sampler.from_checkpoints(args.cfg, PRETRAINED_DIR / "forward.pt", device="cpu")
    relaxer = design_relaxer(**({} if args.max_steps is None else {"max_steps": args.max_steps}))
    labeller = XTBLabeller.for_dataset(dataset.attrs)
    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / f"samples_k{args.k}_seed{args.seed}.jsonl"
    results = run_design_rows(sampler, list(items), args.k, args.seed, store, relaxer, labeller, args.jobs,
                              retry=args.retry)
    ks = [k for k in TABLE_KS if k <= args.k]
    table = pd.DataFrame(summarise(results, ks)).set_index("k")
    seconds = np.array([sum(r["seconds"].values()) for r in results])
    source = "" if args.data is None else f" of {args.data}, designed with {args.cfg or 'the shipped models'}"
    text = (f"{args.split} split{source}, first {len(results)} crystals, k = {args.k} samples from noise each (CFG, seed {args.seed}), "
            f"relaxed with {relaxer.describe()['relax_model']} (fmax {relaxer.fmax} eV/Å, at most {relaxer.max_steps} steps"
            f"{', failures retried from the expanded cell' if args.retry else ''}) and relabelled; match = StructureMatcher(0.5, 10, 0.3) of the "
            f"relaxed candidate against the data set's crystal.\n\n{table.to_markdown(floatfmt='.1f')}\n\n"
            f"Cost per crystal (k = {args.k}, {args.jobs} worker processes): median {np.median(seconds):.0f} s, mean "
            f"{seconds.mean():.0f} s (sampling {np.mean([r['seconds']['sample'] for r in results]):.0f} s, relax and label "
            f"{np.mean([r['seconds']['relax and label'] for r in results]):.0f} s).\n")
    print(text)
    (args.out / f"table_k{args.k}_seed{args.seed}.md").write_text(text)


if __name__ == "__main__":
    main()
