"""The measuring checks of experiments/gpu_check.py, and the GPU table it writes into docs/benchmarks.md.

`PerfChecks` is mixed into gpu_check's `Checks`, whose shared pieces (the synthetic faces and their
cache, the model and loss, the `dfc-vae` subprocesses) it uses. With `dry` set the checks run on the
CPU at toy sizes, so that a CPU can show every one of them runs; their numbers then mean nothing.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import statistics
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
TABLE_START = "<!-- gpu table: written by experiments/gpu_check.py -->"
TABLE_END = "<!-- end of the gpu table -->"


def benchmark_module():
    """experiments/benchmark.py, imported from its file (experiments/ is not a package)."""
    spec = importlib.util.spec_from_file_location("benchmark", REPO / "experiments" / "benchmark.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def write_gpu_table(docs: Path, machine: str, rows: list[tuple]) -> None:
    """Put the utilization rows, under the machine's line, between the markers of docs/benchmarks.md."""
    from dfc_vae.util.errors import UserError
    from dfc_vae.util.fileio import write_text
    from dfc_vae.util.tables import markdown_table

    text = docs.read_text()
    if TABLE_START not in text or TABLE_END not in text:
        raise UserError(f"{docs} has no GPU table markers ({TABLE_START}); give --docs the repository's docs/benchmarks.md")
    head, rest = text.split(TABLE_START, 1)
    tail = rest.split(TABLE_END, 1)[1]
    table = markdown_table(["precision", "batch", "path", "images/s", "TFLOP/s", "of the matmul peak"], rows,
                           align=("", "right", "", "right", "right", "right"))
    body = [f"Measured {time.strftime('%Y-%m-%d')} by `python experiments/gpu_check.py` on {machine}; vae123, "
            "64x64, synthetic faces, VGG19 with random weights.", "", *table]
    write_text(docs, head + TABLE_START + "\n" + "\n".join(body) + "\n" + TABLE_END + tail)


