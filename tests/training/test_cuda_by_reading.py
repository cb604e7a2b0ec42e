"""CUDA paths a CPU can show with device counts, errors and the environment monkeypatched: each
rank binds a GPU it can see, cuDNN's autotuner follows --deterministic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dfc_vae.training import distributed



@pytest.mark.parametrize("local_rank, visible, gpu", [(3, 1, 0), (3, 8, 3), (5, 2, 1)])
def test_each_rank_binds_a_gpu_it_can_see(monkeypatch, local_rank, visible, gpu):
    bound, made = [], []
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: visible)  # one per rank: SLURM --gpus-per-task=1
    monkeypatch.setattr(torch.cuda, "set_device", bound.append)
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend, **kw: made.append((backend, kw)))
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: local_rank)
    procs, device = distributed.setup(torch.device("cuda"))
    assert device == torch.device("cuda", gpu) and bound == [device]
    assert made == [("nccl", {"device_id": device})] and procs.world == 8


@pytest.mark.parametrize("deterministic", [False, True])
def test_cudnn_autotunes_on_cuda_unless_deterministic_and_the_cpu_is_left_alone(monkeypatch, deterministic):
    from dfc_vae.util.device import autotune_convolutions

    before = torch.backends.cudnn.benchmark
    autotune_convolutions(torch.device("cpu"), not before)
    assert torch.backends.cudnn.benchmark is before
    try:
        autotune_convolutions(torch.device("cuda", 0), deterministic)
        assert torch.backends.cudnn.benchmark is (not deterministic)
    finally:
        torch.backends.cudnn.benchmark = before


@pytest.mark.slow  # trains a model
def test_training_sets_the_autotuner_for_the_device_it_trains_on(synth_root, tmp_path, monkeypatch):
    from tiny import tiny_config

    from dfc_vae.training import loop

    seen = []
    monkeypatch.setattr(loop, "autotune_convolutions", lambda device, deterministic: seen.append((device, deterministic)))
    loop.train(tiny_config(data=str(synth_root), out=str(tmp_path / "run"), cache_dir=str(tmp_path / "c"), epochs=1,
                           max_steps=1, deterministic=True), progress=False)
    assert seen == [(torch.device("cpu"), True)]


class _Recorded:
    """A memory-mapped cache that records how many rows each read takes."""

    def __init__(self, images):
        self.images, self.shape, self.reads = images, images.shape, []

    def __getitem__(self, rows):
        self.reads.append(len(rows))
        return self.images[rows]


def test_the_split_goes_to_the_device_a_chunk_at_a_time_in_the_order_asked():
    from dfc_vae.data.batches import upload_rows

    images = np.random.default_rng(0).integers(0, 256, (50, 4, 4, 3), dtype=np.uint8)
    recorded = _Recorded(images)
    rows = np.array([7, 2, 9, 30, 31, 40, 1])
    out = upload_rows(recorded, rows, torch.device("cpu"), chunk_bytes=3 * 48)
    assert out.dtype == torch.uint8 and torch.equal(out, torch.from_numpy(images[rows]))
    assert recorded.reads == [3, 3, 1]  # never more than a chunk of the split on the host


def test_a_split_held_on_the_device_gives_the_batches_of_the_host_path(monkeypatch):
    from dfc_vae.data import batches

    images = np.random.default_rng(0).integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    recorded = _Recorded(images)
    indices = np.arange(3, 40)
    host = batches.BatchSource(images, indices, 8, torch.device("cpu"), seed=5, flip=True)
    monkeypatch.setattr(batches, "fits_on_device", lambda images, count, device: True)
    monkeypatch.setattr(batches, "UPLOAD_CHUNK_BYTES", 10 * 192)
    held = batches.BatchSource(recorded, indices, 8, torch.device("cpu"), seed=5, flip=True)
    assert held.on_device is not None and max(recorded.reads) == 10 and sum(recorded.reads) == len(indices)
    for x, y in zip(host.batches(1), held.batches(1)):
        assert torch.equal(x, y)


def test_nothing_is_held_on_a_cpu_device():
    from dfc_vae.data.batches import fits_on_device

    assert not fits_on_device(np.zeros((4, 8, 8, 3), np.uint8), 4, torch.device("cpu"))


def test_calibration_faces_come_from_the_held_split_as_the_host_path_reads_them(monkeypatch):
    from dfc_vae.data import batches
    from dfc_vae.runs.split import read_rows

    images = np.random.default_rng(2).integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    indices = np.arange(3, 40, 2)
    host = batches.BatchSource(images, indices, 4, torch.device("cpu"))
    monkeypatch.setattr(batches, "fits_on_device", lambda images, count, device: True)
    held = batches.BatchSource(images, indices, 4, torch.device("cpu"))
    rows = indices[[0, 2, 3, 7, 18]]
    for source in (host, held):
        got = source.floats(rows)
        assert torch.equal(got, read_rows(images, rows)) and got.stride() == read_rows(images, rows).stride()
    with pytest.raises(ValueError, match="outside"):
        held.floats(np.array([4]))
