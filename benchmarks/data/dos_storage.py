"""How to store the DOS: file size against rounding error, on labelled chunks of the rebuild.

    python -m benchmarks.data.dos_storage [--labels data/default-v2/labels]

Every encoding is written with h5netcdf exactly as ``crystaldos.data.store.write_netcdf`` writes the
``dos`` variable (gzip level 6, one HDF5 chunk per 4096 sites) and read back; the error is in
states/eV, to be set beside the labels' own convergence noise (MAE ~0.05, docs/research/labeller.md).
A uint16 encoding must choose a scale: the largest DOS value it can hold is 65534 x scale.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

from benchmarks.tables import show_row, show_table


def encoded_size(values: np.ndarray, encoding: dict, path: Path) -> tuple[int, np.ndarray]:
    """Bytes of a file holding only ``values`` (sites, energies) with ``encoding``, and the values read back."""
    ds = xr.Dataset({"dos": (("site", "energy"), values)})
    chunks = (min(4096, values.shape[0]), values.shape[1])
    ds.to_netcdf(path, engine="h5netcdf", encoding={"dos": {"compression": "gzip", "compression_opts": 6,
                                                            "chunksizes": chunks, **encoding}})
    with xr.open_dataset(path, engine="h5netcdf") as back:
        return path.stat().st_size, back["dos"].values.astype(np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=Path, default=Path("data/default-v2/labels"))
    args = parser.parse_args()
    files = sorted(args.labels.glob("chunk_*.nc"))
    if not files:
        raise SystemExit(f"no chunk_*.nc in {args.labels}")
    datasets = [xr.open_dataset(f, engine="h5netcdf") for f in files]
    dos = np.concatenate([d["dos"].values.astype(np.float32) for d in datasets])
    n_crystals = sum(d.sizes["structure"] for d in datasets)
    print(f"{n_crystals} crystals, {dos.shape[0]} sites x {dos.shape[1]} energies from {len(files)} chunks; "
          f"largest value {dos.max():.2f} states/eV")
    options = {
        "float32": (dos, {}),
        "float32, shuffled": (dos, {"shuffle": True}),
        "float16": (dos.astype(np.float16), {}),
        "float16, shuffled": (dos.astype(np.float16), {"shuffle": True}),
        "uint16 x 2e-4 (max 13.1)": (dos, {"dtype": "uint16", "scale_factor": 2e-4, "_FillValue": 65535, "shuffle": True}),
        "uint16 x 5e-4 (max 32.8)": (dos, {"dtype": "uint16", "scale_factor": 5e-4, "_FillValue": 65535, "shuffle": True}),
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (values, encoding) in options.items():
            size, back = encoded_size(values, encoding, Path(tmp) / "dos.nc")
            error = np.abs(back - dos)
            rows.append({"encoding": name, "kB / crystal": size / n_crystals / 1e3, "mean |error|": error.mean(),
                         "max |error|": error.max(), "max relative (values >= 1)": (error / np.maximum(dos, 1.0)).max()})
            show_row(rows, "%.3g")
    show_table(rows, "DOS storage: size per crystal (DOS only) and rounding error, states/eV", floatfmt=".3g")


if __name__ == "__main__":
    main()
