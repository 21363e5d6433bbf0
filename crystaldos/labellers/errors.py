"""Why a crystal could not be labelled: one error class per cause, all subclasses of :class:`LabellingError`."""


class LabellingError(ValueError):
    """A structure that cannot be labelled; the message names the reason."""


class UnsupportedElementError(LabellingError):
    """An element outside xTB's parameterisation (Z = 1 ... 86) or a dummy species."""


class DisorderedStructureError(LabellingError):
    """A site with partial occupancy or mixed species."""


class TooCloseAtomsError(LabellingError):
    """Two atoms (or an atom and a periodic image) closer than the sane minimum."""


class SCFConvergenceError(LabellingError):
    """The self-consistent charge iterations did not converge."""


class SymmetryBrokenError(LabellingError):
    """Symmetry-equivalent sites got DOS further apart than the label noise: the label broke the crystal's symmetry
    (GFN2's multipole terms left out, or a symmetry-broken SCF), so it is not the crystal's DOS
    (``crystaldos.labellers.symmetry``)."""


class IllConditionedBasisError(LabellingError):
    """Nearly linearly dependent basis functions (diffuse orbitals in dense cells) push states
    to unphysical energies, e.g. the whole conduction band to thousands of eV."""
