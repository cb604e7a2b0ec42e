"""metrics.csv's rows: the mean per image over the steps since the last row, whatever the size of
their batches, and the row under way kept by a checkpoint."""

from __future__ import annotations

import pytest
import torch

from dfc_vae.training.logs import StepWindow


def _batch(per_image_loss: float, images: int, latent: int = 3, seed: int = 0):
    """A step's batch-mean loss terms (as the loss returns them) and its posterior means."""
    out = {k: torch.tensor(per_image_loss) for k in ("loss", "recon", "kl")}
    return out, torch.randn(images, latent, generator=torch.Generator().manual_seed(seed))


def test_a_row_is_the_mean_per_image_so_a_small_last_batch_makes_no_dip():
    window = StepWindow(3, torch.device("cpu"))
    window.add(*_batch(10.0, images=16))
    window.add(*_batch(20.0, images=4, seed=1))  # an epoch's short last batch
    row = window.read()
    # 16 images at 10 and 4 at 20: 12 per image (the mean of the two batch means, 15, would weigh the 4 as the 16)
    assert row["n"] == 20 and row["loss"] == pytest.approx(12.0) and row["kl"] == pytest.approx(12.0)
    window.add(*_batch(10.0, images=16))
    window.add(*_batch(10.0, images=2, seed=1))
    assert window.read()["loss"] == pytest.approx(10.0)  # the same loss per image: the same row, no dip


def test_a_row_under_way_is_restored_from_its_state():
    straight, before = StepWindow(3, torch.device("cpu")), StepWindow(3, torch.device("cpu"))
    for window in (straight, before):
        window.add(*_batch(7.0, images=8, seed=2))
    after = StepWindow(3, torch.device("cpu"))  # a resumed run's window
    after.load_state(before.state())
    for window in (straight, after):
        window.add(*_batch(3.0, images=8, seed=3))
    assert after.read() == straight.read()
