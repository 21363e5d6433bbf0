# Sourced by scripts/device_*.sh: make pymatgen (and tblite) importable on a machine without network, from
# build/devpack/ (scripts/device_pack.sh) or the wheels in .whl/ (make device-wheels), unpack the data files of the
# pack into $DEVPACK_DATA (default /tmp/devpack), and make crystaldos importable from this checkout. Needs PY set.
# Several device scripts may start at once: the unpacking happens once, under a lock.
DEVPACK_DATA=${DEVPACK_DATA:-/tmp/devpack}
SITE=${DEVICE_SITE:-/tmp/site}
(
    flock 9
    if ! PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH} "$PY" -c "import pymatgen.core, h5netcdf, tblite, smact" 2>/dev/null; then
        mkdir -p "$SITE"
        if [ -f build/devpack/site.tar.xz ]; then
            tar -xJf build/devpack/site.tar.xz -C "$SITE"
        elif [ -d .whl ]; then
            "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl
        else
            echo "pymatgen/tblite missing and neither build/devpack/ nor .whl/ to install them from (scripts/device_pack.sh)" >&2
            exit 2
        fi
    fi
    mkdir -p "$DEVPACK_DATA"
    for packed in build/devpack/data/*.xz; do
        [ -f "$packed" ] || continue
        target="$DEVPACK_DATA/$(basename "$packed" .xz)"
        [ -f "$target" ] || { xz -dc "$packed" > "$target.tmp" && mv "$target.tmp" "$target"; }
    done
) 9> "${TMPDIR:-/tmp}/crystaldos-device-env.lock" || exit 2
export PYTHONPATH=$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1

# copy_back SRC DEST: copy a file into $OUT unless it is over the 16 MiB a file may have to come back from the
# device tool (so that one large file does not cost the call's other results).
copy_back() {
    if [ "$(stat -c %s "$1")" -le $((16 * 1024 * 1024)) ]; then cp "$1" "$2"
    else echo "not kept: $1 is over the 16 MiB a file may have to come back"; fi
}
