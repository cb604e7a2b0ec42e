"""Every CUDA path of dfc_vae, run once on this machine's GPU, and what it measures; a markdown report.

    python experiments/gpu_check.py [--out gpu_check.md] [--work DIR] [--budget 1500] [--docs docs/benchmarks.md]

Checks, in order (each passes, fails with its error, or is skipped with the reason; each has its own
time limit, and none starts once the budget is spent; the measurements come first):
  device       the GPU, its compute capability, whether it computes bf16 natively
  utilization  vae123 images/s at 64x64, batch 64 and 256, bf16 and fp32, eager and --compile, against
               the matmul peak measured here (written into docs/benchmarks.md's GPU table)
  sync_free    50 training steps (--flip, weight average) under torch.cuda.set_sync_debug_mode("error")
  real_loop    images/s from a short `dfc-vae train` run's metrics.csv, and the cost of an epoch's end
  bf16         a bf16-autocast training step: finite fp32 loss within 2% of the fp32 step's
  channels     channels_last: weights, batches and activations keep NHWC strides
  fused_adam   the fused Adam kernel steps the parameters
  batches      the training split held on the GPU and the pinned-memory path give the same batches
  compile      a torch.compile step matches the eager one
  resume       a short --deterministic training with --ema-decay and --flip, SIGKILLed after its first
               checkpoints and resumed, ends bitwise equal to an uninterrupted one (weights, their
               average, optimizer state); fails if the run ends before the kill
  figures      attribute vectors, the attribute classifier, Figures 5 and 6 on CUDA
  end_to_end   `dfc-vae demo` at 64x64 and `dfc-vae evaluate` of its run on the GPU: times, the four targets
  memory       peak GPU memory of training, calibration and evaluation at 64, 128 and 256 px
  ddp_cpu      torchrun with 2 processes and --device cpu on this GPU host (gloo, not NCCL)
  ddp_nccl     torchrun with 2 processes on 2 GPUs (NCCL), when two are visible
Faces are synthetic (dfc_vae.data.synth) and VGG19 has random weights: the checks need no download.
Without a CUDA GPU it says so in one line and exits with status 2; `--dry-run` runs every check on the
CPU at toy sizes instead (their numbers mean nothing; the GPU table is not written).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "experiments"))

from gpu_check_perf import PerfChecks, write_gpu_table  # noqa: E402 (found through the path above)

FACES = 768  # synthetic faces: a few training epochs of batch 64, a test split for the figures
SIZE = 64
DRY_SIZE = 32  # a dry run's faces: every check runs on a CPU in minutes
BUDGET_S = 1500.0
LIMIT_S = 300.0  # a check's own time limit unless it names one


@dataclass
class Result:
    name: str
    status: str  # "pass", "FAIL" or "skipped"
    detail: str
    seconds: float


class Skip(Exception):
    """A check that cannot run here (the reason is its message)."""


class OverLimit(Exception):
    """A check ran past its own time limit."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise OverLimit in this (the main) thread once `seconds` have passed inside the block."""
    def expire(signum, frame):
        raise OverLimit(f"ran past its {seconds:.0f} s limit")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ----------------------------------------------------------------------------- running and reporting


def run_checks(checks, budget_s: float = BUDGET_S, clock=time.monotonic) -> list[Result]:
    """Run (name, fn) or (name, fn, limit_s) checks in order; fn() returns a detail line, raises Skip or
    fails, and fails when it runs past its limit (LIMIT_S unless named). A check that would start after
    `budget_s` seconds is skipped (the whole run stays within the budget)."""
    results, start = [], clock()
    for name, fn, *limit in checks:
        t0 = clock()
        if t0 - start > budget_s:
            results.append(Result(name, "skipped", f"not started: the {budget_s:.0f} s budget was spent", 0.0))
            continue
        try:
            with time_limit(limit[0] if limit else LIMIT_S):
                status, detail = "pass", fn()
        except Skip as e:
            status, detail = "skipped", str(e)
        except (Exception, SystemExit) as e:  # noqa: BLE001 (a failing check is reported, the others still run)
            status = "FAIL"
            detail = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"
            traceback.print_exc(file=sys.stderr)
        results.append(Result(name, status, detail, clock() - t0))
        print(f"{name}: {status} ({results[-1].seconds:.1f} s) {detail}", file=sys.stderr)
    return results


