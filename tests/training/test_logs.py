"""metrics.csv's rows: the mean per image over the steps since the last row, whatever the size of
their batches, the row under way kept by a checkpoint, and under torchrun the loss, recon, KL and active
units of the global batches of all processes (what one process logs for the same batches), not rank 0's shard."""

from __future__ import annotations

import pytest
import torch

from dfc_vae.training import distributed
from dfc_vae.training.logs import StepWindow
from processes import in_two_processes


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


def _shard(rank: int, step: int):
    """Rank `rank`'s batch-mean loss terms and posterior means at `step`: rank 1's latent varies where rank 0's does not."""
    g = torch.Generator().manual_seed(10 * step + rank)
    mu = torch.randn(4, 3, generator=g)
    mu[:, 0] = 0.2 * (2 * rank - 1)  # constant within each shard: it varies (variance 0.04) only across them
    out = {k: torch.rand((), generator=g) * (1 + rank) for k in ("loss", "recon", "kl")}
    return out, mu


def _read(rank):
    window = StepWindow(3, torch.device("cpu"))
    for step in range(3):
        window.add(*_shard(rank, step))
    return window.read(distributed.Processes(rank, 2))


@pytest.mark.slow  # starts processes
@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="needs the gloo backend")
def test_the_metrics_row_is_that_of_the_global_batches_on_every_rank():
    rows = in_two_processes(_read)
    one = StepWindow(3, torch.device("cpu"))  # one process, the global batches: both shards together
    for step in range(3):
        (a, mu_a), (b, mu_b) = _shard(0, step), _shard(1, step)
        one.add({k: (a[k] + b[k]) / 2 for k in a}, torch.cat([mu_a, mu_b]))
    want = one.read()
    assert rows[0] == rows[1]
    assert rows[0]["n"] == want["n"] == 24 and rows[0]["active_units"] == want["active_units"] == 3
    for k in ("loss", "recon", "kl"):
        assert rows[0][k] == pytest.approx(want[k], rel=1e-6)
    alone = StepWindow(3, torch.device("cpu"))
    for step in range(3):
        alone.add(*_shard(0, step))
    assert alone.read()["active_units"] == 2  # rank 0's shard alone would miss the first unit