class PerfChecks:
    """Utilization, the sync-free step, the real loop, evaluate and the demo end to end, memory."""

    dry = False
    table_rows: list = []

    def _seconds(self, gpu: float) -> float:
        return 0.3 if self.dry else gpu

    def check_utilization(self) -> str:
        """vae123 images/s at batch 64 and 256, bf16 and fp32, eager and --compile (the launch-light path),
        against the matmul peak measured here; --compile is the default only if this shows it faster."""
        from dfc_vae.util.device import native_bf16

        bench = benchmark_module()
        cache = self._dataset()
        precisions = ["bf16", "fp32"] if native_bf16(self.device) else ["fp32"]
        dtypes = {"bf16": torch.bfloat16, "fp32": torch.float32}
        peaks = {p: bench.matmul_peak(self.device, dtypes[p], self._seconds(1.0))[0] for p in precisions}
        # torch.compile takes minutes on a CPU: a dry run times the eager path alone
        paths = [False] if self.dry else [False, True]
        rows, rates = [], {}
        for batch in ((8,) if self.dry else (64, 256)):
            for precision in precisions:
                for compiled in paths:
                    r = bench.run_train_worker("vae123", cache, self.device, self._seconds(5.0), compiled, precision,
                                               batch)
                    flops = r["flops_per_step"] / batch * r["images_per_s"]
                    rates[batch, precision, compiled] = r["images_per_s"]
                    rows.append((precision, batch, "--compile" if compiled else "eager", f"{r['images_per_s']:,.0f}",
                                 f"{flops / 1e12:.1f}", f"{flops / peaks[precision]:.0%}"))
        self.table_rows = rows
        faster = [f"{b} {p} {rates[b, p, True] / rates[b, p, False]:.2f}x" for (b, p, c) in rates if c]
        return ("; ".join(f"{p} b{b} {path}: {ips} img/s ({frac} of peak)" for p, b, path, ips, _, frac in rows)
                + (f"; --compile vs eager: {', '.join(faster)}" if faster else "; --compile not timed (dry run)"))

    def check_sync_free(self) -> str:
        """50 optimizer steps (weight average and window included) under set_sync_debug_mode("error"):
        a step that waits for the GPU raises."""
        from dfc_vae.runs.config import TrainConfig
        from dfc_vae.training.average import WeightAverage
        from dfc_vae.training.logs import StepWindow
        from dfc_vae.training.step import TrainStep, make_optimizer, make_step_fn
        from dfc_vae.util.device import resolve_precision

        import numpy as np

        from dfc_vae.data.batches import BatchSource

        cache = self._dataset()
        batch = 8 if self.dry else 64
        model, loss_fn = self._parts()
        optimizer = make_optimizer(model, TrainConfig())
        step_fn = make_step_fn(TrainStep(model), loss_fn, self.device, False, resolve_precision("auto", self.device))
        average, window = WeightAverage(model, 0.999), StepWindow(model.config.latent_dim, self.device)
        # the epoch's order goes to the device once, before the steps: the steps alone are checked
        batches = list(BatchSource(cache.images, np.arange(len(cache.ids)), batch, self.device, flip=True).batches(0))

        def step(i):
            out, mu = step_fn(batches[i % len(batches)], torch.randn(batch, model.config.latent_dim, device=self.device))
            optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            optimizer.step()
            average.update(i)
            window.add(out, mu)

        for i in range(3):  # allocations and cuDNN's autotuning happen here, not in the checked steps
            step(i)
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
        try:
            for i in range(50):
                step(i)
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode(0)
        row = window.read()
        assert np.isfinite(row["loss"]), row
        return f"50 steps of batch {batch} (--flip, weight average) without a host sync" + ("" if cuda else " (CPU: not checked)")

    def check_real_loop(self) -> str:
        """images/s from a short `dfc-vae train` run's metrics.csv, and what one epoch's end costs."""
        out = self.work / "run_loop"
        self._dfc_vae(self._train_args(out, self.device.type, "--epochs", "2", "--ema-decay", "0.999"), timeout=300)
        rows = list(csv.DictReader(open(out / "metrics.csv")))
        rate = statistics.median(float(r["images_per_s"]) for r in rows[1:] or rows)
        first = [r for r in rows if int(r["epoch"]) == 0]
        second = [r for r in rows if int(r["epoch"]) == 1]
        end = "no row on both sides of the epoch's end"
        if first and second:
            steps = int(second[0]["step"]) - int(first[-1]["step"])
            gap = float(second[0]["elapsed_s"]) - float(first[-1]["elapsed_s"]) - steps * 64 / rate
            end = f"one epoch's end ~{max(gap, 0):.2f} s (the rows' gap less its steps at the loop's rate)"
        return f"{rate:,.0f} images/s (median of {len(rows)} rows); {end}"

    def check_end_to_end(self) -> str:
        """`dfc-vae demo` and then `dfc-vae evaluate` of its run, on this device: times and the four targets."""
        demo = self.work / "demo"
        size = ["--n", "300", "--image-size", "32", "--epochs", "1", "--classifier-epochs", "1", "--faces-per-edit",
                "4", "--show", "1"] if self.dry else ["--image-size", "64"]
        t0 = time.monotonic()
        self._dfc_vae(["demo", "--out", str(demo), "--no-progress", "--vgg-weights", "random", *size], timeout=900)
        t1 = time.monotonic()
        state = json.loads((demo / "demo.json").read_text())
        self._dfc_vae(["evaluate", "--run", str(demo / "run"), "--data", str(demo / "data"), "--cache-dir",
                       str(demo / "cache"), "--device", self.device.type], timeout=300)
        t2 = time.monotonic()
        met = state.get("targets_met", {})
        assert state["status"] == "done", state
        return (f"demo {t1 - t0:.0f} s ({sum(met.values())} of {len(met)} targets met: "
                + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in met.items()) + f"); evaluate {t2 - t1:.0f} s")

    def check_memory(self) -> str:
        """Peak GPU memory of a training step, the latent's calibration and the held-out evaluation at
        64, 128 and 256 px (batch 64); on a CPU (dry run) the code runs at 32 px and no peak is read."""
        from dfc_vae.data.cache import prepare_cache
        from dfc_vae.model.losses import DFCLoss
        from dfc_vae.model.network import DFCVAE, ModelConfig
        from dfc_vae.training.step import TrainStep, make_step_fn
        from dfc_vae.training.measures import evaluate_fixed_set, fit_latent_calibration
        from dfc_vae.runs.split import read_rows
        from dfc_vae.util.device import autocast_for, resolve_precision

        import numpy as np

        self._dataset()
        precision = resolve_precision("auto", self.device)
        batch, parts = (8, []) if self.dry else (64, [])
        for size in ((32,) if self.dry else (64, 128, 256)):
            cache = prepare_cache(self.data, size, "official", self.work / "cache", progress=False)
            rows = np.arange(min(len(cache.ids), 4 * batch))
            model = DFCVAE(ModelConfig(image_size=size)).to(self.device, memory_format=torch.channels_last)
            loss_fn = DFCLoss("vae123", vgg_weights="random").to(self.device, memory_format=torch.channels_last)
            x = read_rows(cache.images, rows[:batch]).to(self.device).contiguous(memory_format=torch.channels_last)
            step = make_step_fn(TrainStep(model), loss_fn, self.device, False, precision)
            peaks = []
            for work in (lambda: step(x, torch.randn(batch, 100, device=self.device))[0]["loss"].backward(),
                         lambda: fit_latent_calibration(model, cache.images, rows, self.device),
                         lambda: evaluate_fixed_set(model, loss_fn, x, self.device, autocast_for(self.device, precision))):
                peaks.append(_peak_bytes(work, self.device))
                model.train()
            parts.append(f"{size} px " + "/".join("-" if p is None else f"{p / 2**30:.2f}" for p in peaks))
        return "GiB peak for training/calibration/evaluation: " + "; ".join(parts)


def _peak_bytes(work, device: torch.device) -> int | None:
    """The GPU's peak allocated memory while `work()` runs (None on a CPU)."""
    if device.type != "cuda":
        work()
        return None
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    work()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device)
