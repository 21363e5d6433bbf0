"""DOS overlays: several atom-level DOS of one crystal on one axis, total or one site.

``plot_dos`` (one DOS, total and per element) lives in :mod:`crystaldos.dos`
and is re-exported by :mod:`crystaldos.widgets`; ``overlay_dos`` compares curves
(target vs CBG vs CFG, forward model vs xTB).
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import matplotlib
import numpy as np
import xarray as xr

from crystaldos.dos import total_dos

# Line styles per curve label prefix, so the same guidance keeps its colour across plots.
COLOURS = {"target": "0.25", "edited target": "black", "CBG": "tab:blue", "CFG": "tab:orange", "none": "tab:green"}


def _colour(label: str) -> str | None:
    for prefix, colour in COLOURS.items():
        if label.startswith(prefix):
            return colour
    return None


def overlay_dos(
    curves: Mapping[str, xr.DataArray],
    site: int | None = None,
    ax: matplotlib.axes.Axes | None = None,
    title: str | None = None,
) -> matplotlib.axes.Axes:
    """Overlay atom-level DOS curves of one crystal.

    Args:
        curves: label -> DOS with dims (site, energy), states/eV per atom, energy in eV - E_F.
            Labels starting with "target", "CBG", "CFG" get fixed colours; "xTB" in a label draws dashed.
        site: plot this site's curve; None plots the total DOS per atom (sum over sites / n_sites).
        ax: axes to draw on (a new figure if None).

    Returns:
        The matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    if not curves:
        raise ValueError("no DOS curves to plot")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    for label, dos in curves.items():
        if dos.dims != ("site", "energy"):
            raise ValueError(f"{label}: DOS must have dims ('site', 'energy'), got {dos.dims}")
        n_sites = dos.sizes["site"]
        if site is None:
            values = total_dos(dos).values / n_sites
        elif 0 <= site < n_sites:
            values = dos.isel(site=site).values
        else:
            raise IndexError(f"{label}: site {site} out of range for {n_sites} sites")
        style = {"ls": "--"} if "xTB" in label else {}
        if label.startswith("target"):
            ax.fill_between(dos["energy"].values, values, color="0.85", label=label)
        else:
            ax.plot(dos["energy"].values, values, lw=1.4, color=_colour(label), label=label, **style)
    ax.axvline(0.0, color="0.6", lw=0.8, ls=":")
    ax.set_xlabel("E - E$_F$ (eV)")
    ax.set_ylabel("DOS (states/eV/atom)" if site is None else "site DOS (states/eV)")
    if title:
        ax.set_title(title, fontsize="medium")
    ax.legend(fontsize="small", frameon=False)
    return ax


def figure_png(fig: matplotlib.figure.Figure, dpi: int = 90) -> bytes:
    """Render a figure to PNG bytes and close it (for an ``ipywidgets.Image``)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


TOTAL = -1  # site-selector value for the total DOS (a Dropdown cannot select None)


def site_labels(dos: xr.DataArray) -> list[tuple[str, int]]:
    """Dropdown options for a site selector: ("total (per atom)", TOTAL), ("site 0: Na", 0), ..."""
    elements = dos["element"].values if "element" in dos.coords else np.full(dos.sizes["site"], "?")
    return [("total (per atom)", TOTAL)] + [(f"site {i}: {el}", i) for i, el in enumerate(elements)]
