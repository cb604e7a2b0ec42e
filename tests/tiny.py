"""The one tiny training configuration the tests share: 32x32 faces, a small latent, batch 16, the
pixel loss with random VGG weights, on the CPU. Each test states only what it changes."""

from __future__ import annotations

TINY = dict(loss="pvae", vgg_weights="random", image_size=32, latent_dim=8, batch_size=16, device="cpu")


def tiny_settings(**changes) -> dict:
    """TINY with `changes` (keyword arguments of TrainConfig)."""
    return {**TINY, **changes}


def tiny_config(**changes):
    """A TrainConfig of TINY with `changes`."""
    from dfc_vae.runs.config import TrainConfig

    return TrainConfig(**tiny_settings(**changes))
