#!/usr/bin/env bash
# Train forward-model variants side by side (one process each; on a lent GPU they share the chip) and report
# each one's DOS MAE at t = 0 on its own training split and on the test split, beside the per-element mean and
# median tables (benchmarks/forward_model/baseline.py). The question it answers: does a bigger or longer-trained
# forward model fit its training crystals better than the median table, and does that carry to the test split?
#
#   here:  make device-wheels && bash scripts/device_pack.sh build/preview_v2_0_61/data.nc
#   device run, carry ["build/devpack"]:
#       OUT=$OUT DATA=/tmp/devpack/data.nc STEPS=3500 MINUTES=6 bash scripts/device_forward_sweep.sh
#   CPU smoke test (tests/test_train.py):
#       OUT=/tmp/sweep DATA=... STEPS=4 MINUTES=1 DEVICE=cpu VARIANTS="a|model.hidden=32" bash scripts/device_forward_sweep.sh
#
# VARIANTS: newline-separated "name|key=value ..." (TrainConfig overrides added to the common ones below). Each
# run stops after MINUTES of training (time_limit_minutes) and is released at the step it reached. Writes
# $OUT/forward_sweep.md (the tables), $OUT/forward_sweep_runs.tar (each run's history.csv and log) and, where
# KEEP_WEIGHTS=1, $OUT/<name>.pt for each run whose model.pt is at most 16 MiB. At most 6 variants with weights:
# the device tool brings back 8 files.
set -euo pipefail
PY=${PYTHON:-python3}
OUT=${OUT:?set OUT}
DATA=${DATA:?set DATA to a data file}
STEPS=${STEPS:-16000}
MINUTES=${MINUTES:-6}
DEVICE=${DEVICE:-auto}
RUNS=${RUNS:-/tmp/crystaldos-sweep}
KEEP_WEIGHTS=${KEEP_WEIGHTS:-0}
# The best CPU configuration of docs/research/forward_model.md: L1 from the median table, clean crystals, geometry on edges.
COMMON="forward_loss=l1 model.element_baseline=true model.edge_lengths=true model.lattice_scale_features=true"
VARIANTS=${VARIANTS:-"h128_L4_t0|forward_max_t=0
h256_L6_t0|forward_max_t=0 model.hidden=256 model.n_layers=6
h512_L6_t0|forward_max_t=0 model.hidden=512 model.n_layers=6
h256_L6_t0_lr3e-4|forward_max_t=0 model.hidden=256 model.n_layers=6 lr=3e-4
h256_L6_t200|forward_max_t=200 model.hidden=256 model.n_layers=6"}
cd "$(dirname "$0")/.."
source scripts/device_env.sh
mkdir -p "$OUT" "$RUNS"
start=$(date +%s)
names=()
while IFS='|' read -r name overrides; do
    [ -n "$name" ] || continue
    names+=("$name")
    sets=()
    for kv in $COMMON time_limit_minutes=$MINUTES $overrides; do sets+=(--set "$kv"); done
    "$PY" -m crystaldos.train --kind forward --data "$DATA" --out-dir "$RUNS/$name" --steps "$STEPS" \
        --device "$DEVICE" --num-threads 1 --no-progress "${sets[@]}" > "$RUNS/$name.log" 2>&1 &
done <<< "$VARIANTS"
wait || true
echo "trained ${#names[@]} variants in $(( $(date +%s) - start )) s"
# Each variant's tables in its own file, evaluated side by side on the same device.
for name in "${names[@]}"; do
    (
        echo
        echo "## $name"
        if [ ! -f "$RUNS/$name/model.pt" ]; then echo "(failed: see its log)"; tail -n 5 "$RUNS/$name.log"; exit 0; fi
        "$PY" -c "import torch; t = torch.load('$RUNS/$name/model.pt', weights_only=False)['train']; c = t['config']; \
print(f\"{t['step']} of {c['steps']} steps in {t['wall_time_s']:.0f} s, {t['n_parameters']:,} parameters; {c['model']['hidden']} wide, {c['model']['n_layers']} layers, forward_max_t {c['forward_max_t']}, lr {c['lr']}\")"
        for split in train test; do
            "$PY" benchmarks/forward_model/baseline.py --checkpoint "$RUNS/$name/model.pt" --data "$DATA" --split "$split" --t 0 200 --device "$DEVICE"
        done
    ) > "$RUNS/$name.md" 2>&1 &
done
wait || true
{
    echo "# Forward-model sweep on $DATA ($STEPS steps or $MINUTES min each, device $DEVICE)"
    echo
    echo "Common settings: $COMMON"
    for name in "${names[@]}"; do cat "$RUNS/$name.md"; done
} > "$OUT/forward_sweep.md"
files=()
for name in "${names[@]}"; do
    for f in "$name.log" "$name/history.csv"; do [ -f "$RUNS/$f" ] && files+=("$f"); done
    # Weights as files of their own: the device tool brings back files of at most 16 MiB, so one large model
    # must not take the histories down with it (a 512-wide, 6-layer model.pt is 44 MB).
    if [ "$KEEP_WEIGHTS" = 1 ] && [ -f "$RUNS/$name/model.pt" ]; then copy_back "$RUNS/$name/model.pt" "$OUT/$name.pt"; fi
done
tar -cf "$OUT/forward_sweep_runs.tar" -C "$RUNS" "${files[@]}"
cat "$OUT/forward_sweep.md"
echo "sweep done in $(( $(date +%s) - start )) s"
