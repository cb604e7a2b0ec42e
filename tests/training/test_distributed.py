"""Training in several processes: the process group's backend follows the resolved device, each rank binds a
GPU it can see (shown on a CPU with CUDA monkeypatched), decisions about bad batches are taken by all processes
together, --compile is refused under torchrun, and `torchrun -m dfc_vae train` on CPU (gloo, 2 processes) trains
the same model as one process with the same global batch, writes one run directory, and resumes."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from dfc_vae.model.network import DFCVAE, ModelConfig
from dfc_vae.runs.checkpoint import load_checkpoint
from dfc_vae.runs.config import TrainConfig
from dfc_vae.training import distributed
from dfc_vae.training.loop import train
from dfc_vae.util.errors import UserError
from dfc_vae.util.launch import launch_env, torchrun_command
from processes import in_two_processes
from tiny import tiny_settings

needs_gloo = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="needs torch.distributed with the gloo backend")

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


def test_a_decision_about_a_bad_batch_is_one_for_all_processes():
    one = distributed.Processes()
    assert distributed.any_process(torch.tensor(True), one, torch.device("cpu")) is True
    assert distributed.any_process(False, one, torch.device("cpu")) is False


def _agree(rank):
    procs = distributed.Processes(rank, 2)
    return (distributed.any_process(rank == 1, procs, torch.device("cpu")),  # only rank 1's loss is NaN
            distributed.any_process(False, procs, torch.device("cpu")))


@pytest.mark.slow  # starts processes
@needs_gloo
def test_two_processes_agree_on_a_flag_that_holds_on_one_of_them():
    assert in_two_processes(_agree) == {0: (True, False), 1: (True, False)}


def test_compile_under_torchrun_is_refused_before_anything_starts(synth_root, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda *a, **kw: pytest.fail("made a process group"))
    with pytest.raises(UserError, match="--compile with several processes"):
        train(TrainConfig(data=str(synth_root), out=str(tmp_path / "run"), compile=True,
                          **tiny_settings(log_every=1, checkpoint_every=0)), progress=False)
    assert not (tmp_path / "run").exists()



TIMEOUT = 240  # seconds; a hung process group must fail the test, not stall CI


def _biases_before_batchnorm() -> set[str]:
    """Conv biases that a BatchNorm right after cancels: their gradient is exactly zero in exact
    arithmetic, so Adam turns float round-off into full-size random steps; they never affect outputs."""
    names = set()
    for prefix, m in DFCVAE(ModelConfig(image_size=32, latent_dim=16)).named_modules():
        if isinstance(m, torch.nn.Sequential):
            for i, (a, b) in enumerate(zip(m, list(m)[1:])):
                if isinstance(a, torch.nn.Conv2d) and isinstance(b, torch.nn.BatchNorm2d):
                    names.add(f"{prefix}.{i}.bias")
    return names


def _train(args: list[str], processes: int) -> subprocess.CompletedProcess:
    env = launch_env()
    env["OMP_NUM_THREADS"] = "1"
    if processes == 1:
        cmd = [sys.executable, "-m", "dfc_vae", "train", *args]
    else:
        cmd = torchrun_command(processes, ["-m", "dfc_vae", "train", *args])
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


@pytest.mark.slow  # trains in processes under torchrun
@needs_gloo
def test_two_processes_match_one_process_and_resume(synth_root, tmp_path):
    # fp32, so that what differs is the distribution alone: in bf16 the rounding of half batches and
    # of the global BatchNorm (computed in fp32) moves the result by up to 24% of the update after 4
    # steps (measured), in fp32 by up to 2%
    common = ["--data", str(synth_root), "--vgg-weights", "random", "--image-size", "32", "--latent-dim", "16",
              "--batch-size", "8", "--epochs", "1", "--log-every", "1", "--device", "cpu", "--no-progress",
              "--precision", "fp32",
              "--cache-dir", str(tmp_path / "cache")]
    _train([*common, "--out", str(tmp_path / "one"), "--max-steps", "4"], processes=1)
    # two processes, each with half of every global batch of 8: two steps, then resume to four
    _train([*common, "--out", str(tmp_path / "two"), "--max-steps", "2"], processes=2)
    _train([*common, "--out", str(tmp_path / "two"), "--max-steps", "4", "--resume"], processes=2)

    one = load_checkpoint(tmp_path / "one" / "checkpoints" / "latest.pt")
    two = load_checkpoint(tmp_path / "two" / "checkpoints" / "latest.pt")
    assert one["step"] == two["step"] == 4
    assert two["meta"]["world_size"] == 2
    torch.manual_seed(0)  # the run's seed: the initial parameters both runs started from
    init = DFCVAE(ModelConfig(image_size=32, latent_dim=16)).state_dict()
    gauge = _biases_before_batchnorm()
    for name, p1 in one["model"].items():
        p2 = two["model"][name]
        if name in gauge or name.endswith("running_mean") or not p1.is_floating_point():
            continue
        # The runs differ only by float summation order; Adam divides by the gradient's size, so
        # compare the difference with how far training moved each tensor (a per-rank BatchNorm or
        # per-rank noise moves it by about 100%; measured here: up to 2%).
        moved = (p1 - init[name]).norm()
        assert (p1 - p2).norm() <= 0.05 * moved + 1e-6, \
            f"{name}: 2-process result differs by {(p1 - p2).norm() / moved:.1%} of the update"
    # only rank 0 wrote: one metrics row per step, no duplicates from the other process
    steps = [line.split(",")[0] for line in (tmp_path / "two" / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == ["1", "2", "3", "4"]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
