"""How long does ``Sampler.design`` take for one target, and where does the time go?

    python -m benchmarks.design.cost --split val --sites 12 --k 8 --jobs 2

Takes the first crystal of the split with ``--sites`` atoms, designs ``--k`` candidates with ``--jobs`` worker
processes (the pool started beforehand, as in a session that has designed before; this process samples with torch's
own thread count, as a notebook does, while the workers wait) and prints the wall time of each stage; then relaxes and labels the same samples one at a time in this process to split that stage into relaxing
and labelling (seconds per sample; without the refinement to 0.05 eV/Å). Run it on otherwise idle cores.
"""

from __future__ import annotations

import argparse
import time
import warnings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", default="val")
    parser.add_argument("--sites", type=int, default=12)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retry", action="store_true", help="relax failed samples again from their expanded cell")
    parser.add_argument("--cold", action="store_true",
                        help="do not start the pool beforehand: a session's first design (its workers load while it samples)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of this process while it samples (default: torch's own, as a notebook gets)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    import numpy as np
    import torch

    import crystaldos
    from crystaldos import Sampler
    from crystaldos.design import DesignError, design_relaxer, relax_sample, screen, shared_pool
    from crystaldos.labellers import LabellingError, XTBLabeller
    from crystaldos.relax import RelaxationError, Relaxer

    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = crystaldos.load_dataset()
    item = next(i for i in dataset.split(args.split) if len(i.structure) == args.sites)
    sampler = Sampler.from_pretrained(device="cpu")
    labeller = XTBLabeller.for_dataset(dataset.attrs)
    if args.jobs > 1 and not args.cold:  # workers started and warmed (CHGNet and tblite loaded) before the clock runs
        pool = shared_pool(args.jobs)
        for future in [pool.submit(Relaxer().relax, item.structure) for _ in range(args.jobs)]:
            future.result()
    print(f"target: {item.id} {item.formula} ({len(item.structure)} sites), k = {args.k}, {args.jobs} worker processes, "
          f"sampling on {torch.get_num_threads()} threads{', with the retry' if args.retry else ''}"
          f"{', pool started by design (cold)' if args.cold else ''}")
    start = time.perf_counter()
    try:
        result = sampler.design(item.dos, n_samples=args.k, seed=args.seed, progress=False, jobs=args.jobs, labeller=labeller,
                                retry=args.retry)
        timings, kept, dropped = result.timings, len(result), len(result.dropped)
    except DesignError as error:
        timings, kept, dropped = {"total": time.perf_counter() - start}, 0, len(error.dropped)
    print(" | ".join(f"{stage} {seconds:.1f} s" for stage, seconds in timings.items()) + f" | kept {kept}, dropped {dropped}")

    samples = sampler.generate(len(item.structure), item.dos, n_samples=args.k, seed=args.seed, progress=False)
    torch.set_num_threads(1)  # relaxing and labelling one at a time, as one pool worker does
    relaxer = design_relaxer()
    relax_s, label_s, lines = [], [], []
    for index, sample in enumerate(samples):
        if screen(sample.structure):
            lines.append(f"  sample {index}: screened out")
            continue
        began = time.perf_counter()
        try:
            relaxed = relax_sample(relaxer, sample.structure, args.retry)  # as design, but without the refinement
        except RelaxationError as error:
            relax_s.append(time.perf_counter() - began)
            lines.append(f"  sample {index}: relax {relax_s[-1]:.1f} s, dropped: {str(error)[:100]}")
            continue
        relax_s.append(time.perf_counter() - began)
        began = time.perf_counter()
        try:
            labeller.label(relaxed.structure)
            outcome = "kept"
        except LabellingError as error:
            outcome = f"dropped: {str(error)[:80]}"
        label_s.append(time.perf_counter() - began)
        lines.append(f"  sample {index}: relax {relax_s[-1]:.1f} s ({relaxed.steps} steps), label {label_s[-1]:.1f} s, {outcome}")
    print(f"one at a time: relax {np.sum(relax_s):.1f} s over {len(relax_s)} samples (median {np.median(relax_s):.1f} s), "
          f"label {np.sum(label_s):.1f} s over {len(label_s)} (median {np.median(label_s) if label_s else float('nan'):.1f} s)")
    print("\n".join(lines))

if __name__ == "__main__":
    main()
