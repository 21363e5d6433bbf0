"""crystaldos: inverse design of crystals from their atom-level electronic density of states.

Entry points::

    from crystaldos import load_dataset
    ds = load_dataset()                 # the embedded default (GFN2-xTB atom-level DOS)
    item = ds.split("test")[0]
    item.structure                      # pymatgen Structure
    item.dos                            # xarray DataArray, dims ("site", "energy"), eV - E_F
"""

from crystaldos.data.dataset import CrystalDOSDataset, load_dataset
from crystaldos.data.records import CrystalDOS
from crystaldos.dos import DosGrid
from crystaldos.sampler import Sampler

__version__ = "0.1.0"

__all__ = ["load_dataset", "Sampler", "CrystalDOSDataset", "CrystalDOS", "DosGrid", "__version__"]