def report(results: list[Result], machine: str, wall_s: float) -> str:
    """The markdown report: the machine, a summary line and one row per check."""
    from dfc_vae.util.tables import markdown_table

    passed = sum(r.status == "pass" for r in results)
    failed = [r.name for r in results if r.status == "FAIL"]
    lines = ["# dfc_vae GPU check", "", f"machine: {machine}", "",
             f"{passed} of {len(results)} checks passed"
             + (f"; FAILED: {', '.join(failed)}" if failed else "") + f"; {wall_s:.0f} s in all.", ""]
    rows = [(r.name, r.status, f"{r.seconds:.1f}", r.detail.replace("|", "\\|").replace("\n", " ")) for r in results]
    lines += markdown_table(["check", "result", "seconds", "detail"], rows, align=("", "", "right", ""))
    return "\n".join(lines) + "\n"


def machine() -> str:
    """The GPU the checks run on (cuda:0), its driver and CUDA, the host CPU; and torch's version."""
    from dfc_vae.util.machine import describe_machine

    return f"{describe_machine(torch.device('cuda', 0))}; torch {torch.__version__}"


# ----------------------------------------------------------------------------- the checks


class Checks(PerfChecks):
    """The CUDA checks, sharing one synthetic dataset, its cache and a short trained run."""

    def __init__(self, work: Path, device: torch.device | None = None, faces: int = FACES, size: int = SIZE,
                 dry: bool = False):
        self.work = work
        self.device = device or torch.device("cuda", 0)  # another device: the parts a CPU can run, in tests
        self.faces, self.size, self.dry = faces, size, dry
        self.data = None
        self.cache = None
        self.run_dir = None  # the uninterrupted run of `resume`, reused by `figures`
        self.table_rows = []  # the utilization rows, for docs/benchmarks.md

    # each check's own time limit, in seconds: the measurements first, so a spent budget drops the others
    LIMITS = {"device": 30, "utilization": 600, "sync_free": 120, "real_loop": 300, "bf16": 120, "channels": 60,
              "fused_adam": 60, "batches": 60, "compile": 300, "resume": 400, "figures": 300, "end_to_end": 900,
              "memory": 300, "ddp_cpu": 200, "ddp_nccl": 300}

    def all(self):
        return [("device", self.check_device), ("utilization", self.check_utilization),
                ("sync_free", self.check_sync_free), ("real_loop", self.check_real_loop), ("bf16", self.check_bf16),
                ("channels", self.check_channels_last), ("fused_adam", self.check_fused_adam),
                ("batches", self.check_batches), ("compile", self.check_compile), ("resume", self.check_resume),
                ("figures", self.check_figures), ("end_to_end", self.check_end_to_end), ("memory", self.check_memory),
                ("ddp_cpu", self.check_ddp_cpu), ("ddp_nccl", self.check_ddp_nccl)]

    def limited(self):
        """(name, check, its time limit) in order, for run_checks."""
        return [(name, fn, self.LIMITS[name]) for name, fn in self.all()]

    # -- shared pieces

    def _dataset(self):
        if self.cache is None:
            from dfc_vae.data.cache import prepare_cache
            from dfc_vae.data.synth import render_celeba

            self.data = render_celeba(self.work / "faces", n=self.faces, seed=0, progress=False)
            self.cache = prepare_cache(self.data, self.size, "official", self.work / "cache", progress=False)
        return self.cache

    def _parts(self, loss: str = "vae123", seed: int = 0):
        from dfc_vae.model.losses import DFCLoss
        from dfc_vae.model.network import DFCVAE, ModelConfig

        torch.manual_seed(seed)
        model = DFCVAE(ModelConfig(image_size=self.size)).to(self.device, memory_format=torch.channels_last)
        loss_fn = DFCLoss(loss, vgg_weights="random").to(self.device, memory_format=torch.channels_last)
        return model, loss_fn

    def _batch(self, n: int = 32, seed: int = 0):
        import numpy as np

        from dfc_vae.data.batches import BatchSource

        cache = self._dataset()
        source = BatchSource(cache.images, np.arange(len(cache.ids)), n, self.device, seed=seed)
        x = next(source.batches(0))
        eps = torch.randn(n, 100, generator=torch.Generator().manual_seed(seed)).to(self.device)
        return x, eps

    def _step_loss(self, precision: str, compile: bool = False):
        from dfc_vae.training.step import TrainStep, make_step_fn

        model, loss_fn = self._parts()
        out, _ = make_step_fn(TrainStep(model), loss_fn, self.device, compile, precision)(*self._batch())
        out["loss"].backward()
        grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        return out["loss"].detach(), grad

    def _env(self) -> dict:
        from dfc_vae.util.launch import launch_env

        env = launch_env()
        return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
                "CUBLAS_WORKSPACE_CONFIG": ":4096:8", "OMP_NUM_THREADS": "4"}

    def _train_args(self, out: Path, device: str = "cuda", *extra: str) -> list[str]:
        self._dataset()
        return ["train", "--data", str(self.data), "--out", str(out), "--vgg-weights", "random",
                "--image-size", str(self.size), "--batch-size", "64", "--device", device, "--cache-dir",
                str(self.work / "cache"), "--log-every", "5", "--no-progress", *extra]

    def _dfc_vae(self, args: list[str], timeout: float = 120, torchrun: int = 0) -> subprocess.CompletedProcess:
        from dfc_vae.util.launch import torchrun_command

        if torchrun:
            cmd = torchrun_command(torchrun, ["-m", "dfc_vae", *args])
        else:
            cmd = [sys.executable, "-m", "dfc_vae", *args]
        done = subprocess.run(cmd, env=self._env(), capture_output=True, text=True, timeout=timeout)
        if done.returncode:
            lines = done.stderr.strip().splitlines()
            # the child's own error, not torchrun's summary of it
            errors = [line for line in lines if ("Error" in line or "error:" in line) and "elastic" not in line
                      and "error_file" not in line]
            raise RuntimeError(f"`dfc-vae {args[0]}` exited with {done.returncode}: "
                               + (errors[-1].strip() if errors else " / ".join(lines[-3:])))
        return done

    # -- the checks

    def _cuda_only(self) -> None:
        """A dry run on the CPU skips the checks that are statements about a CUDA device."""
        if self.dry:
            raise Skip("dry run: a statement about the CUDA device, nothing to check on the CPU")

    def check_device(self) -> str:
        from dfc_vae.util.device import native_bf16, resolve_device, resolve_precision

        self._cuda_only()
        assert resolve_device("auto").type == "cuda"
        p = torch.cuda.get_device_properties(0)
        return (f"{p.name}, capability {p.major}.{p.minor}; bf16 native: {native_bf16(self.device)}; "
                f"--precision auto -> {resolve_precision('auto', self.device)}")

    def check_bf16(self) -> str:
        from dfc_vae.util.device import native_bf16

        if not native_bf16(self.device):
            raise Skip("this GPU only emulates bf16; training runs fp32 here (--precision auto)")
        loss16, grad16 = self._step_loss("bf16")
        loss32, grad32 = self._step_loss("fp32")
        assert loss16.dtype == torch.float32 and torch.isfinite(loss16), loss16
        rel = abs(float(loss16) - float(loss32)) / abs(float(loss32))
        cos = float(torch.nn.functional.cosine_similarity(grad16.float(), grad32.float(), dim=0))
        assert rel < 0.02 and cos > 0.99, (rel, cos)
        return f"loss within {rel:.2%} of fp32, gradient cosine {cos:.4f}"

    def check_channels_last(self) -> str:
        model, _ = self._parts()
        x, _ = self._batch()
        assert x.is_contiguous(memory_format=torch.channels_last), x.stride()
        conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            y = conv(x)
        assert y.is_contiguous(memory_format=torch.channels_last), y.stride()
        return f"batch {tuple(x.shape)} strides {x.stride()}, conv output NHWC"

    def check_fused_adam(self) -> str:
        from dfc_vae.runs.config import TrainConfig
        from dfc_vae.training.step import make_optimizer

        model, _ = self._parts()
        opt = make_optimizer(model, TrainConfig())
        assert opt.defaults.get("fused") is True
        before = [p.detach().clone() for p in model.parameters()]
        for p in model.parameters():
            p.grad = torch.ones_like(p)
        opt.step()
        moved = sum(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
        assert moved == len(before), f"{moved} of {len(before)} tensors moved"
        return f"fused Adam stepped all {moved} parameter tensors"

    def check_batches(self) -> str:
        import numpy as np

        from dfc_vae.data.batches import BatchSource

        self._cuda_only()
        cache = self._dataset()
        idx = np.arange(len(cache.ids))
        held = BatchSource(cache.images, idx, 64, self.device, seed=3, flip=True)
        assert held.on_device is not None, "the training split was not held on the GPU"
        pinned = BatchSource(cache.images, idx, 64, self.device, seed=3, flip=True)
        pinned.on_device = None  # the path of a split too large for the GPU: pinned host memory
        n = 0
        for a, b in zip(held.batches(1), pinned.batches(1)):
            assert a.device.type == b.device.type == "cuda"
            assert torch.equal(a, b)
            n += 1
        assert n == held.num_batches
        return f"{n} batches of 64 with --flip: split on the GPU ({held.on_device.nbytes / 2**20:.0f} MiB) = pinned path"

    def check_compile(self) -> str:
        eager_loss, eager_grad = self._step_loss("fp32")
        compiled_loss, compiled_grad = self._step_loss("fp32", compile=True)
        # the same arithmetic up to the kernels each picks (cuDNN's fp32 convolutions run in TF32)
        torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-2, atol=0)
        cos = float(torch.nn.functional.cosine_similarity(compiled_grad, eager_grad, dim=0))
        assert cos > 0.99, cos
        return f"compiled loss {float(compiled_loss):.5g} vs eager {float(eager_loss):.5g}, gradient cosine {cos:.5f}"

    def check_resume(self) -> str:
        from dfc_vae.runs.checkpoint import latest_checkpoint, load_checkpoint

        from dfc_vae.util.device import resolve_precision

        precision = resolve_precision("auto", self.device)
        # 4 epochs of about 9 steps, a checkpoint every 2: the kill lands mid-epoch or at an epoch's end
        args = ["--epochs", "4", "--deterministic", "--precision", precision, "--checkpoint-every", "2",
                "--ema-decay", "0.99", "--flip"]
        straight = self.work / "run_straight"
        self._dfc_vae(self._train_args(straight, self.device.type, *args), timeout=150)
        self.run_dir = straight
        killed = self.work / "run_killed"
        proc = subprocess.Popen([sys.executable, "-m", "dfc_vae", *self._train_args(killed, self.device.type, *args)],
                                env=self._env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline, at = time.monotonic() + 120, None
        while proc.poll() is None and time.monotonic() < deadline:
            ckpt = latest_checkpoint(killed)
            if ckpt is not None:
                try:
                    at = load_checkpoint(ckpt)["step"]
                except Exception:  # noqa: BLE001 (being replaced right now: read it again)
                    at = None
                if at is not None and at >= 6:
                    proc.send_signal(signal.SIGKILL)
                    break
            time.sleep(0.05)
        proc.wait()
        if proc.returncode == 0:  # nothing was resumed mid-run: the check would show nothing
            raise AssertionError("the run ended before the kill at its step-6 checkpoint; nothing was resumed")
        if proc.returncode == -signal.SIGKILL:
            note = f"killed (SIGKILL) after its step-{at} checkpoint"
        else:
            raise RuntimeError(f"the run to kill failed by itself: {proc.stderr.read().strip().splitlines()[-1:]}")
        self._dfc_vae(self._train_args(killed, self.device.type, *args, "--resume"), timeout=150)
        a = load_checkpoint(latest_checkpoint(straight))
        b = load_checkpoint(latest_checkpoint(killed))
        assert a["step"] == b["step"] > 6, (a["step"], b["step"])
        differ = [f"{part} {k}" for part in ("model", "trained_model") for k in a[part]
                  if not torch.equal(a[part][k], b[part][k])]
        for i, (sa, sb) in enumerate(zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values())):
            differ += [f"optimizer {i} {k}" for k in sa if not torch.equal(torch.as_tensor(sa[k]), torch.as_tensor(sb[k]))]
        assert not differ, f"{len(differ)} tensors differ, first {differ[0]}"
        return (f"{note}; at step {a['step']} weights, their average and optimizer state bitwise equal to the "
                "uninterrupted run")

    def check_figures(self) -> str:
        from dfc_vae.editing.attributes import compute_attribute_vectors
        from dfc_vae.evaluation.classifier import classifier_for_run
        from dfc_vae.evaluation.figure6 import figure6
        from dfc_vae.evaluation.figure5 import figure5
        from dfc_vae.runs.run import load_run

        if self.run_dir is None or not (self.run_dir / "checkpoints" / "latest.pt").is_file():
            self.run_dir = self.work / "run_figures"
            self._dfc_vae(self._train_args(self.run_dir, self.device.type, "--epochs", "2"), timeout=150)
        run = load_run(self.run_dir, self.device.type)
        assert run.device.type == self.device.type
        cache = self.work / "cache"
        vectors = compute_attribute_vectors(run, self.data, "train", cache, progress=False)
        clf = classifier_for_run(run, self.data, cache, retrain=True, progress=False, epochs=2)
        f5 = figure5(run, self.data, clf, self.work / "fig5.png", n_faces=8, seed=0, cache_dir=cache, progress=False)
        f6 = figure6(run, self.data, vectors, clf, self.work / "fig6.png", n_faces=8, seed=0, cache_dir=cache,
                     progress=False)
        assert f5.png.is_file() and f6.png.is_file()
        return f"{len(vectors.names)} attribute vectors, classifier scores {len(clf.scored())} attributes, figures drawn"

    def check_ddp_cpu(self) -> str:
        out = self.work / "run_ddp_cpu"
        self._dfc_vae(self._train_args(out, "cpu", "--image-size", "32", "--batch-size", "16", "--max-steps", "3",
                                       "--precision", "fp32"), timeout=150, torchrun=2)
        meta = json.loads((out / "config.json").read_text())["meta"]
        assert meta["world_size"] == 2 and meta["device"] == "cpu", meta
        return "2 processes with --device cpu trained with gloo on a GPU host"

    def check_ddp_nccl(self) -> str:
        if torch.cuda.device_count() < 2:
            raise Skip(f"{torch.cuda.device_count()} GPU visible; NCCL data parallelism needs 2")
        out = self.work / "run_ddp_nccl"
        self._dfc_vae(self._train_args(out, "cuda", "--max-steps", "8"), timeout=150, torchrun=2)
        self._dfc_vae(self._train_args(out, "cuda", "--max-steps", "12", "--resume"), timeout=150, torchrun=2)
        meta = json.loads((out / "config.json").read_text())["meta"]
        assert meta["world_size"] == 2 and meta["device"].startswith("cuda"), meta
        return "2 processes on 2 GPUs (NCCL, SyncBatchNorm) trained 8 steps and resumed to 12"


