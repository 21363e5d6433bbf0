#!/usr/bin/env bash
# Leave bulky tracked paths out of a device call: the device tool sends the tracked tree (at most 64 MiB; this
# repository's is over 100 MB), and a path that is untracked and ignored does not travel. `on` untracks the paths
# in the index only (the files stay here, HEAD is unchanged) and ignores them in .git/info/exclude; `off` puts
# both back. Nothing is committed; while it is on, commit only named paths (git commit -- PATH...).
#
#   bash scripts/device_slim.sh on [PATH...]     # default: the paths no device script reads (below)
#   device run ...
#   bash scripts/device_slim.sh off
set -euo pipefail
cd "$(dirname "$0")/.."
BEGIN="# device_slim: begin (bash scripts/device_slim.sh off removes this block)"
END="# device_slim: end"
DEFAULT=(data/default-v2/labels data/default-v3/labels docs runs notebooks)
exclude=.git/info/exclude

# What the device tool sends: tracked files and untracked ones git does not ignore (carried paths come on top).
tree_bytes() { git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -n 1 | cut -f1; }

case "${1:-}" in
on)
    shift
    paths=("$@")
    [ ${#paths[@]} -gt 0 ] || paths=("${DEFAULT[@]}")
    if grep -qF "$BEGIN" "$exclude" 2>/dev/null; then echo "already on (bash scripts/device_slim.sh off first)" >&2; exit 2; fi
    if ! git diff --cached --quiet; then echo "changes are staged: commit or unstage them first" >&2; exit 2; fi
    for path in "${paths[@]}"; do
        [ -e "$path" ] || { echo "no such path: $path" >&2; exit 2; }
    done
    mkdir -p "$(dirname "$exclude")"
    # (a '#' after a pattern is part of it, so the markers take lines of their own)
    { echo "$BEGIN"; for path in "${paths[@]}"; do echo "/${path%/}"; done; echo "$END"; } >> "$exclude"
    for path in "${paths[@]}"; do git rm -r -q --cached -- "$path"; done
    echo "left out: ${paths[*]}; what travels now: $(tree_bytes) bytes (limit 67108864 with the carried paths)"
    ;;
off)
    grep -qF "$BEGIN" "$exclude" 2>/dev/null || { echo "not on"; exit 0; }
    mapfile -t paths < <(awk -v b="$BEGIN" -v e="$END" '$0 == b {on = 1; next} $0 == e {on = 0} on {print substr($0, 2)}' "$exclude")
    git reset -q -- "${paths[@]}"
    awk -v b="$BEGIN" -v e="$END" '$0 == b {skip = 1} !skip {print} $0 == e {skip = 0}' "$exclude" > "$exclude.tmp"
    mv "$exclude.tmp" "$exclude"
    echo "restored: ${paths[*]}"
    git status --short -- "${paths[@]}" | head -5
    ;;
*)
    echo "usage: bash scripts/device_slim.sh on [PATH...] | off" >&2
    exit 2
    ;;
esac
