"""The attribute classifier's training on a GPU, as a CPU can show it: its initial weights come from
its seed on the CPU alone (no GPU generator reseeded, the caller's state kept), its batches are
augmented wherever the faces are with the numbers of the host path, and the faces go to the GPU a
chunk at a time."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dfc_vae.evaluation import classifier


def test_initial_weights_come_from_the_seed_and_no_gpu_generator_is_touched(monkeypatch):
    for name in ("manual_seed", "manual_seed_all", "set_rng_state", "set_rng_state_all", "seed", "seed_all"):
        monkeypatch.setattr(torch.cuda, name, lambda *a, **k: pytest.fail("a GPU generator was reseeded"))
    torch.random.default_generator.manual_seed(123)
    before = torch.random.get_rng_state()
    a = classifier._initial_model(32, 5, seed=7).state_dict()
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's stream goes on as if untouched
    b = classifier._initial_model(32, 5, seed=7).state_dict()
    torch.random.default_generator.manual_seed(7)
    reference = classifier.AttributeCNN(32, 5).state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]) and torch.equal(a[k], reference[k]), k


def _host_batch(images, idx, g, max_sigma):
    """The batch as it was built on the host before batches were built on the device."""
    x = images[idx].permute(0, 3, 1, 2).float().div_(255)
    flip = torch.rand(len(idx), generator=g) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    sigma = torch.rand(len(idx), generator=g) * max_sigma
    sigma = torch.where(torch.rand(len(idx), generator=g) < 0.3, torch.zeros_like(sigma), sigma)
    return classifier._blur(x, sigma)


@pytest.mark.parametrize("size", [32, 64])
def test_batches_on_the_cpu_are_bit_identical_to_the_host_path(size):
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (50, size, size, 3), dtype=np.uint8))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    order = torch.randperm(50, generator=torch.Generator().manual_seed(1))
    for b in range(3):
        idx = order[b * 16:(b + 1) * 16]
        want = _host_batch(images, idx, g1, size / 32)
        got = classifier._augmented(images[idx], g2, size / 32, torch.device("cpu"))
        assert got.dtype == want.dtype and got.shape == want.shape and torch.equal(got, want)
    assert torch.equal(g1.get_state(), g2.get_state())  # the same draws, in the same order


def test_faces_that_fit_the_gpu_are_uploaded_there_a_chunk_at_a_time(monkeypatch):
    """Shown with the 'GPU' being the CPU: the faces held there are the split's rows, in order."""
    rng = np.random.default_rng(1)
    cache = rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    rows = np.array([3, 5, 8, 13, 21, 34])

    class Split:
        class cache:
            images = cache

        def uint8(self, r):
            return cache[r]

    host = classifier._training_images(Split(), rows, torch.device("cpu"))
    assert torch.equal(host, torch.from_numpy(cache[rows]))
    monkeypatch.setattr(classifier, "fits_on_device", lambda images, count, device: True)
    monkeypatch.setattr(classifier, "upload_rows", lambda images, r, device: ("uploaded", len(r), device))
    assert classifier._training_images(Split(), rows, torch.device("cpu")) == ("uploaded", 6, torch.device("cpu"))


def test_blur_runs_on_the_device_of_the_images():
    x = torch.empty(2, 3, 8, 8, device="meta")  # a device other than the CPU: any tensor made on the CPU fails
    assert classifier._blur(x, torch.empty(2, device="meta")).device.type == "meta"
    x = torch.rand(2, 3, 8, 8)
    y = classifier._blur(x, torch.tensor([0.0, 1.0]))
    assert torch.allclose(y[0], x[0]) and F.mse_loss(y[1], x[1]) > 0
