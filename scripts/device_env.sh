# Sourced by scripts/device_*.sh: make pymatgen (and tblite) importable on a machine without network from the
# wheels in .whl/ (make device-wheels), and crystaldos from this checkout. Needs PY set.
if ! "$PY" -c "import pymatgen.core, h5netcdf, tblite, smact" 2>/dev/null; then
    [ -d .whl ] || { echo "pymatgen/tblite missing and no .whl/ to install them from (make device-wheels)" >&2; exit 2; }
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
