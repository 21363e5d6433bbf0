"""Data: labelled crystals, their storage, the embedded default data set and graph conversion."""

from crystaldos import lazy_attribute

# Imported on first use: the graph conversion needs torch-geometric (seconds to import), reading data does not.
_EXPORTS = {
    **dict.fromkeys(["CrystalDOSDataset", "default_path", "load_dataset"], "crystaldos.data.dataset"),
    **dict.fromkeys(["batch_to_structures", "collate", "data_to_structure", "structure_to_data", "to_data"],
                    "crystaldos.data.graph"),
    "CrystalDOS": "crystaldos.data.records",
    **dict.fromkeys(["DataFileError", "read_json_records", "write_json_records", "write_netcdf"], "crystaldos.data.store"),
}


def __getattr__(name: str):
    return lazy_attribute(__name__, _EXPORTS, name)

__all__ = list(_EXPORTS)
