"""Shared fixtures: tiny CelebA-format synthetic roots, made once per test session."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """A tiny official-layout synthetic CelebA (96 faces)."""
    from dfc_vae.data.synth import render_celeba

    return render_celeba(tmp_path_factory.mktemp("synth") / "celeba", n=96, seed=3, layout="official", progress=False)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def tiny_trained_run(tmp_path_factory, synth_root, cache_dir):
    """The directory of a tiny PVAE run (32x32, 2 steps) on `synth_root`: enough to exercise
    everything that needs a trained run, not to judge quality."""
    from dfc_vae.runs.config import TrainConfig
    from dfc_vae.training.loop import train

    cfg = TrainConfig(data=str(synth_root), out=str(tmp_path_factory.mktemp("tinyrun") / "run"), loss="pvae",
                      image_size=32, latent_dim=16, base_channels=8, epochs=1, batch_size=16, max_steps=2,
                      cache_dir=str(cache_dir), workers=1, device="cpu")
    return train(cfg, progress=False)
