"""Radius graphs over periodic images, for cells too large to connect every pair of atoms.

Each edge is (source atom j, target atom i, integer image shift k) with
|(x_j + k - x_i) L| < cutoff. The fractional difference alone cannot tell the
images of one pair apart (its Fourier features are periodic), so the network
also gets the edge length, computed from the Gram matrix L Lᵀ (rotation-invariant).
"""

from __future__ import annotations

import math

import torch

from crystaldos.geometry import perpendicular_widths

#: Images searched per lattice direction are capped: noisy lattices early in the reverse process can be
#: needle-thin, and an uncapped search would enumerate millions of images (neighbours beyond the cap are dropped).
MAX_IMAGES_PER_AXIS = 4


def image_range(lattice: torch.Tensor, cutoff: float) -> list[int]:
    """Images needed per axis so that every neighbour within ``cutoff`` (Å) is found; lattice (3, 3) rows, Å."""
    widths = perpendicular_widths(lattice.detach().cpu().double().numpy())
    return [min(MAX_IMAGES_PER_AXIS, math.ceil(cutoff / max(float(w), 1e-6))) for w in widths]


@torch.no_grad()
def periodic_radius_graph(
    frac_coords: torch.Tensor, lattice: torch.Tensor, batch: torch.Tensor, cutoff: float, max_neighbours: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Neighbours within ``cutoff`` over periodic images, at most ``max_neighbours`` (nearest) per atom.

    Args:
        frac_coords: (N, 3) fractional coordinates, wrapped to [0, 1).
        lattice: (B, 3, 3) lattice rows, Å.
        batch: (N,) crystal of each atom (sorted, as in a torch-geometric Batch).
        cutoff: Å.

    Returns:
        edge_index (2, E) long (row 0 source j, row 1 target i) and shifts (E, 3) float: the image
        of j is at x_j + shift. An atom's own images are neighbours; the atom itself is not.
    """
    counts = torch.bincount(batch, minlength=lattice.shape[0]).tolist()
    edges, shifts, start = [], [], 0
    for g, n in enumerate(counts):
        if n == 0:
            continue
        x = frac_coords[start : start + n]
        reps = image_range(lattice[g], cutoff)
        grid = torch.stack(torch.meshgrid(*[torch.arange(-r, r + 1, device=x.device) for r in reps], indexing="ij"), -1)
        images = grid.reshape(-1, 3).to(x.dtype)                                     # (K, 3)
        delta = x[None, :, None, :] - x[:, None, None, :] + images[None, None]       # (i, j, K, 3)
        distance = (delta @ lattice[g]).norm(dim=-1)                                  # (i, j, K), Å
        self_pair = torch.eye(n, dtype=torch.bool, device=x.device)[:, :, None] & (images == 0).all(-1)[None, None]
        distance = distance.masked_fill(self_pair | (distance >= cutoff), math.inf).reshape(n, -1)
        k = min(max_neighbours, distance.shape[1])
        nearest, flat = distance.topk(k, dim=1, largest=False)                       # (i, k)
        target, column = torch.nonzero(torch.isfinite(nearest), as_tuple=True)
        flat = flat[target, column]
        source, image = flat // images.shape[0], flat % images.shape[0]
        edges.append(torch.stack([source + start, target + start]))
        shifts.append(images[image])
        start += n
    if not edges:
        return torch.zeros(2, 0, dtype=torch.long, device=frac_coords.device), torch.zeros(0, 3, device=frac_coords.device)
    return torch.cat(edges, dim=1), torch.cat(shifts)
