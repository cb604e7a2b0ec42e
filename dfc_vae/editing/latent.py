"""Operations on latent vectors: the paper's linear interpolation (Fig. 5), spherical interpolation,
and attribute arithmetic z + sum_i alpha_i v_i (Fig. 6).

Latent vectors are float tensors of shape (D,) or (B, D); `alphas` are 1-d sequences of K weights.
"""

from __future__ import annotations

from typing import Sequence

import torch

from dfc_vae.util.errors import UserError


def default_alphas(steps: int = 11) -> torch.Tensor:
    """(steps,) evenly spaced weights 0, ..., 1; the paper's 0, 0.1, ..., 1 for steps = 11."""
    return torch.linspace(0.0, 1.0, steps)


def lerp(z0: torch.Tensor, z1: torch.Tensor, alphas: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """(1 - a) z0 + a z1 for each a (the paper's Fig. 5).

    z0, z1: (D,) or (B, D). Returns (K, D) or (B, K, D): row k is the point at alphas[k], so
    alpha = 0 gives z0 and alpha = 1 gives z1 exactly.
    """
    a = torch.as_tensor(alphas, dtype=z0.dtype, device=z0.device).view(-1, 1)
    return (1 - a) * z0.unsqueeze(-2) + a * z1.unsqueeze(-2)


def slerp(z0: torch.Tensor, z1: torch.Tensor, alphas: Sequence[float] | torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985; White 2016 for generative models): along the great
    circle between the directions of z0 and z1, with the norm interpolated linearly. Paths through
    high-density shells of N(0, I) rather than through its low-norm middle.

    Same shapes as `lerp`; falls back to `lerp` where z0 and z1 are (anti)parallel.
    """
    a = torch.as_tensor(alphas, dtype=z0.dtype, device=z0.device).view(-1, 1)
    n0, n1 = z0.norm(dim=-1, keepdim=True), z1.norm(dim=-1, keepdim=True)
    u0, u1 = z0 / n0.clamp_min(eps), z1 / n1.clamp_min(eps)
    cos = (u0 * u1).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.arccos(cos).unsqueeze(-2)  # (..., 1, 1)
    sin = torch.sin(omega)
    ok = sin.abs() > 1e-4
    safe = torch.where(ok, sin, torch.ones_like(sin))
    w0 = torch.where(ok, torch.sin((1 - a) * omega) / safe, 1 - a)
    w1 = torch.where(ok, torch.sin(a * omega) / safe, a)
    direction = w0 * u0.unsqueeze(-2) + w1 * u1.unsqueeze(-2)
    norm = (1 - a) * n0.unsqueeze(-2) + a * n1.unsqueeze(-2)
    return direction * norm


def interpolate(z0: torch.Tensor, z1: torch.Tensor, alphas, method: str = "linear") -> torch.Tensor:
    """`lerp` (method 'linear', the paper's) or `slerp` (method 'spherical')."""
    if method == "linear":
        return lerp(z0, z1, alphas)
    if method == "spherical":
        return slerp(z0, z1, alphas)
    raise UserError(f"unknown interpolation '{method}'; choose linear or spherical")


def add_attributes(z: torch.Tensor, vectors: torch.Tensor, weights: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """z + sum_i weights[i] * vectors[i] (the paper's vector arithmetic, several attributes at once).

    z: (D,) or (B, D); vectors: (A, D); weights: (A,). Returns the shape of z.
    """
    w = torch.as_tensor(weights, dtype=vectors.dtype, device=vectors.device)
    if w.shape != vectors.shape[:1]:
        raise ValueError(f"{vectors.shape[0]} vectors but {w.numel()} weights")
    return z + (w @ vectors).to(z.dtype)


def walk(z: torch.Tensor, vector: torch.Tensor, alphas) -> torch.Tensor:
    """z + a * vector for each a: (D,) or (B, D) -> (K, D) or (B, K, D) (a row of Fig. 6)."""
    a = torch.as_tensor(alphas, dtype=z.dtype, device=z.device).view(-1, 1)
    return z.unsqueeze(-2) + a * vector.to(z.dtype)
