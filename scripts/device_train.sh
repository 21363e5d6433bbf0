#!/usr/bin/env bash
# Train and release the three networks (CFG denoiser, unconditional denoiser, forward model) in one command,
# written for a lent GPU machine (the `device` tool: PyTorch and torch-geometric are there, pymatgen is not,
# nothing can be downloaded), and runnable anywhere.
#
#   make device-wheels && bash scripts/device_pack.sh [data file]   # here, once: pymatgen & co. in build/devpack/
#   device run, carry ["build/devpack"]:   OUT=$OUT SCALE=4 bash scripts/device_train.sh --set model.hidden=256
#   CPU smoke test (tests/test_train.py):  OUT=/tmp/smoke SCALE=0.0005 DEVICE=cpu bash scripts/device_train.sh
#
# Writes $OUT/cfg.pt, uncond.pt, forward.pt (release checkpoints), $OUT/training.md and training_curves.png
# (5 files: the device tool brings back at most 8). Runs go to $RUNS (default /tmp/crystaldos-runs) and resume
# from there if the same machine is still up. SCALE multiplies the recipe's steps (--recipe format2: 20,000 per denoiser, 12,000 for the forward model); DATA names
# a data file (default: the embedded set); extra arguments go to `python -m crystaldos.train.release`.
#
# Training longer than one session's device time: pass `--set time_limit_minutes=M` (each run stops after M
# minutes; nothing is released until every run has its step count) and KEEP_STATE=1, which also writes $OUT/<kind>.state.pt (the resumable training
# state, 8 files in all). Copy those into a folder here, carry it in the next session's call and name it in
# RESUME_FROM: each run continues from its state towards the same step count.
set -euo pipefail
PY=${PYTHON:-python3}
OUT=${OUT:?set OUT to the folder for the released checkpoints}
SCALE=${SCALE:-1}
DEVICE=${DEVICE:-auto}
RUNS=${RUNS:-/tmp/crystaldos-runs}
cd "$(dirname "$0")/.."
source scripts/device_env.sh
"$PY" -c "import torch; print('torch', torch.__version__, '| cuda:', torch.cuda.is_available() and torch.cuda.get_device_name(0))"
mkdir -p "$OUT"
if [ -n "${RESUME_FROM:-}" ]; then
    for kind in cfg uncond forward; do
        if [ -f "$RESUME_FROM/$kind.state.pt" ]; then
            mkdir -p "$RUNS/$kind" && cp "$RESUME_FROM/$kind.state.pt" "$RUNS/$kind/train_state.pt"
            echo "resuming $kind from $RESUME_FROM/$kind.state.pt"
        fi
    done
fi
start=$(date +%s)
"$PY" -m crystaldos.train.release --runs "$RUNS" --out "$OUT" --docs "$OUT" --scale "$SCALE" --device "$DEVICE" \
    ${DATA:+--data "$DATA"} "$@"
if [ "${KEEP_STATE:-0}" = 1 ]; then
    for kind in cfg uncond forward; do copy_back "$RUNS/$kind/train_state.pt" "$OUT/$kind.state.pt"; done
fi
echo "finished in $(( $(date +%s) - start )) s; in \$OUT: $(ls "$OUT")"
tail -n 3 "$RUNS"/*.log 2>/dev/null || true  # no logs when every model was already released
