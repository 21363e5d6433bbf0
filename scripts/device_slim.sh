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
MARK="# device_slim"
DEFAULT=(data/default-v2/labels data/default-v3/labels docs runs notebooks)
exclude=.git/info/exclude

tree_bytes() { git ls-files -z | du -cb --files0-from=- 2>/dev/null | tail -n 1 | cut -f1; }

case "${1:-}" in
on)
    shift
    paths=("$@")
    [ ${#paths[@]} -gt 0 ] || paths=("${DEFAULT[@]}")
    if grep -q "$MARK" "$exclude" 2>/dev/null; then echo "already on (bash scripts/device_slim.sh off first)" >&2; exit 2; fi
    if ! git diff --cached --quiet; then echo "changes are staged: commit or unstage them first" >&2; exit 2; fi
    for path in "${paths[@]}"; do
        [ -e "$path" ] || { echo "no such path: $path" >&2; exit 2; }
        git rm -r -q --cached -- "$path"
        echo "/$path $MARK" >> "$exclude"
    done
    echo "left out: ${paths[*]}; the tree that travels now: $(tree_bytes) bytes of tracked files (limit 67108864, with carried paths)"
    ;;
off)
    mapfile -t paths < <(grep "$MARK" "$exclude" 2>/dev/null | sed "s| $MARK\$||; s|^/||")
    [ ${#paths[@]} -gt 0 ] || { echo "not on"; exit 0; }
    git reset -q -- "${paths[@]}"
    sed -i "/$MARK\$/d" "$exclude"
    echo "restored: ${paths[*]}"
    git status --short -- "${paths[@]}" | head -5
    ;;
*)
    echo "usage: bash scripts/device_slim.sh on [PATH...] | off" >&2
    exit 2
    ;;
esac