def check_this_machine(args) -> bool:
    """Run every check within the budget, write the report (and, measured on a GPU, the GPU table of
    --docs); returns whether any check failed."""
    from dfc_vae.util.errors import UserError
    from dfc_vae.util.fileio import output_folder, write_text

    if args.work:
        output_folder(args.work, "--work", " for the faces, caches and runs")
    if not args.dry_run and not torch.cuda.is_available():
        raise UserError("no CUDA GPU is visible to PyTorch (torch.cuda.is_available() is False); nothing to check "
                        "(--dry-run runs the checks on the CPU)")
    # every process started from here (trainings, torchrun, the benchmark's workers) imports this checkout
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    t0 = time.monotonic()
    if args.work:
        Path(args.work).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        if args.dry_run:  # toy sizes on the CPU: every check runs, no number means anything
            checks = Checks(Path(work), torch.device("cpu"), faces=160, size=DRY_SIZE, dry=True)
        else:
            checks = Checks(Path(work))
        results = run_checks(checks.limited(), args.budget)
    where = describe_cpu_dry_run() if args.dry_run else machine()
    text = report(results, where, time.monotonic() - t0)
    write_text(args.out, text)
    if checks.table_rows and not args.dry_run and args.docs:
        write_gpu_table(Path(args.docs), where, checks.table_rows)
    print(text)
    return any(r.status == "FAIL" for r in results)


def describe_cpu_dry_run() -> str:
    from dfc_vae.util.machine import describe_machine

    return f"DRY RUN on the CPU ({describe_machine('cpu')}; torch {torch.__version__}): toy sizes, no GPU measured"


def main(argv=None) -> int:
    from dfc_vae.util.errors import exit_status

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="gpu_check.md", help="markdown report to write (default: gpu_check.md)")
    p.add_argument("--work", help="folder for the faces, caches and runs (default: a temporary folder)")
    p.add_argument("--budget", type=float, default=BUDGET_S, help="seconds after which no further check starts")
    p.add_argument("--docs", default=str(REPO / "docs" / "benchmarks.md"),
                   help="markdown file whose GPU table the measured rows replace ('' for none; "
                        "default: this checkout's docs/benchmarks.md)")
    p.add_argument("--dry-run", action="store_true", help="run every check on the CPU at toy sizes (for tests)")
    args = p.parse_args(argv)
    failed = []
    status = exit_status("gpu_check", lambda: failed.append(check_this_machine(args)))
    return status or (1 if failed[0] else 0)


if __name__ == "__main__":
    sys.exit(main())
