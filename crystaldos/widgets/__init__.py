"""Jupyter widgets: 3D crystal views, DOS overlays, trajectory playback and the CBG-vs-CFG dashboard.

>>> from crystaldos.widgets import show, plot_dos, GuidanceDashboard
>>> show(item.structure)                                   # nglview, unit cell, element colours
>>> plot_dos(item.dos)                                     # matplotlib: total and per element
>>> GuidanceDashboard(Sampler.from_pretrained(), load_dataset())

Needs ipywidgets and nglview (installed with crystaldos).
"""

from crystaldos.dos import plot_dos
from crystaldos.widgets.dashboard import GuidanceDashboard
from crystaldos.widgets.dos_view import overlay_dos
from crystaldos.widgets.structure_view import StructureTrajectory, StructureView, TrajectoryPlayer, show, show_trajectory

__all__ = ["GuidanceDashboard", "StructureTrajectory", "StructureView", "TrajectoryPlayer", "overlay_dos", "plot_dos", "show",
           "show_trajectory"]
