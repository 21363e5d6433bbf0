"""3D views of crystals with nglview: unit cell, element colours, trajectories as nglview frames.

nglview has no pymatgen adaptor without ASE, so a Structure goes in as a P1 CIF
(pymatgen's ``CifWriter``), which NGL parses with its cell; a trajectory is a
``nglview.Trajectory`` whose frames are Cartesian coordinates (Å), so playback
moves atoms inside one view instead of re-creating views.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from pymatgen.core import Structure
from pymatgen.io.cif import CifWriter

with warnings.catch_warnings():  # nglview 3.1 imports pkg_resources, which warns on import
    warnings.simplefilter("ignore")
    import nglview

import ipywidgets as widgets

VIEW_WIDTH = "300px"
VIEW_HEIGHT = "260px"


def structure_to_cif(structure: Structure) -> str:
    """The crystal as a P1 CIF string (all sites listed, cell in Å), the format NGL reads with its unit cell."""
    if not isinstance(structure, Structure):
        raise TypeError(f"expected a pymatgen Structure, got {type(structure).__name__}")
    if not structure.is_ordered:
        raise ValueError("only ordered structures (one element per site) can be shown")
    return str(CifWriter(structure))


class StructureTrajectory(nglview.Structure, nglview.Trajectory):
    """A list of Structures with the same number of sites as an nglview trajectory.

    The topology (elements, colours, cell box) is the last frame's, the final
    crystal; earlier frames contribute only their Cartesian coordinates (Å), since
    NGL trajectories cannot change elements or the cell.
    """

    def __init__(self, structures: Sequence[Structure]) -> None:
        if not structures:
            raise ValueError("a trajectory needs at least one structure")
        sizes = {len(s) for s in structures}
        if len(sizes) != 1:
            raise ValueError(f"all frames must have the same number of sites, got {sorted(sizes)}")
        nglview.Structure.__init__(self)  # the two nglview bases do not chain their __init__
        nglview.Trajectory.__init__(self)
        self.ext = "cif"
        self.structures = list(structures)

    def get_structure_string(self) -> str:
        return structure_to_cif(self.structures[-1])

    def get_coordinates(self, index: int) -> np.ndarray:
        """Cartesian coordinates of frame ``index``, shape (n_sites, 3), Å."""
        return np.asarray(self.structures[index].cart_coords, dtype=np.float32)

    @property
    def n_frames(self) -> int:
        return len(self.structures)


def _style(view: nglview.NGLWidget, component) -> None:
    """Ball-and-stick atoms coloured by element, plus the unit cell."""
    component.add_representation("ball+stick", colorScheme="element", radiusScale=1.6, aspectRatio=2.0)
    component.add_representation("unitcell", color="grey")
    view.center()


def _empty_view(width: str, height: str) -> nglview.NGLWidget:
    view = nglview.NGLWidget()
    # Set the attributes (not a new Layout object): nglview resizes its stage by observing them.
    view.layout.width, view.layout.height, view.layout.min_width = width, height, width
    view.add_class("crystaldos-structure-view")
    return view


class StructureView:
    """One nglview widget that shows one crystal at a time (``set_structure`` swaps it in place).

    Attributes:
        widget: the ``nglview.NGLWidget`` to display.
        structure: the crystal shown, or None.
    """

    def __init__(self, structure: Structure | None = None, width: str = VIEW_WIDTH, height: str = VIEW_HEIGHT) -> None:
        self.widget = _empty_view(width, height)
        self.structure: Structure | None = None
        self._component = None
        if structure is not None:
            self.set_structure(structure)

    def set_structure(self, structure: Structure) -> None:
        """Replace the crystal shown (the view and its camera stay)."""
        text = structure_to_cif(structure)
        if self._component is not None:
            self.widget.remove_component(self._component)
        self._component = self.widget.add_component(nglview.TextStructure(text, ext="cif"), default_representation=False)
        _style(self.widget, self._component)
        self.structure = structure


def show(structure, width: str = "400px", height: str = "350px") -> nglview.NGLWidget:
    """A 3D view of one crystal with its unit cell, atoms coloured by element.

    ``structure``: a pymatgen Structure, an ASE Atoms, or the path of a crystal file (CIF, POSCAR).

    >>> from crystaldos.widgets import show
    >>> show(item.structure)
    """
    from crystaldos.structures import as_structure

    return StructureView(as_structure(structure), width, height).widget


class TrajectoryPlayer:
    """Plays a denoising trajectory (a list of Structures) as nglview frames, with a frame slider.

    Attributes:
        view: the ``nglview.NGLWidget`` holding the trajectory.
        slider: an ``IntSlider`` over frames, linked to ``view.frame``.
        widget: the view, the slider and nglview's play button, ready to display.
    """

    def __init__(self, structures: Sequence[Structure], width: str = "400px", height: str = "350px") -> None:
        self.trajectory = StructureTrajectory(structures)
        self.view = _empty_view(width, height)
        component = self.view.add_trajectory(self.trajectory, default_representation=False)
        _style(self.view, component)
        last = self.trajectory.n_frames - 1
        self.slider = widgets.IntSlider(value=0, min=0, max=last, description="frame", continuous_update=True)
        self.play = widgets.Play(value=0, min=0, max=last, interval=80, description="play")
        # Linked in the kernel (not jslink) so that the frame also follows the slider when set from Python.
        widgets.link((self.slider, "value"), (self.view, "frame"))
        widgets.jslink((self.play, "value"), (self.slider, "value"))
        self.widget = widgets.VBox([self.view, widgets.HBox([self.play, self.slider])])

    @property
    def n_frames(self) -> int:
        return self.trajectory.n_frames


def show_trajectory(structures: Sequence[Structure], width: str = "400px", height: str = "350px") -> widgets.VBox:
    """Animate a kept trajectory (``SampleResult.trajectory``) in one nglview view with a frame slider."""
    return TrajectoryPlayer(structures, width, height).widget
