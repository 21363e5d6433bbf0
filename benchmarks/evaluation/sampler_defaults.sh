#!/usr/bin/env bash
# Choose the sampler's defaults on the VALIDATION split (docs/research/lattice.md section 13): the CFG model from
# t_start = 200 and 500 (first 128 val crystals) and 1000 (first 64; 128 for the number of strided steps) under
# DiffCSP's sampler (corrector on, DDPM lattice steps) and without the corrector, with DDPM or DDIM lattice steps,
# types free or tied. (CBG against the unguided model: benchmarks/guidance/cbg_variants.py --split val, docs/research/forward_model.md.)
# One setting per folder under docs/research/sampler_defaults/<name>/ (report.md; results.nc and parts stay local); each
# resumes from its parts. Every option is spelled out: the defaults are what it chose.
# Usage: benchmarks/evaluation/sampler_defaults.sh [JOBS] (default 2).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=docs/research/sampler_defaults
JOBS=${1:-2}
run() {  # name, then evaluate's arguments
    local name=$1; shift
    OMP_NUM_THREADS=1 .venv/bin/crystaldos evaluate --split val --seed 0 --no-progress --out "$OUT/$name" "$@" \
        > "$OUT/$name.log" 2>&1 && echo "done $name" || echo "FAILED $name (see $OUT/$name.log)"
}
export -f run; export OUT
mkdir -p "$OUT"
cat <<'LIST' | xargs -P "$JOBS" -L 1 bash -c 'run "$@"' _
cfg200_diffcsp --guidance cfg --t-start 200 --limit 128 --step-lr 1e-5 --lattice-step ddpm --no-tie-types
cfg200_lr0_ddpm --guidance cfg --t-start 200 --limit 128 --step-lr 0 --lattice-step ddpm --no-tie-types
cfg200_lr0_ddim --guidance cfg --t-start 200 --limit 128 --step-lr 0 --lattice-step ddim --no-tie-types
cfg200_lr0_ddpm_tie --guidance cfg --t-start 200 --limit 128 --step-lr 0 --tie-types --lattice-step ddpm
cfg200_lr0_ddim_tie --guidance cfg --t-start 200 --limit 128 --step-lr 0 --lattice-step ddim --tie-types
cfg500_lr0_ddpm_tie --guidance cfg --t-start 500 --limit 128 --step-lr 0 --tie-types --lattice-step ddpm
cfg500_lr0_ddim_tie --guidance cfg --t-start 500 --limit 128 --step-lr 0 --lattice-step ddim --tie-types
cfg1000_diffcsp --guidance cfg --t-start 1000 --limit 64 --step-lr 1e-5 --lattice-step ddpm --no-tie-types
cfg1000_lr0_ddpm --guidance cfg --t-start 1000 --limit 64 --step-lr 0 --lattice-step ddpm --no-tie-types
cfg1000_lr0_ddpm_tie --guidance cfg --t-start 1000 --limit 64 --step-lr 0 --tie-types --lattice-step ddpm
cfg1000_lr0_ddim_tie --guidance cfg --t-start 1000 --limit 64 --step-lr 0 --lattice-step ddim --tie-types
cfg1000_steps50_128 --guidance cfg --t-start 1000 --limit 128 --steps 50 --step-lr 0 --lattice-step ddpm --tie-types
cfg1000_steps100_128 --guidance cfg --t-start 1000 --limit 128 --steps 100 --step-lr 0 --lattice-step ddpm --tie-types
cfg1000_steps200_128 --guidance cfg --t-start 1000 --limit 128 --steps 200 --step-lr 0 --lattice-step ddpm --tie-types
cfg1000_128 --guidance cfg --t-start 1000 --limit 128 --step-lr 0 --lattice-step ddpm --tie-types
LIST
