#!/usr/bin/env bash
# The reconstruction benchmark (`crystaldos evaluate`) on a lent GPU machine, within its minutes and resumable
# across calls and sessions: every finished batch is a part (crystaldos.experiments.parts), and the parts travel as one file.
#
#   make device-wheels && bash scripts/device_pack.sh [data file]   # here, once
#   device run, carry ["build/devpack"] (+ the parts archive of an earlier call, if any):
#       OUT=$OUT MINUTES=8 PARTS_IN=build/eval_parts.tar.xz bash scripts/device_evaluate.sh \
#           --data /tmp/devpack/data.nc --guidance cbg cfg none --batch-size 256
#   back here: cp <files_at>/parts.tar.xz build/eval_parts.tar.xz (commit it if the run spans sessions)
#
# Unpacks PARTS_IN (if given) into a parts folder, runs `crystaldos evaluate --time-limit-minutes $MINUTES` with
# the remaining arguments, and writes $OUT/parts.tar.xz (all parts: those brought and the new ones). Once every
# batch is done it also writes the report: $OUT/report.md, results.nc, summary.png, examples.png. The same
# arguments (and batch size) must be used in every call, on any machine: the parts folder refuses others.
set -euo pipefail
PY=${PYTHON:-python3}
OUT=${OUT:?set OUT to the folder for the results}
MINUTES=${MINUTES:-8}
WORKDIR=${WORKDIR:-/tmp/crystaldos-evaluate}
PARTS_IN=${PARTS_IN:+$(realpath "$PARTS_IN")}
cd "$(dirname "$0")/.."
source scripts/device_env.sh
mkdir -p "$OUT" "$WORKDIR/parts"
if [ -n "$PARTS_IN" ]; then tar -xJf "$PARTS_IN" -C "$WORKDIR/parts"; fi
start=$(date +%s)
"$PY" -m crystaldos.cli evaluate --out "$WORKDIR/report" --parts "$WORKDIR/parts" --time-limit-minutes "$MINUTES" \
    --no-progress "$@" | tee "$WORKDIR/evaluate.log" | tail -n 25
tar -cJf "$WORKDIR/parts.tar.xz" -C "$WORKDIR/parts" .
copy_back "$WORKDIR/parts.tar.xz" "$OUT/parts.tar.xz"
for name in report.md results.nc summary.png examples.png; do
    if [ -f "$WORKDIR/report/$name" ]; then copy_back "$WORKDIR/report/$name" "$OUT/$name"; fi
done
echo "evaluated for $(( $(date +%s) - start )) s: $(ls "$WORKDIR/parts" | grep -c '\.nc$') parts; $(ls "$OUT")"
