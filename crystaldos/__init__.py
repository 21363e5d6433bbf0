"""crystaldos: inverse design of crystals from their atom-level electronic density of states.

Entry points::

    from crystaldos import load_dataset
    ds = load_dataset()                 # the embedded default (GFN2-xTB atom-level DOS)
    item = ds.split("test")[0]
    item.structure                      # pymatgen Structure
    item.dos                            # xarray DataArray, dims ("site", "energy"), eV - E_F
"""

import importlib

__version__ = "0.1.0"

#: The package's names and the modules that hold them, imported on first use: the sampler needs torch and
#: torch-geometric, which take seconds to import, and a labelling worker or a data command needs neither.
_EXPORTS = {"load_dataset": "crystaldos.data.dataset", "CrystalDOSDataset": "crystaldos.data.dataset",
            "CrystalDOS": "crystaldos.data.records", "DosGrid": "crystaldos.dos", "Sampler": "crystaldos.sampler"}


def lazy_attribute(package: str, exports: dict[str, str], name: str):
    """``package``'s attribute ``name``: one of its ``exports`` (name -> module), or its submodule ``name``."""
    if name in exports:
        return getattr(importlib.import_module(exports[name]), name)
    try:
        return importlib.import_module(f"{package}.{name}")
    except ModuleNotFoundError as error:
        if error.name != f"{package}.{name}":
            raise
        raise AttributeError(f"module {package!r} has no attribute {name!r}") from None


def __getattr__(name: str):
    return lazy_attribute(__name__, _EXPORTS, name)

__all__ = [*_EXPORTS, "__version__"]
