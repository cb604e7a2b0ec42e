"""One writer per run directory: a second `train` (or another command that writes the run) is
refused while one runs, naming its process; a killed holder leaves the run free to resume; two
`prepare` on one cache both end with the same complete cache."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dfc_vae.runs.checkpoint import load_checkpoint
from dfc_vae.cli import main
from dfc_vae.util.errors import UserError
from dfc_vae.util.runlock import LOCK_NAME, run_lock

REPO = Path(__file__).resolve().parents[2]
HOLD = ("import sys, time\nfrom dfc_vae.util.runlock import run_lock\n"
        "with run_lock(sys.argv[1], 'train'):\n    print('held', flush=True)\n    time.sleep(600)\n")


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    return {**env, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}


def _holder(run: Path) -> subprocess.Popen:
    """Another process that holds the run's lock until it is killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True, env=_env())
    assert proc.stdout.readline().strip() == "held"
    return proc


def _train_args(data, run, cache, *extra):
    return ["train", "--data", str(data), "--out", str(run), "--loss", "pvae", "--image-size", "32",
            "--latent-dim", "8", "--batch-size", "16", "--vgg-weights", "random", "--cache-dir", str(cache),
            "--device", "cpu", "--log-every", "1", "--deterministic", "--no-progress", *extra]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.slow  # trains and starts a process
def test_a_second_train_is_refused_naming_the_holder_and_a_killed_holder_frees_the_run(synth_root, tmp_path, capsys):
    run, cache = tmp_path / "run", tmp_path / "cache"
    assert main(_train_args(synth_root, run, cache, "--max-steps", "2")) == 0
    holder = _holder(run)
    try:
        assert main(_train_args(synth_root, run, cache, "--max-steps", "4", "--resume")) == 2
        line = _error_line(capsys)
        assert f"PID {holder.pid}" in line and "in use" in line
        assert load_checkpoint(run / "checkpoints" / "latest.pt")["step"] == 2  # untouched
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the OS released the dead holder's lock: resuming needs no cleanup
    assert main(_train_args(synth_root, run, cache, "--max-steps", "4", "--resume")) == 0
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["step"] == 4


@pytest.mark.slow  # trains in two processes
def test_two_concurrent_trainings_one_refused_the_other_identical_to_a_lone_run(synth_root, tmp_path, capsys):
    cache = tmp_path / "cache"
    assert main(["prepare", "--data", str(synth_root), "--image-size", "32", "--cache-dir", str(cache)]) == 0
    capsys.readouterr()
    args = _train_args(synth_root, tmp_path / "shared", cache, "--epochs", "2")
    first = subprocess.Popen([sys.executable, "-m", "dfc_vae", *args], env=_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    lock = tmp_path / "shared" / LOCK_NAME
    deadline = time.monotonic() + 120
    while not (lock.is_file() and f"PID {first.pid}" in lock.read_text()):
        assert first.poll() is None and time.monotonic() < deadline, "the first training never took its lock"
        time.sleep(0.02)
    # the second one, started while the first holds the run (it decodes, builds and trains for seconds more)
    assert main(args) == 2
    assert f"PID {first.pid}" in _error_line(capsys)
    assert first.wait(timeout=300) == 0, first.stderr.read()[-3000:]
    lone = subprocess.run([sys.executable, "-m", "dfc_vae", *_train_args(synth_root, tmp_path / "lone", cache, "--epochs", "2")],
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert lone.returncode == 0, lone.stderr[-3000:]
    a = load_checkpoint(tmp_path / "shared" / "checkpoints" / "latest.pt")
    b = load_checkpoint(tmp_path / "lone" / "checkpoints" / "latest.pt")
    assert a["step"] == b["step"] > 0
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    # no interleaved rows: one metrics row per step, as the lone run
    steps = [line.split(",")[0] for line in (tmp_path / "shared" / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == [str(i) for i in range(1, a["step"] + 1)]
    assert (tmp_path / "shared" / "epochs.csv").read_text() == (tmp_path / "lone" / "epochs.csv").read_text()


def test_commands_that_write_a_run_are_refused_while_it_is_locked(tiny_trained_run, tmp_path, capsys):
    holder = _holder(tiny_trained_run)
    try:
        assert main(["export", "--run", str(tiny_trained_run), "--out", str(tmp_path / "exported")]) == 2
        assert f"PID {holder.pid}" in _error_line(capsys)
        assert not (tmp_path / "exported").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert main(["export", "--run", str(tiny_trained_run), "--out", str(tmp_path / "exported")]) == 0


def test_a_refused_start_leaves_nothing_behind(tmp_path):
    run = tmp_path / "new"
    with pytest.raises(UserError, match="bad data"):
        with run_lock(run, "train"):
            raise UserError("bad data")
    assert not run.exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(UserError):
        with run_lock(tmp_path / "mine", "train"):
            raise UserError("not a run")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


PREPARE = """
import sys, time
from pathlib import Path
from dfc_vae.data.cache import prepare_cache
data, cache, ready, go = sys.argv[1:]
Path(ready).touch()
while not Path(go).exists():  # both decode at the same moment
    time.sleep(0.001)
print(prepare_cache(data, 128, "official", cache, workers=1, progress=False).path)
"""


@pytest.mark.slow  # starts processes
def test_two_concurrent_prepares_of_one_cache_both_end_with_the_same_complete_cache(synth_root, tmp_path):
    from dfc_vae.data.cache import open_cache, prepare_cache

    cache, go = tmp_path / "cache", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", PREPARE, str(synth_root), str(cache), str(tmp_path / f"ready{i}"),
                               str(go)], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)):
        assert all(p.poll() is None for p in procs) and time.monotonic() < deadline, [p.stderr.read() for p in procs]
        time.sleep(0.01)
    go.touch()
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in results]
    paths = [out.strip() for out, _ in results]
    assert paths[0] == paths[1], paths
    reference = prepare_cache(synth_root, 128, "official", tmp_path / "alone", workers=1, progress=False)
    assert np.array_equal(open_cache(paths[0]).images, reference.images)
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == [Path(paths[0]).name]
