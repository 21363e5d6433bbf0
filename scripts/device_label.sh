#!/usr/bin/env bash
# Label a range of chunks of a build on a machine with many CPU cores and no network (the lent GPU machine has 16
# cores; tblite runs on CPUs only). The local build and this script must use the same chunk size.
#
#   make device-wheels && bash scripts/device_pack.sh              # here, once (the wheels include CHGNet's)
#   bash scripts/device_slim.sh on                                 # here: the tracked tree is over the 64 MiB a call sends
#   device run, carry ["build/devpack"]:  OUT=$OUT FIRST=100 LAST=139 MINUTES=8 bash scripts/device_label.sh
#   bash scripts/device_slim.sh off
#   back here:                   tar -xf <files_at>/chunks.tar -C data/default-v3/labels   (then commit the chunks)
#
# Relaxes (RELAX=1, the default: the equilibrium build of `make dataset-equilibrium`) and labels chunks FIRST ... LAST
# of $WORK (default data/default-v3) with JOBS processes (default: all cores) for at most MINUTES, then packs every
# finished chunk of the range (chunk_NNNN.nc + .errors.json) into $OUT/chunks.tar. A chunk cut off by the time limit is
# simply not in the tar. WORK=data/default-v2 RELAX=0 labels the format-2 build as it was made.
set -euo pipefail
PY=${PYTHON:-python3}
OUT=${OUT:?set OUT}
FIRST=${FIRST:?set FIRST (first chunk index)}
LAST=${LAST:-$FIRST}
MINUTES=${MINUTES:-8}
JOBS=${JOBS:-$(nproc)}
WORK=${WORK:-data/default-v3}
RELAX=${RELAX:-1}
CHUNK_SIZE=${CHUNK_SIZE:-40}
relax=()
[ "$RELAX" = 1 ] && relax=(--relax)
cd "$(dirname "$0")/.."
source scripts/device_env.sh
mkdir -p "$OUT" "$WORK/labels"
start=$(date +%s)
OMP_NUM_THREADS=1 timeout "$((MINUTES * 60))" "$PY" -m crystaldos.data.build --work-dir "$WORK" --stage label \
    --jobs "$JOBS" --chunk-size "$CHUNK_SIZE" --chunks "$FIRST:$LAST" "${relax[@]}" || echo "stopped after $MINUTES min (finished chunks are kept)"
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
