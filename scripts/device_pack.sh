#!/usr/bin/env bash
# Pack what a device call needs beyond the tracked tree into build/devpack/ (ignored by git; name it in the call's
# `carry`): the wheels of `make device-wheels`, unpacked and xz-compressed (10 MB where .whl/ is 16 MB: the
# tool sends at most 64 MiB of working tree), and any data files given, xz-compressed.
#
#   make device-wheels && bash scripts/device_pack.sh build/preview_v2_0_61/data.nc
#   device run, carry ["build/devpack"]:  OUT=$OUT DATA=/tmp/devpack/data.nc bash scripts/device_forward_sweep.sh
#
# scripts/device_env.sh (sourced by every device script) unpacks it there: the packages into /tmp/site, each
# data file into /tmp/devpack/<its name>.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-.whl}
[ -d "$WHEELS" ] || { echo "no $WHEELS/: run make device-wheels first" >&2; exit 2; }
PACK=build/devpack
rm -rf "$PACK" && mkdir -p "$PACK/data"
site=$(mktemp -d)
for wheel in "$WHEELS"/*.whl; do unzip -q -o "$wheel" -d "$site"; done  # a wheel unpacked is an installed package
tar -cJf "$PACK/site.tar.xz" -C "$site" .
rm -rf "$site"
for file in "$@"; do
    [ -f "$file" ] || { echo "no such data file: $file" >&2; exit 2; }
    [ ! -e "$PACK/data/$(basename "$file").xz" ] || { echo "two data files named $(basename "$file")" >&2; exit 2; }
    xz -9 -c "$file" > "$PACK/data/$(basename "$file").xz"
done
du -sh "$PACK"/site.tar.xz "$PACK"/data/* 2>/dev/null
# What a call sends besides the pack: tracked files and untracked ones git does not ignore (as scripts/device_slim.sh counts).
tree=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -n 1 | cut -f1)
echo "working tree that travels: $tree bytes; with the pack: $(( tree + $(du -sb "$PACK" | cut -f1) )) (limit 67108864)"
