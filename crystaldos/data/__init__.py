"""Data: labelled crystals, their storage, the embedded default data set and graph conversion."""

from crystaldos.data.dataset import CrystalDOSDataset, default_path, load_dataset
from crystaldos.data.graph import batch_to_structures, collate, data_to_structure, structure_to_data, to_data
from crystaldos.data.records import CrystalDOS
from crystaldos.data.store import DataFileError, read_json_records, write_json_records, write_netcdf

__all__ = [
    "CrystalDOS",
    "CrystalDOSDataset",
    "DataFileError",
    "load_dataset",
    "default_path",
    "read_json_records",
    "write_json_records",
    "write_netcdf",
    "to_data",
    "collate",
    "structure_to_data",
    "data_to_structure",
    "batch_to_structures",
]
