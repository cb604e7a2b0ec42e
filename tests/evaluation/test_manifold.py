"""The decoded manifold grid (`manifold_grid`, `save_manifold`, `dfc-vae manifold`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tiny import untrained_loaded_run

from dfc_vae import LoadedRun, ModelConfig, TrainConfig, UserError, manifold_grid, save_manifold, to_uint8


def _run(latent_dim: int = 2, vgg_weights: str = "random") -> LoadedRun:
    cfg = TrainConfig(loss="vae123", vgg_weights=vgg_weights, image_size=32, latent_dim=latent_dim, base_channels=4)
    return untrained_loaded_run(cfg, "m2", {"synthetic": True, "vgg_weights": "random"}, step=7)


def test_the_grid_decodes_z_left_to_right_and_bottom_to_top():
    run = _run()
    m = manifold_grid(run, n=5, limit=2.0)
    assert m.images.shape == (25, 32, 32, 3) and m.images.dtype == np.uint8
    np.testing.assert_allclose(m.values, [-2, -1, 0, 1, 2])
    with torch.no_grad():
        corners = to_uint8(run.model.decode(torch.tensor([[-2.0, 2.0], [2.0, 2.0], [-2.0, -2.0], [1.0, 0.0]])))
    np.testing.assert_array_equal(m.images[0], corners[0])  # top left: z_0 = -2, z_1 = +2
    np.testing.assert_array_equal(m.images[4], corners[1])  # top right
    np.testing.assert_array_equal(m.images[20], corners[2])  # bottom left
    np.testing.assert_array_equal(m.rows()[2][3], corners[3])  # middle row, fourth column: z = (1, 0)


def test_more_dimensions_vary_two_and_hold_the_rest_at_zero():
    run = _run(latent_dim=6)
    m = manifold_grid(run, n=3, limit=1.0, dims=(4, 1))
    z = torch.zeros(1, 6)
    z[0, 4], z[0, 1] = 1.0, -1.0  # bottom right
    with torch.no_grad():
        np.testing.assert_array_equal(m.images[8], to_uint8(run.model.decode(z))[0])


@pytest.mark.parametrize("kwargs, words", [({"dims": (1, 1)}, "two different"), ({"dims": (0, 2)}, "between 0 and 1"),
                                           ({"n": 1}, "n 1 is out of range"), ({"limit": 0.0}, "limit 0.0 is out")])
def test_bad_settings_are_user_errors(kwargs, words):
    with pytest.raises(UserError, match=words):
        manifold_grid(_run(), **kwargs)


def test_the_picture_says_how_the_model_was_made(tmp_path):
    out = save_manifold(_run(), tmp_path / "m.png", n=4)
    caption = Image.open(out).text["caption"]
    assert "synthetic faces" in caption and "RANDOM weights" in caption and "the whole 2-d latent" in caption


def test_the_command_limit_matches_the_library():
    from dfc_vae.commands import manifold as command
    from dfc_vae.evaluation.manifold import MAX_GRID

    assert command.MAX_GRID == MAX_GRID


@pytest.mark.slow
def test_dfc_vae_manifold_on_a_trained_run(tiny_trained_run, tmp_path):
    from dfc_vae.cli import main

    out = tmp_path / "grid.png"
    assert main(["manifold", "--run", str(tiny_trained_run), "--out", str(out), "--n", "4", "--dims", "3", "5",
                 "--device", "cpu"]) == 0
    caption = Image.open(out).text["caption"]
    assert "dims 3 and 5 of 16" in caption and "not CelebA" in caption
    assert main(["manifold", "--run", str(tiny_trained_run), "--dims", "3", "16", "--device", "cpu"]) == 2
    assert not (Path(tiny_trained_run) / "manifold.png").exists()
