#!/usr/bin/env bash
# Label a range of chunks of the format-2 build on a machine with many CPU cores and no network (the lent GPU
# machine has 16 cores; tblite runs on CPUs only). The local build and this script must use the same chunk size.
#
#   make device-wheels && bash scripts/device_pack.sh              # here, once
#   device run, carry ["build/devpack"]:  OUT=$OUT FIRST=100 LAST=139 MINUTES=8 bash scripts/device_label.sh
#   back here:                   tar -xf <files_at>/chunks.tar -C data/default-v2/labels && git add data/default-v2/labels
#
# Labels chunks FIRST ... LAST of $WORK (default data/default-v2) with JOBS processes (default: all cores) for at
# most MINUTES, then packs every finished chunk of the range (chunk_NNNN.nc + .errors.json) into $OUT/chunks.tar.
# A chunk cut off by the time limit is simply not in the tar.
set -euo pipefail
PY=${PYTHON:-python3}
OUT=${OUT:?set OUT}
FIRST=${FIRST:?set FIRST (first chunk index)}
LAST=${LAST:-$FIRST}
MINUTES=${MINUTES:-8}
JOBS=${JOBS:-$(nproc)}
WORK=${WORK:-data/default-v2}
CHUNK_SIZE=${CHUNK_SIZE:-40}
cd "$(dirname "$0")/.."
source scripts/device_env.sh
mkdir -p "$OUT"
start=$(date +%s)
OMP_NUM_THREADS=1 timeout "$((MINUTES * 60))" "$PY" -m crystaldos.data.build --work-dir "$WORK" --stage label \
    --jobs "$JOBS" --chunk-size "$CHUNK_SIZE" --chunks "$FIRST:$LAST" || echo "stopped after $MINUTES min (finished chunks are kept)"
files=()
for k in $(seq "$FIRST" "$LAST"); do
    name=$(printf "chunk_%04d" "$k")
    if [ -f "$WORK/labels/$name.errors.json" ]; then
        files+=("$name.errors.json")
        [ -f "$WORK/labels/$name.nc" ] && files+=("$name.nc")
    fi
done
if [ ${#files[@]} -gt 0 ]; then tar -cf "$OUT/chunks.tar" -C "$WORK/labels" "${files[@]}"; fi
echo "labelled ${#files[@]} files of chunks $FIRST ... $LAST in $(( $(date +%s) - start )) s with $JOBS processes"
