"""Shared fixtures: tiny CelebA-format synthetic roots, made once per test session."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """A tiny official-layout synthetic CelebA (96 faces)."""
    from dfc_vae.synth import render_celeba

    return render_celeba(tmp_path_factory.mktemp("synth") / "celeba", n=96, seed=3, layout="official", progress=False)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")
