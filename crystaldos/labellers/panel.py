"""Hand-built textbook crystals: the physics panel the labeller is judged on.

Lattice constants are room-temperature experimental values (Å). ``expected`` says whether the
crystal is a metal or an insulator (band gap > 0.5 eV in experiment and in PBE).
"""

from __future__ import annotations

from pymatgen.core import Lattice, Structure


def physics_panel() -> dict[str, tuple[Structure, str]]:
    """name -> (conventional Structure, "metal" | "insulator")."""
    zincblende = lambda a, x, y: Structure.from_spacegroup("F-43m", Lattice.cubic(a), [x, y], [[0, 0, 0], [0.25, 0.25, 0.25]])  # noqa: E731
    rocksalt = lambda a, x, y: Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), [x, y], [[0, 0, 0], [0.5, 0.5, 0.5]])  # noqa: E731
    return {
        "Si": (Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.431), ["Si"], [[0, 0, 0]]), "insulator"),
        "GaAs": (zincblende(5.653, "Ga", "As"), "insulator"),
        "InP": (zincblende(5.869, "In", "P"), "insulator"),
        "MgO": (rocksalt(4.212, "Mg", "O"), "insulator"),
        "LiF": (rocksalt(4.027, "Li", "F"), "insulator"),
        "NaCl": (rocksalt(5.640, "Na", "Cl"), "insulator"),
        "CsCl": (Structure(Lattice.cubic(4.123), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]), "insulator"),
        "ZnO": (
            Structure.from_spacegroup(
                "P6_3mc", Lattice.hexagonal(3.250, 5.207), ["Zn", "O"], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]]
            ),
            "insulator",
        ),
        "TiO2": (
            Structure.from_spacegroup(
                "P4_2/mnm", Lattice.tetragonal(4.594, 2.959), ["Ti", "O"], [[0, 0, 0], [0.3049, 0.3049, 0]]
            ),
            "insulator",
        ),
        "Cu": (Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.615), ["Cu"], [[0, 0, 0]]), "metal"),
        "Al": (Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.050), ["Al"], [[0, 0, 0]]), "metal"),
        "W": (Structure.from_spacegroup("Im-3m", Lattice.cubic(3.165), ["W"], [[0, 0, 0]]), "metal"),
        "Mg": (
            Structure.from_spacegroup("P6_3/mmc", Lattice.hexagonal(3.209, 5.211), ["Mg"], [[1 / 3, 2 / 3, 0.25]]),
            "metal",
        ),
    }


def lattice_panel() -> dict[str, Structure]:
    """Six textbook crystals for the lattice test of the models, as primitive cells: Mo bcc (a = 3.147 Å),
    NaCl rocksalt, Cu fcc, Si diamond, GaAs zincblende and MgO rocksalt (the last five from :func:`physics_panel`)."""
    panel = physics_panel()
    crystals = {
        "Mo bcc": Structure.from_spacegroup("Im-3m", Lattice.cubic(3.147), ["Mo"], [[0, 0, 0]]),
        "NaCl": panel["NaCl"][0],
        "Cu fcc": panel["Cu"][0],
        "Si": panel["Si"][0],
        "GaAs": panel["GaAs"][0],
        "MgO": panel["MgO"][0],
    }
    return {name: s.get_primitive_structure() for name, s in crystals.items()}
