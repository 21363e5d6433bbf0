"""Would relaxing several samples at once (one batched potential call per step) be faster on a CPU?

    python -m benchmarks.design.batched_potential --sites 12 --n 8 --repeats 3

Times CHGNet's energy, forces and stress for ``--n`` val crystals of ``--sites`` atoms, one call each against one
batched call (``predict_structure(list, batch_size=n)``), on one thread; the first repeat warms up.
"""

from __future__ import annotations

import argparse
import time
import warnings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=12)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    import torch

    import crystaldos
    from crystaldos.relax import _chgnet

    torch.set_num_threads(1)
    structures = [i.structure for i in crystaldos.load_dataset().split("val") if len(i.structure) == args.sites][: args.n]
    model = _chgnet()
    for repeat in range(args.repeats):
        start = time.perf_counter()
        for structure in structures:
            model.predict_structure(structure, task="efs")
        one = time.perf_counter() - start
        start = time.perf_counter()
        model.predict_structure(structures, task="efs", batch_size=len(structures))
        batched = time.perf_counter() - start
        print(f"{'warm-up ' if repeat == 0 else ''}{len(structures)} cells of {args.sites} atoms: one call each {1000 * one:.0f} ms, "
              f"one batched call {1000 * batched:.0f} ms (batched / separate = {batched / one:.2f})", flush=True)


if __name__ == "__main__":
    main()
