"""SIGINT and SIGTERM during training: the step under way finishes, a checkpoint is saved at it, one line
says how to go on, and --resume ends bitwise where the uninterrupted run ends, logs included."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dfc_vae.runs.checkpoint import load_checkpoint
from dfc_vae.training.interrupt import StopSignals
from dfc_vae.training.loop import train
from dfc_vae.util.launch import launch_env, torchrun_command
from tiny import tiny_config

TIMEOUT = 240  # seconds; a run that ignores the signal must fail the test, not stall it

# The training process signals itself right after the optimizer step STOP_AT_STEP, so the signal lands at
# a known step (mid-epoch: 77 training faces in batches of 8 are 9 steps an epoch), not when a timer says.
SIGNAL_AT_STEP = """
import os, signal, sys
from dfc_vae.cli import run
from dfc_vae.training import loop

at, sig = int(os.environ["STOP_AT_STEP"]), getattr(signal, os.environ["STOP_SIGNAL"])
rank = os.environ.get("STOP_RANK")  # under torchrun: the one process signalled
run_step = loop.Trainer.run_step

def signalling_step(self, x):
    run_step(self, x)
    if self.step == at and (rank is None or int(rank) == self.procs.rank):
        os.kill(os.getpid(), sig)

loop.Trainer.run_step = signalling_step
sys.argv[0] = "dfc-vae"
run()
"""

METRICS = ["step", "epoch", "loss", "recon", "kl", "active_units"]  # images_per_s and elapsed_s are timings


def test_the_first_signal_asks_to_stop_the_second_stops_at_once_and_the_handlers_come_back():
    before = signal.getsignal(signal.SIGINT)
    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def _train(args: list[str], stop_at: int | None = None, sig: str = "SIGINT") -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "2", "STOP_AT_STEP": str(stop_at or 0), "STOP_SIGNAL": sig}
    code = ["-c", SIGNAL_AT_STEP] if stop_at else ["-m", "dfc_vae"]
    return subprocess.run([sys.executable, *code, "train", *args], env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)


def _args(synth_root, tmp_path, out: str) -> list[str]:
    return ["--data", str(synth_root), "--out", str(tmp_path / out), "--loss", "pvae", "--vgg-weights", "random",
            "--image-size", "32", "--latent-dim", "16", "--batch-size", "8", "--epochs", "2", "--log-every", "2",
            "--checkpoint-every", "0", "--ema-decay", "0.9", "--flip", "--device", "cpu", "--no-progress",
            "--cache-dir", str(tmp_path / "cache")]


def _rows(path, columns=None):
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if columns is None or k in columns} for row in csv.DictReader(f)]


@pytest.mark.slow  # trains
def test_sigint_mid_epoch_saves_and_resume_ends_bitwise_as_the_uninterrupted_run(synth_root, tmp_path):
    straight = _train(_args(synth_root, tmp_path, "straight"))
    assert straight.returncode == 0, straight.stderr[-3000:]

    stopped = _train(_args(synth_root, tmp_path, "run"), stop_at=5)
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    line = stopped.stderr.strip().splitlines()[-1]
    assert line == f"dfc-vae train: interrupted at step 5: saved; continue with dfc-vae train --out {tmp_path / 'run'} --resume"
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")
    assert (ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]) == (5, 0, 5)  # the step under way, mid-epoch

    resumed = _train(_args(synth_root, tmp_path, "run") + ["--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from step 5 (epoch 1)" in resumed.stdout

    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "latest.pt")
    b = load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")
    assert a["step"] == b["step"] == 18
    for part in ("model", "trained_model"):  # the weights' average, and the weights it averages
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # the logs go on as the uninterrupted run's: the metrics row open at the interruption (step 5 of the
    # row at step 6) included
    assert _rows(tmp_path / "run" / "metrics.csv", METRICS) == _rows(tmp_path / "straight" / "metrics.csv", METRICS)
    assert [r["step"] for r in _rows(tmp_path / "run" / "metrics.csv")] == [str(s) for s in range(2, 19, 2)]
    assert _rows(tmp_path / "run" / "epochs.csv") == _rows(tmp_path / "straight" / "epochs.csv")


@pytest.mark.slow  # trains
def test_sigterm_saves_at_the_step_under_way(synth_root, tmp_path):
    stopped = _train(_args(synth_root, tmp_path, "run"), stop_at=3, sig="SIGTERM")
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert stopped.stderr.strip().splitlines()[-1].startswith("dfc-vae train: interrupted at step 3: saved;")
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")["step"] == 3


@pytest.mark.slow  # trains
def test_resume_without_a_checkpoint_says_so_and_starts_from_step_0(synth_root, cache_dir, tmp_path, capsys,
                                                                    monkeypatch):
    monkeypatch.chdir(Path(synth_root).parent)  # the data given relative to where training runs
    cfg = tiny_config(data=Path(synth_root).name, out=str(tmp_path / "run"), epochs=1, max_steps=1,
                      cache_dir=str(cache_dir))
    run = train(cfg, progress=False)
    for path in (run / "checkpoints").iterdir():  # as a run stopped before its first checkpoint
        path.unlink()
    capsys.readouterr()
    train(cfg, resume=True, progress=False)
    assert f"no checkpoint in {run} yet: starting from step 0" in capsys.readouterr().out
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["step"] == 1
    # the data as given, and where it is, for commands run from elsewhere
    saved = json.loads((run / "config.json").read_text())
    assert saved["config"]["data"] == Path(synth_root).name
    assert saved["meta"]["data_absolute"] == str(Path(synth_root).resolve())


@pytest.mark.slow  # trains
@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="needs torch.distributed with the gloo backend")
def test_under_torchrun_a_signal_to_one_process_stops_all_at_the_same_step(synth_root, tmp_path):
    script = tmp_path / "signalling_train.py"
    script.write_text(SIGNAL_AT_STEP)
    env = {**launch_env(), "OMP_NUM_THREADS": "1", "STOP_AT_STEP": "1", "STOP_SIGNAL": "SIGINT", "STOP_RANK": "1"}
    args = _args(synth_root, tmp_path, "run") + ["--precision", "fp32"]
    result = subprocess.run(torchrun_command(2, [str(script), "train", *args]), env=env, capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode != 0
    # rank 1 alone was signalled after step 1; both agree at the next metrics row (--log-every 2), rank 0 saves
    assert result.stderr.count("dfc-vae train: interrupted at step 2: saved; continue with") == 1, result.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")
    assert (ckpt["step"], ckpt["meta"]["world_size"]) == (2, 2)
