"""From pure noise: does drawing k samples and keeping the one whose DOS fits the target best raise the match rate?

    OMP_NUM_THREADS=1 python -m benchmarks.from_noise.best_of_k --split val --limit 128 --k 8 --steps 100

For the first ``limit`` crystals of the split, CFG (the shipped models, the sampler's defaults, ``steps`` strided
reverse steps) draws ``k`` samples per crystal from t_start = 1000 in one seeded call. A sample is judged only by
what a user has without the answer: the shipped forward model's DOS of the sample at t = 0 against the target
(the site-by-site MAE, or the MAE of the total DOS per atom), and the compositions of the other samples. Rules:

* ``first``: sample 0 (what one sample gives; the baseline);
* ``site DOS``: the sample with the lowest site-by-site forward-model MAE;
* ``total DOS``: the lowest total-DOS MAE;
* ``vote + site DOS``: among the samples of the most frequent composition, the lowest site-by-site MAE;
* ``denoising``: the CFG denoiser's own loss on the sample given the target DOS (noised to t = 50 ... 400 with
  fixed noise; lowest kept): a diffusion model scores how well a crystal fits its condition;
* ``denoising gain``: that loss minus the same loss with the condition dropped (the diffusion classifier's
  log p(y | S) up to a constant, lowest kept);
* ``xTB total DOS`` (``--xtb-k N``): the first N samples relabelled with the project's labeller (GFN1-xTB, the
  converged k-mesh, as the data's labels), the lowest MAE of the total DOS per atom against the target kept; a
  sample the labeller refuses (atoms too close, SCF not converged, over ``--xtb-timeout`` s) is never kept, and if
  all are refused the first is. Generate-and-screen with the physics itself: no answer read, 10-40 s per sample;
* ``oracle``: any of the k matches (the ceiling of every rule; it reads the answer).

The samples are cached (``--cache``, JSON) so that rules can be added without sampling again; the xTB labels go to
``<cache>.xtb-I-of-N.json`` (``--xtb-shard I/N`` splits the crystals among N processes; resumable, merged when the
table is printed). Printed per rule and for k' = 1, 2, 4, ... k (the first k' samples): match rate (%), composition right (%), and
McNemar's exact p of the rule against ``first`` crystal by crystal.
"""

from __future__ import annotations

import argparse
import json
import signal
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Structure
from benchmarks.tables import show_table

import crystaldos
from crystaldos import Sampler
from crystaldos.data.graph import structure_to_data
from crystaldos.labellers import LabellingError, label
from crystaldos.metrics import score, structure_matcher
from crystaldos.model import one_hot_types
from crystaldos.paired import format_p, mcnemar_exact

DENOISING_STEPS = (50, 100, 200, 400)


@torch.no_grad()
def denoising_losses(sampler: Sampler, structures: list[Structure], dos: np.ndarray, seed: int = 0) -> np.ndarray:
    """(len(structures), 2): the CFG denoiser's joint loss on each crystal, conditioned on ``dos`` (n_sites,
    n_energies; the same target for all, the sites in order) and with the condition dropped, averaged over
    :data:`DENOISING_STEPS` with the same noise for every crystal of one size (a fair comparison)."""
    from torch_geometric.data import Batch

    batch = Batch.from_data_list([structure_to_data(s) for s in structures])
    n_graphs, diffusion, c = batch.num_graphs, sampler.diffusion, sampler.diffusion.config
    target = torch.as_tensor(dos, dtype=torch.float32).repeat(n_graphs, 1)
    types0 = one_hot_types(batch.atom_types)
    totals = torch.zeros(n_graphs, 2)
    counts = torch.bincount(batch.batch, minlength=n_graphs).float()
    for t_value in DENOISING_STEPS:
        generator = torch.Generator().manual_seed(seed + t_value)
        t = torch.full((n_graphs,), t_value, dtype=torch.long)
        noisy = diffusion.noise(types0, batch.frac_coords, batch.lattice, t, batch.batch, generator)
        scale = noisy.lattice_scale[:, None, None] if noisy.lattice_scale is not None else 1.0
        for column, condition in enumerate((True, False)):
            use = torch.full((n_graphs,), condition)
            out = sampler.cfg_model(noisy.types, noisy.frac_coords, noisy.lattice, t, batch.edge_index, batch.batch, target, use)
            per_node = (c.lambda_types * torch.nn.functional.cross_entropy(out.type_logits, noisy.clean_types, reduction="none")
                        + c.lambda_coords * (out.score_coords - noisy.score_coords).square().mean(-1))
            per_graph = torch.zeros(n_graphs).index_add_(0, batch.batch, per_node) / counts
            per_graph += c.lambda_lattice * ((out.eps_lattice - noisy.eps_lattice) / scale).square().mean((1, 2))
            totals[:, column] += per_graph / len(DENOISING_STEPS)
    return totals.numpy()


