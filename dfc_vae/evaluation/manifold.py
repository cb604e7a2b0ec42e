"""The learned manifold: faces decoded from a regular grid of latent points (Kingma & Welling 2014, Fig. 4).

With a 2-d latent the grid covers the whole latent space that N(0, I) gives most of its mass to ([-2, 2]^2
holds 91% of it); with more dimensions it is one plane, two chosen dimensions varied and the others at the
prior's mean, 0. The latent is the calibrated one that `model.decode` takes (model/network.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dfc_vae.util.argtypes import require
from dfc_vae.util.errors import UserError
from dfc_vae.util.images import save_figure, to_uint8

MAX_GRID = 64  # points per side: a picture, not a batch that fills memory


@dataclass(frozen=True)
class ManifoldGrid:
    images: np.ndarray  # (n * n, S, S, 3) uint8, row-major: left to right z_a rises, top to bottom z_b falls
    values: np.ndarray  # (n,) the grid's coordinates along each of the two dimensions, ascending
    dims: tuple[int, int]  # the latent dimensions varied (a, b)

    @property
    def n(self) -> int:
        return len(self.values)

    def rows(self) -> list[np.ndarray]:
        """The grid's rows, top (z_b largest) to bottom, each (n, S, S, 3)."""
        return [self.images[i * self.n:(i + 1) * self.n] for i in range(self.n)]


@torch.no_grad()
def manifold_grid(run, n: int = 15, limit: float = 2.0, dims: tuple[int, int] = (0, 1)) -> ManifoldGrid:
    """Decode the n x n latent points z_a, z_b in linspace(-limit, limit, n) (the other dimensions 0)
    of `run` (a LoadedRun) into faces."""
    require(n, "n", "int", min=2, max=MAX_GRID)
    require(limit, "limit", "float", above=0)
    latent = run.config.latent_dim
    a, b = (int(d) for d in dims)
    if latent < 2:
        raise UserError(f"{run.name} has a {latent}-d latent; a manifold grid needs at least 2 dimensions")
    if a == b or not (0 <= a < latent and 0 <= b < latent):
        raise UserError(f"dims {a} {b}: give two different latent dimensions between 0 and {latent - 1}")
    values = np.linspace(-limit, limit, n)
    z = torch.zeros(n, n, latent)
    z[:, :, a] = torch.as_tensor(values, dtype=torch.float32)[None, :]  # columns: z_a rises to the right
    z[:, :, b] = torch.as_tensor(values[::-1].copy(), dtype=torch.float32)[:, None]  # rows: z_b falls downwards
    run.model.eval()
    images = to_uint8(run.model.decode(z.view(n * n, latent).to(run.device)))
    return ManifoldGrid(images, values, (a, b))


def save_manifold(run, out: str | Path, n: int = 15, limit: float = 2.0, dims: tuple[int, int] = (0, 1)) -> Path:
    """`manifold_grid` as a PNG figure with its caption (how the model was made, which plane)."""
    m = manifold_grid(run, n, limit, dims)
    a, b = m.dims
    plane = "the whole 2-d latent" if run.config.latent_dim == 2 else \
        f"dims {a} and {b} of {run.config.latent_dim}, the others 0"
    caption = run.caption + [f"{run.name} step {run.step}: decoded z on a {n} x {n} grid over [-{limit:g}, {limit:g}]^2, "
                             f"{plane}; z_{a} rises to the right, z_{b} upwards"]
    save_figure(out, m.rows(), caption, [f"z_{b} = {v:+.2f}" for v in m.values[::-1]],
                column_labels=[f"{v:+.2f}" for v in m.values], corner=f"z_{a}:")
    return Path(out)
