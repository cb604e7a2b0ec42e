"""The CUDA code path, checked on a CPU where a CPU can show it: checkpoints load to the CPU and
their RNG states restore from there, only the training device's CUDA state is kept, the process
group's backend follows the resolved device, batches are indexed on the device, decisions about
bad batches are taken by all processes together, NaN weights never overwrite a checkpoint,
--compile is refused under torchrun, and bf16 is chosen only where it is native."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dfc_vae.runs import checkpoint
from dfc_vae.training import distributed
from dfc_vae.runs.config import TrainConfig
from dfc_vae.data.batches import BatchSource
from dfc_vae.util.device import resolve_precision
from dfc_vae.util.errors import UserError
from dfc_vae.training.loop import train
from processes import in_two_processes
from tiny import tiny_settings

pytestmark = pytest.mark.slow  # trains models or starts processes

TINY = tiny_settings(log_every=1, checkpoint_every=0)


def test_resume_loads_the_checkpoint_to_the_cpu_and_restores_rng_states_from_any_device(synth_root, tmp_path,
                                                                                       monkeypatch):
    cfg = dict(data=str(synth_root), out=str(tmp_path / "run"), epochs=1, cache_dir=str(tmp_path / "c"), **TINY)
    train(TrainConfig(max_steps=2, **cfg), progress=False)
    import dfc_vae.training.rundir as rundir

    seen = []
    original = rundir.load_checkpoint
    monkeypatch.setattr(rundir, "load_checkpoint", lambda path, map_location="cpu": seen.append(map_location)
                        or original(path, map_location))
    train(TrainConfig(max_steps=3, **cfg), resume=True, progress=False)
    assert seen == ["cpu"]  # load_state_dict places model and optimizer state on the training device
    # set_rng_state takes states whatever device they were mapped to (here: views of the CPU ones)
    state = checkpoint.rng_state()
    checkpoint.set_rng_state({**state, "torch": state["torch"].clone()})
    assert torch.equal(torch.get_rng_state(), state["torch"])


def test_only_the_training_devices_cuda_rng_state_is_saved_and_restored(monkeypatch):
    calls = []
    fake_state = torch.arange(16, dtype=torch.uint8)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": calls.append(("get", device)) or fake_state)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: pytest.fail("saved the state of every GPU"))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device="cuda": calls.append(("set", device, s)))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda s: pytest.fail("restored the state of every GPU"))
    on_cpu = checkpoint.rng_state(torch.device("cpu"))
    assert "cuda" not in on_cpu
    gpu1 = torch.device("cuda", 1)
    state = checkpoint.rng_state(gpu1)
    assert torch.equal(state["cuda"], fake_state) and calls == [("get", gpu1)]
    calls.clear()
    checkpoint.set_rng_state(state, torch.device("cuda", 0))  # resumed on another (or the only) GPU
    assert calls[0][:2] == ("set", torch.device("cuda", 0)) and torch.equal(calls[0][2], fake_state)
    calls.clear()
    checkpoint.set_rng_state({**state, "cuda": [fake_state, fake_state + 1]}, torch.device("cuda", 1))  # older files
    assert torch.equal(calls[0][2], fake_state + 1)
    calls.clear()
    checkpoint.set_rng_state(state, torch.device("cpu"))
    assert calls == []


def test_the_process_group_backend_follows_the_resolved_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert distributed.backend_for(torch.device("cpu")) == "gloo"
    assert distributed.backend_for(torch.device("cuda", 0)) == "nccl"
    made = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend, **kw: made.append(backend))
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 1)
    procs, device = distributed.setup(torch.device("cpu"))  # torchrun ... train --device cpu on a GPU host
    assert made == ["gloo"] and device == torch.device("cpu") and (procs.rank, procs.world) == (1, 2)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.setup(torch.device("cpu"))[0].world == 1 and made == ["gloo"]  # one process: no group


def test_batches_indexed_on_the_device_are_those_of_the_host_path():
    """The GPU path keeps the split on the device and indexes it there with the epoch's order and
    flips moved once; shown here with the 'device' copy on the CPU: the same batches."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    indices = np.arange(3, 40)
    for flip in (False, True):
        host = BatchSource(images, indices, 8, torch.device("cpu"), seed=5, flip=flip, rank=1, world_size=2)
        dev = BatchSource(images, indices, 8, torch.device("cpu"), seed=5, flip=flip, rank=1, world_size=2)
        dev.on_device = torch.from_numpy(np.ascontiguousarray(images[dev.indices]))
        for epoch in (0, 1):
            a, b = list(host.batches(epoch, 1)), list(dev.batches(epoch, 1))
            assert len(a) == len(b) == host.num_batches - 1
            for x, y in zip(a, b):
                assert torch.equal(x, y)


def test_a_decision_about_a_bad_batch_is_one_for_all_processes():
    one = distributed.Processes()
    assert distributed.any_process(torch.tensor(True), one, torch.device("cpu")) is True
    assert distributed.any_process(False, one, torch.device("cpu")) is False


def _agree(rank):
    procs = distributed.Processes(rank, 2)
    return (distributed.any_process(rank == 1, procs, torch.device("cpu")),  # only rank 1's loss is NaN
            distributed.any_process(False, procs, torch.device("cpu")))


@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="needs the gloo backend")
def test_two_processes_agree_on_a_flag_that_holds_on_one_of_them():
    assert in_two_processes(_agree) == {0: (True, False), 1: (True, False)}


def test_nan_weights_never_overwrite_the_last_good_checkpoint(synth_root, tmp_path, monkeypatch):
    """On CUDA the loss is read only at log steps; a save must still refuse non-finite weights."""
    from dfc_vae.training.step import TrainingDiverged
    from dfc_vae.runs.checkpoint import load_checkpoint

    cfg = TrainConfig(data=str(synth_root), out=str(tmp_path / "run"), epochs=1, cache_dir=str(tmp_path / "c"),
                      **{**TINY, "checkpoint_every": 1, "log_every": 100})
    real_step = torch.optim.Adam.step
    count = {"n": 0}

    def step(self, *a, **kw):  # the weights go NaN at the 3rd step, the loss of step 3 was finite
        out = real_step(self, *a, **kw)
        count["n"] += 1
        if count["n"] == 3:
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("nan"))
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    with pytest.raises(TrainingDiverged, match="the weights became NaN/Inf at step 3") as e:
        train(cfg, progress=False)
    assert "intact" in str(e.value)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")
    assert ckpt["step"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_compile_under_torchrun_is_refused_before_anything_starts(synth_root, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda *a, **kw: pytest.fail("made a process group"))
    with pytest.raises(UserError, match="--compile with several processes"):
        train(TrainConfig(data=str(synth_root), out=str(tmp_path / "run"), compile=True, **TINY), progress=False)
    assert not (tmp_path / "run").exists()


def test_precision_auto_is_bf16_only_on_gpus_that_compute_it_natively(monkeypatch):
    asked = []

    def bf16_supported(including_emulation=True):
        asked.append(including_emulation)
        return including_emulation  # a pre-Ampere GPU: bf16 emulated only

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", bf16_supported)
    assert resolve_precision("auto", torch.device("cuda")) == "fp32" and asked == [False]
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)  # Ampere and later
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("fp32", torch.device("cuda")) == "fp32"