class LabelTimeout(BaseException):
    """Labelling ran out of time; a BaseException so that the labeller's SCF retries do not catch it and go on."""


#: What the labeller raises for a sample it will not label (such a sample is never kept).
REFUSED = (LabellingError, LabelTimeout, ValueError, RuntimeError)


def label_with_time_limit(structure: Structure, seconds: int):
    """The project's label of ``structure``, or :class:`LabelTimeout` after ``seconds`` (wall clock, SIGALRM)."""

    def stop(signum, frame):
        raise LabelTimeout(f"labelling took over {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        return label(structure)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def load_xtb_labels(cache: Path) -> dict[str, list[dict]]:
    """The xTB results of every shard file beside ``cache`` (``<cache>.xtb-I-of-N.json``), by crystal index (str)."""
    labels: dict[str, list[dict]] = {}
    for path in sorted(cache.parent.glob(cache.name + ".xtb-*.json")):
        labels |= json.loads(path.read_text())
    return labels


def xtb_scores(samples: list[dict], target, n: int, matcher, timeout: int) -> list[dict]:
    """For the first ``n`` samples: ``{"total_mae", "seconds"}`` of the relabelled sample's total DOS per atom
    against ``target`` (states/eV/atom), or ``{"error"}``. A sample that matches an earlier one (same composition,
    ``matcher``) shares its label: the same crystal has the same DOS whatever cell or site order describes it."""
    from crystaldos.metrics import dos_agreement

    out: list[dict] = []
    structures = [Structure.from_dict(s["structure"]) for s in samples[:n]]
    for j, structure in enumerate(structures):
        twin = next((i for i in range(j) if "error" not in out[i] and structures[i].composition.reduced_formula
                     == structure.composition.reduced_formula and matcher.fit(structures[i], structure)), None)
        if twin is not None:
            out.append({**out[twin], "same_as": twin, "seconds": 0.0})
            continue
        started = time.perf_counter()
        try:
            dos = label_with_time_limit(structure, timeout)
            out.append({"total_mae": dos_agreement(dos, target)["total_mae"],
                        "seconds": time.perf_counter() - started})
        except REFUSED as error:  # refused: never kept
            out.append({"error": f"{type(error).__name__}: {error}"[:200], "seconds": time.perf_counter() - started})
    return out


def choose(samples: list[dict], rule: str) -> int:
    """Index of the sample ``rule`` keeps among ``samples`` (dicts with site_mae, total_mae, formula, loss_cond,
    loss_null)."""
    if rule == "first":
        return 0
    keys = {"site DOS": lambda s: s["site_mae"], "total DOS": lambda s: s["total_mae"],
            "denoising": lambda s: s["loss_cond"], "denoising gain": lambda s: s["loss_cond"] - s["loss_null"]}
    if rule in keys:
        return int(np.argmin([keys[rule](s) for s in samples]))
    if rule == "xTB total DOS":
        labelled = [(s["xtb"]["total_mae"], i) for i, s in enumerate(samples) if "total_mae" in s.get("xtb", {})]
        return min(labelled)[1] if labelled else 0
    if rule == "vote + site DOS":
        votes = Counter(s["formula"] for s in samples)
        top = max(votes.values())
        # ties between compositions: the one whose best sample fits the DOS best
        candidates = [i for i, s in enumerate(samples) if votes[s["formula"]] == top]
        return min(candidates, key=lambda i: samples[i]["site_mae"])
    raise ValueError(f"unknown rule {rule!r}")


RULES = ("first", "site DOS", "total DOS", "vote + site DOS", "denoising", "denoising gain")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="val", choices=["train", "val", "test"])
    parser.add_argument("--limit", type=int, default=128)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--steps", type=int, default=100, help="reverse steps from t = 1000 (strided)")
    parser.add_argument("--guidance", default="cfg")
    parser.add_argument("--crystals-per-batch", type=int, default=16, help="crystals per call (times k samples)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default=None, help="JSON of the samples (default: under ../build, named by the settings)")
    parser.add_argument("--xtb-k", type=int, default=0, help="relabel the first N samples of each crystal with xTB")
    parser.add_argument("--xtb-shard", default="1/1", help="I/N: label crystals I, I+N, ... (1-based) and stop")
    parser.add_argument("--xtb-timeout", type=int, default=60, help="seconds per label before it counts as refused")
    args = parser.parse_args()
    if args.k < 1:
        raise SystemExit(f"--k must be >= 1, got {args.k}")
    if not 0 <= args.xtb_k <= args.k:
        raise SystemExit(f"--xtb-k must be between 0 and --k ({args.k}), got {args.xtb_k}")
    shard, _, n_shards = args.xtb_shard.partition("/")
    if not (shard.isdigit() and n_shards.isdigit() and 1 <= int(shard) <= int(n_shards)):
        raise SystemExit(f"--xtb-shard must be I/N with 1 <= I <= N, got {args.xtb_shard!r}")
    shard, n_shards = int(shard), int(n_shards)
    sampler = Sampler.from_pretrained(device="cpu")
    matcher = structure_matcher()
    items = list(crystaldos.load_dataset().split(args.split)[: args.limit])
    cache = Path(args.cache or f"../build/best_of_k_{args.split}{args.limit}_k{args.k}_s{args.steps}_{args.guidance}_seed{args.seed}.json")
    # a cache of more crystals serves a smaller --limit (its first crystals)
    per_crystal: list[list[dict]] = json.loads(cache.read_text())[: len(items)] if cache.exists() else []
    started = time.perf_counter()
    for b in range(len(per_crystal), len(items), args.crystals_per_batch):
        chunk = items[b: b + args.crystals_per_batch]
        results = sampler.reconstruct([i.structure for i in chunk], [i.dos for i in chunk], guidance=args.guidance,
                                      t_start=1000, steps=args.steps, n_samples=args.k, seed=args.seed + b, progress=False)
        for n, item in enumerate(chunk):
            samples = []
            for r in results[n * args.k: (n + 1) * args.k]:
                s = score(r.structure, item.structure, r.dos_pred, item.dos, matcher)
                samples.append({"matched": s.matched, "composition": s.composition_match, "site_mae": s.dos_site_mae,
                                "total_mae": s.dos_total_mae, "formula": r.structure.composition.reduced_formula,
                                "structure": r.structure.as_dict(verbosity=0)})
            per_crystal.append(samples)
        cache.write_text(json.dumps(per_crystal))
        print(f"{len(per_crystal)}/{len(items)} crystals sampled, {time.perf_counter() - started:.0f} s", flush=True)
    if args.xtb_k:
        labels = load_xtb_labels(cache)
        missing = [i for i in range(len(items)) if len(labels.get(str(i), [])) < args.xtb_k]
        if n_shards > 1 or missing:
            own = cache.parent / f"{cache.name}.xtb-{shard}-of-{n_shards}.json"
            mine = json.loads(own.read_text()) if own.exists() else {}
            for i in missing:
                if i % n_shards != shard - 1:
                    continue  # another shard's: this one labels crystals I, I+N, ...
                mine[str(i)] = xtb_scores(per_crystal[i], items[i].dos, args.xtb_k, matcher, args.xtb_timeout)
                own.write_text(json.dumps(mine))
                print(f"crystal {i}: xTB {[round(x.get('total_mae', -1), 3) for x in mine[str(i)]]}, "
                      f"{sum(x['seconds'] for x in mine[str(i)]):.0f} s", flush=True)
            if n_shards > 1:
                return  # a shard labels; the run with --xtb-shard 1/1 prints the table from all shards
            labels |= mine
        for i, samples in enumerate(per_crystal):
            for s, x in zip(samples, labels[str(i)]):
                s["xtb"] = x
        seconds = [x["seconds"] for i in labels for x in labels[i] if "same_as" not in x]
        refused = sum("error" in x for i in labels for x in labels[i])
        print(f"xTB: {len(seconds)} labels, median {np.median(seconds):.1f} s, {refused} of "
              f"{sum(len(v) for v in labels.values())} samples refused", flush=True)
        labelled = [s for c in per_crystal for s in c[: args.xtb_k]]
        for matched in (True, False):
            group = [s for s in labelled if s["matched"] == matched]
            maes = [s["xtb"]["total_mae"] for s in group if "total_mae" in s["xtb"]]
            print(f"  samples that {'match' if matched else 'do not match'}: {len(group)}, refused "
                  f"{sum('error' in s['xtb'] for s in group)}, median xTB total-DOS MAE "
                  f"{np.median(maes) if maes else float('nan'):.3f} states/eV/atom", flush=True)
    truth_first = []  # does the denoising score rank the true crystal above all k samples?
    for item, samples in zip(items, per_crystal):
        # the true crystal scored with the same noise, last in the list
        losses = denoising_losses(sampler, [Structure.from_dict(s["structure"]) for s in samples] + [item.structure],
                                  item.dos.values, args.seed)
        for s, (cond, null) in zip(samples, losses):
            s["loss_cond"], s["loss_null"] = float(cond), float(null)
        gain = losses[:, 0] - losses[:, 1]
        truth_first.append((losses[-1, 0] < losses[:-1, 0].min(), gain[-1] < gain[:-1].min()))
    print(f"denoising losses: {time.perf_counter() - started:.0f} s; the true crystal ranks above all {args.k} samples "
          f"for {100 * np.mean([a for a, _ in truth_first]):.1f} % of crystals by the denoising loss, "
          f"{100 * np.mean([b for _, b in truth_first]):.1f} % by its gain", flush=True)

    rows = []
    ks = sorted({1, args.k} | {2 ** p for p in range(1, 8) if 2 ** p < args.k})
    for k in ks:
        first = np.array([c[0]["matched"] for c in per_crystal])
        for rule in (*RULES, *(("xTB total DOS",) if k <= args.xtb_k else ()), "oracle"):
            if rule == "oracle":
                matched = np.array([any(s["matched"] for s in c[:k]) for c in per_crystal])
                composition = np.array([any(s["composition"] for s in c[:k]) for c in per_crystal])
            else:
                kept = [c[choose(c[:k], rule)] for c in per_crystal]
                matched = np.array([s["matched"] for s in kept])
                composition = np.array([s["composition"] for s in kept])
            paired = mcnemar_exact(matched, first)
            rows.append({"k": k, "rule": rule, "match (%)": 100 * matched.mean(), "composition (%)": 100 * composition.mean(),
                         "only rule": paired["only_first"], "only first": paired["only_second"],
                         "p vs first": format_p(paired["p"]) if rule != "first" else ""})
            if k == 1:
                break  # every rule keeps the one sample
    show_table(rows, f"{args.guidance} from t_start = 1000, {args.steps} steps, {len(items)} {args.split} crystals, "
                     f"seed {args.seed}")


if __name__ == "__main__":
    main()
