"""Kill training with SIGKILL at random moments, resume it, and check it ends where an
uninterrupted run ends: bitwise-equal parameters and optimizer state on CPU with --deterministic.

    python experiments/chaos_resume.py --trials 3 --kills 5

Each trial renders a small synthetic CelebA (or uses --data), trains once without interruption
as the reference, then runs the same training as a job that is killed `--kills` times at random
moments (during start-up, mid-step, mid-checkpoint-write ...) and restarted with --resume each
time, as a preemptible cluster job would be.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dfc_vae.runs.checkpoint import load_checkpoint  # noqa: E402
from dfc_vae.util.errors import exit_status  # noqa: E402
from dfc_vae.model.losses import LOSS_NAMES  # noqa: E402


def train_command(data: Path, run: Path, cache: Path, loss: str, epochs: int) -> list[str]:
    return [sys.executable, "-m", "dfc_vae", "train", "--data", str(data), "--out", str(run), "--loss", loss,
            "--epochs", str(epochs), "--image-size", "32", "--latent-dim", "16", "--batch-size", "16",
            "--vgg-weights", "random", "--cache-dir", str(cache), "--checkpoint-every", "1", "--log-every", "1",
            "--deterministic", "--device", "cpu", "--no-progress"]


def _start(cmd: list[str], run: Path) -> subprocess.Popen:
    resume = ["--resume"] if (run / "config.json").is_file() else []  # what a job script does
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    return subprocess.Popen(cmd + resume, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def run_with_kills(cmd: list[str], run: Path, kills: int, max_delay: float, rng: random.Random) -> list[float]:
    """Run `cmd` to completion, SIGKILLing it `kills` times after random delays; returns the delays that hit."""
    landed = []
    for _ in range(kills):
        proc = _start(cmd, run)
        delay = rng.uniform(0.2, 0.6 * max_delay)  # often during start-up or a checkpoint write, too
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            landed.append(delay)
            continue
        if proc.returncode != 0:
            raise RuntimeError(f"training failed: {proc.stderr.read().decode()[-2000:]}")
        return landed  # finished before the kill came
    proc = _start(cmd, run)
    _, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"training failed after {len(landed)} kills: {err.decode()[-2000:]}")
    return landed


def compare(a: Path, b: Path) -> list[str]:
    """Names of the tensors that differ between two runs' final checkpoints."""
    ca, cb = load_checkpoint(a / "checkpoints" / "latest.pt"), load_checkpoint(b / "checkpoints" / "latest.pt")
    diffs = [f"model.{k}" for k in ca["model"] if not torch.equal(ca["model"][k], cb["model"][k])]
    for (pa, sa), (pb, sb) in zip(ca["optimizer"]["state"].items(), cb["optimizer"]["state"].items()):
        diffs += [f"optimizer.{pa}.{k}" for k in sa if not torch.equal(sa[k], sb[k])]
    if ca["step"] != cb["step"]:
        diffs.append(f"step {ca['step']} != {cb['step']}")
    return diffs


def chaos_trial(data: Path, work: Path, kills: int = 5, seed: int = 0, loss: str = "pvae", epochs: int = 3) -> dict:
    """One reference run and one killed-and-resumed run; returns what happened."""
    cache = work / "cache"
    reference, chaotic = work / "reference", work / "chaos"
    t = time.perf_counter()
    ref = subprocess.run(train_command(data, reference, cache, loss, epochs), capture_output=True)
    if ref.returncode != 0:
        raise RuntimeError(ref.stderr.decode()[-2000:])
    duration = time.perf_counter() - t
    landed = run_with_kills(train_command(data, chaotic, cache, loss, epochs), chaotic, kills, duration,
                            random.Random(seed))
    return {"kills": len(landed), "delays_s": [round(d, 2) for d in landed], "reference_s": round(duration, 1),
            "differences": compare(reference, chaotic)}


def run_trials(args) -> int:
    """The trials of `args`, each reported in a line; returns how many ended different."""
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            from dfc_vae.data.synth import render_celeba

            data = render_celeba(Path(tmp) / "synth", n=200, seed=args.seed, progress=False)
        for trial in range(args.trials):
            result = chaos_trial(data, Path(tmp) / f"trial{trial}", args.kills, args.seed + trial, args.loss, args.epochs)
            ok = not result["differences"]
            failures += not ok
            print(f"trial {trial}: {result['kills']} kills at {result['delays_s']} s (uninterrupted run "
                  f"{result['reference_s']} s): {'identical' if ok else 'DIFFERENT: ' + ', '.join(result['differences'][:5])}")
    print(f"{args.trials - failures}/{args.trials} trials ended bitwise-identical to the uninterrupted run")
    return failures


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--kills", type=int, default=5, help="SIGKILLs per trial")
    p.add_argument("--data", type=Path, help="CelebA-format root (default: 200 synthetic faces)")
    p.add_argument("--loss", default="pvae", choices=LOSS_NAMES)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    failures = []
    status = exit_status("chaos_resume", lambda: failures.append(run_trials(args)))
    return status or (1 if failures[0] else 0)


if __name__ == "__main__":
    sys.exit(main())
