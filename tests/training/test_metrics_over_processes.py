"""Under torchrun, metrics.csv's loss, recon, KL and active units are those of the global batches of
all processes (what one process logs for the same batches), not rank 0's shard."""

from __future__ import annotations

import pytest
import torch

from dfc_vae.training import distributed
from dfc_vae.training.logs import StepWindow
from processes import in_two_processes

pytestmark = pytest.mark.slow  # starts processes


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
