"""Shared fixtures: a tiny CelebA-format synthetic root, its cache folder and a tiny trained run,
made once per test session; and the `slow` marker for tests that train or start processes
(`python -m pytest -q -m "not slow"` is the fast tier)."""

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
    from tiny import tiny_config

    from dfc_vae.training.loop import train

    cfg = tiny_config(data=str(synth_root), out=str(tmp_path_factory.mktemp("tinyrun") / "run"), vgg_weights="imagenet",
                      latent_dim=16, base_channels=8, epochs=1, max_steps=2, cache_dir=str(cache_dir), workers=1)
    return train(cfg, progress=False)


# Fixtures that train a model (each name is unique in the suite): the tests that use them, directly or through
# another fixture, are marked slow wherever they are. A test that trains or starts processes itself carries the mark.
SLOW_FIXTURES = {
    "tiny_trained_run",
    "world", "trained_world",  # evaluation/test_evaluate.py: runs trained for 30 and 600 steps, evaluated
    "two_runs",  # training/test_curves.py: two runs of two epochs
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
