"""The training loop: `Trainer`, and `train(cfg)`, which builds one and calls its `fit`.

Constructing a Trainer does the set-up, once and in this order (the numbers of a seeded run depend
on it): the settings checked, the run directory resolved, the processes joined (the one place the
rank comes from), the run directory locked and checked, the seeds, the data, the model, the loss, the
optimizer, the checkpoint resumed from, and the logs. `fit` then reads top to bottom: epochs of
`run_step` (`forward_backward`, the step's rate, Adam's step, `log`, `save`), each ended by
`end_epoch`, until the last epoch or --max-steps; SIGINT or SIGTERM stop it after the step under way
with a checkpoint saved there (interrupt.py). The step's own parts live in step.py.
"""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from dfc_vae import __version__
from dfc_vae.data.batches import BatchSource
from dfc_vae.data.cache import prepare_cache
from dfc_vae.data.faces import report_notes
from dfc_vae.data.sources import open_faces
from dfc_vae.model.losses import DFCLoss
from dfc_vae.model.network import DFCVAE
from dfc_vae.runs.checkpoint import latest_checkpoint, rng_state, save_checkpoint
from dfc_vae.runs.config import TrainConfig
from dfc_vae.runs.split import read_rows
from dfc_vae.training.average import WeightAverage
from dfc_vae.training.curves import plot_curves
from dfc_vae.training.distributed import Processes, any_process, barrier, data_parallel, world_size
from dfc_vae.training.distributed import setup as setup_processes, teardown as teardown_processes
from dfc_vae.training.interrupt import StopSignals, TrainingInterrupted
from dfc_vae.training.logs import EPOCH_COLUMNS, METRIC_COLUMNS, CSVLog, Logs, StepWindow, add_scalars, tensorboard_writer
from dfc_vae.training.measures import (CALIBRATION_IMAGES, EVAL_IMAGES, evaluate_fixed_set, fit_latent_calibration,
                                       save_epoch_grids)
from dfc_vae.training.rundir import check_run_dir, merge_resume_config, resume_from, run_directory
from dfc_vae.training.step import (TrainingDiverged, TrainStep, batchnorm_buffers, finite_weights, learning_rate,
                                   make_optimizer, make_step_fn, nonfinite_terms)
from dfc_vae.util.device import autocast_for, autotune_convolutions, resolve_device, resolve_precision
from dfc_vae.util.errors import UserError
from dfc_vae.util.fileio import write_json
from dfc_vae.runs.provenance import provenance
from dfc_vae.util.runlock import run_lock


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True, tensorboard: bool = False,
          on_progress: Callable[[int, int], None] | None = None) -> Path:
    """Train a DFC-VAE as `cfg` says; returns the run directory (see `Trainer`)."""
    return Trainer(cfg, resume, progress, tensorboard, on_progress).fit()


@dataclass
class _Data:
    """The decoded faces and what training draws from them."""
    cache: Any  # the uint8 cache of the faces (data/cache.py): .images (N, S, S, 3), .path
    train_images: int
    source: BatchSource  # the training batches
    eval_x: torch.Tensor  # the fixed held-out set, (n, 3, S, S) in [0, 1]
    calibration_idx: np.ndarray  # the training faces the latent's calibration is fitted on (cache rows)


class Trainer:
    """One run's training: where it stands (step, epoch and batch_in_epoch, which a checkpoint keeps
    and a resumed run starts from) and what it works with.

    Every setting is checked before anything is written; the run directory is locked (util/runlock.py)
    from construction until `fit` returns, so a second `train` on it is refused. `tensorboard` also
    writes the logged rows as TensorBoard event files into RUN/tensorboard (the `tensorboard` extra).
    `on_progress(step, total_steps)` is called (rank 0) with every metrics row: e.g. an estimate of the
    time left."""

    def __init__(self, cfg: TrainConfig, resume: bool = False, progress: bool = True, tensorboard: bool = False,
                 on_progress: Callable[[int, int], None] | None = None):
        cfg.validate()
        if not cfg.data:
            raise UserError("no data given; pass --data DIR (CelebA, or faces from `dfc-vae synth`)")
        faces = open_faces(cfg.data, cfg.labels, cfg.allow_missing)
        cfg = replace(cfg, crop=faces.resolve_crop(cfg.crop))  # the run records (and a resume compares) the resolved crop
        if cfg.compile and world_size() > 1:
            # SyncBatchNorm inside DistributedDataParallel graph-breaks or fails under torch.compile
            raise UserError("--compile with several processes is not supported yet; drop --compile under torchrun, "
                            "or compile a one-process run")
        writer_class = tensorboard_writer() if tensorboard else None
        self.run = run_directory(cfg)
        if cfg.deterministic:  # before anything touches cuBLAS, which reads its workspace setting once
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        # the device first: the process group's backend follows it (gloo for --device cpu on a GPU host)
        self.procs, self.device = setup_processes(resolve_device(cfg.device))
        self.on_progress = on_progress
        self._held = contextlib.ExitStack()  # the run directory's lock, held by rank 0, which alone writes
        try:
            if self.procs.is_main:
                self._held.enter_context(run_lock(self.run, "train"))
            self._set_up(cfg, faces, resume, progress, writer_class)
        except BaseException as e:
            self._release(e)
            raise

    def _set_up(self, cfg: TrainConfig, faces, resume: bool, progress: bool, writer_class) -> None:
        """The settings (a resumed run's own), seeds, data, model, loss, optimizer, the checkpoint
        resumed from, and the logs; in this order, which the numbers of a seeded run depend on."""
        saved = check_run_dir(self.run, resume)
        self.cfg = cfg = merge_resume_config(saved, cfg) if saved is not None else cfg
        autotune_convolutions(self.device, cfg.deterministic)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        self.data = _load_data(cfg, faces, self.procs, self.device, progress)

        # model, loss, optimizer (channels_last: batches arrive NHWC-strided from the cache)
        self.model = DFCVAE(cfg.model_config()).to(self.device, memory_format=torch.channels_last)
        self.loss_fn = DFCLoss(cfg.loss, cfg.alpha, cfg.beta, cfg.vgg_weights, cfg.reduction).to(
            self.device, memory_format=torch.channels_last)
        self.optimizer = make_optimizer(self.model, cfg)
        self.average = WeightAverage(self.model, cfg.ema_decay) if cfg.ema_decay else None
        resumed = self._resume(resume)
        precision = resolve_precision(cfg.precision, self.device)
        self.step_fn = make_step_fn(data_parallel(TrainStep(self.model), self.procs, self.device), self.loss_fn,
                                    self.device, cfg.compile, precision)
        self.autocast = autocast_for(self.device, precision)
        self.meta = {**faces.provenance(), "data_absolute": str(Path(cfg.data).expanduser().resolve()),
                     "train_images": self.data.train_images, "cache": str(self.data.cache.path),
                     "vgg_weights": self.loss_fn.vgg_weights_description, "dfc_vae": __version__,
                     "torch": str(torch.__version__), "device": str(self.device), "precision": precision,
                     "world_size": self.procs.world}
        self.caption = provenance(faces.synthetic is not None, self.meta["vgg_weights"])
        # the rate's schedule spans the epochs asked for; --max-steps stops inside it
        self.schedule_steps = self.total_steps = cfg.epochs * self.data.source.num_batches
        if cfg.max_steps:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        self.logs = self._open_logs(resumed, progress, writer_class)
        self.window = StepWindow(cfg.latent_dim, self.device)
        self.images_untimed = 0  # images of the open row trained before this process's clock started
        if "window" in resumed:  # the metrics row under way when the checkpoint was saved
            self.window.load_state(resumed["window"], self.procs)
            self.images_untimed = resumed["window"]["n"]
        self.check_each_step = self.device.type == "cpu" or cfg.skip_bad_batches > 0  # a CPU step syncs anyway
        # a skipped batch's forward pass has already moved the BatchNorm running statistics: keep a copy
        self.bn_buffers = batchnorm_buffers(self.model) if cfg.skip_bad_batches else []
        self.skipped = 0
        self.stop = StopSignals()
        self.t_last = time.perf_counter()  # when the last metrics row was written
        self.t_start = self.t_last - resumed.get("elapsed_s", 0.0)
        self.model.train()

    def _resume(self, resume: bool) -> dict:
        """Where training starts: a checkpoint's step, epoch and batch (and its log window), said in one
        line (rank 0), or step 0."""
        ckpt = latest_checkpoint(self.run) if resume else None
        resumed = {}
        if ckpt is not None:
            resumed = resume_from(ckpt, self.model, self.optimizer, self.device, self.average)
        elif resume and self.procs.is_main:
            print(f"no checkpoint in {self.run} yet: starting from step 0")
        self.step, self.epoch, self.batch_in_epoch = (resumed.get(k, 0) for k in ("step", "epoch", "batch_in_epoch"))
        if ckpt is not None and self.procs.is_main:
            print(f"resuming from step {self.step} (epoch {self.epoch + 1})")
        return resumed

    def _open_logs(self, resumed: dict, progress: bool, writer_class) -> Logs:
        """config.json, metrics.csv and epochs.csv (resuming: cut back to the checkpoint), TensorBoard's
        events, the provenance lines printed (rank 0 alone), and the progress bar."""
        metrics = epochs = writer = None
        keep_step, keep_epoch = (self.step, self.epoch) if "step" in resumed else (None, None)
        if self.procs.is_main:
            write_json(self.run / "config.json", {"config": self.cfg.to_dict(), "meta": self.meta})
            metrics = CSVLog(self.run / "metrics.csv", METRIC_COLUMNS, keep_step, "step")
            epochs = CSVLog(self.run / "epochs.csv", EPOCH_COLUMNS, keep_epoch, "epoch")
            if writer_class is not None:  # events past the checkpoint's step, of a killed run, are dropped
                writer = writer_class(str(self.run / "tensorboard"), purge_step=keep_step)
            for line in self.caption:
                print(f"note: {line}")
        bar = tqdm(total=self.total_steps, initial=min(self.step, self.total_steps), desc=f"train {self.cfg.loss}",
                   unit="step", disable=not (progress and self.procs.is_main), dynamic_ncols=True)
        return Logs(metrics, epochs, writer, bar)

    @property
    def output_model(self) -> DFCVAE:
        """The run's model, evaluated, calibrated, drawn and saved: the weights' average, or the trained weights."""
        return self.average.model if self.average else self.model

    def fit(self) -> Path:
        """Epochs (each ended by `end_epoch`) until the last epoch or max_steps, then `finish`; returns
        the run directory. Raises TrainingInterrupted after saving, on SIGINT or SIGTERM."""
        try:
            with self.stop:
                while self.epoch < self.cfg.epochs and self.step < self.total_steps:
                    if not self.run_epoch():  # stopped inside the epoch (max_steps)
                        break
                    self.end_epoch()
                    self._stop_if_asked()
                self.finish()
        except BaseException as e:
            self._release(e)
            raise
        self._release()
        return self.run

    def _release(self, failure: BaseException | None = None) -> None:
        """Let go of the run directory's lock; after a `failure`, the lock takes back what it made (a
        refused start leaves nothing: util/runlock.py)."""
        if failure is None:
            self._held.close()
        else:
            self._held.__exit__(type(failure), failure, failure.__traceback__)

    def run_epoch(self) -> bool:
        """The epoch's batches from batch_in_epoch on; False when training stops inside the epoch."""
        for x in self.data.source.batches(self.epoch, self.batch_in_epoch):
            self.run_step(x)
            if self.step >= self.total_steps and self.batch_in_epoch < self.data.source.num_batches:
                return False  # (at an epoch's last batch, the epoch ends instead)
            self._stop_if_asked()
        return True

    def run_step(self, x: torch.Tensor) -> None:
        """One batch: forward and backward, then Adam's step at the step's rate unless the loss is not
        finite (--skip-bad-batches); a metrics row every log_every steps, a checkpoint every checkpoint_every."""
        out, mu = self.forward_backward(x)
        if out is None:  # skipped
            return
        for group in self.optimizer.param_groups:  # a function of the step alone, so a resumed run gets the same
            group["lr"] = learning_rate(self.cfg, self.epoch, self.step, self.schedule_steps)
        self.optimizer.step()
        if self.average:
            self.average.update(self.step)
        self.step += 1
        self.window.add(out, mu)
        if self.step % self.cfg.log_every == 0 or self.step == self.total_steps:
            self.log()
        self.logs.bar.update(1)
        if self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0:
            self.save()

    def forward_backward(self, x: torch.Tensor) -> tuple[dict | None, torch.Tensor | None]:
        """The forward pass and loss, then the gradients: (loss dict, mu), or (None, None) for a batch
        skipped because its loss is not finite."""
        eps = torch.randn(self.cfg.batch_size, self.cfg.latent_dim, device=self.device)  # the global batch's noise
        eps = eps[self.procs.rank * len(x):(self.procs.rank + 1) * len(x)]
        saved_bn = [b.clone() for b in self.bn_buffers]
        out, mu = self.step_fn(x, eps)
        self.batch_in_epoch += 1
        # decided on all processes together: one skipping or stopping alone would leave the others
        # waiting in a collective
        if self.check_each_step and any_process(~torch.isfinite(out["loss"]), self.procs, self.device):
            self._skip_batch(out, saved_bn)
            return None, None
        self.optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        return out, mu

    def _skip_batch(self, out: dict, saved_bn: list[torch.Tensor]) -> None:
        """Drop a batch whose loss is not finite, undoing what its forward pass did to the BatchNorm
        running statistics; one more than --skip-bad-batches allows stops training."""
        self.skipped += 1
        if self.skipped > self.cfg.skip_bad_batches:
            _diverged(self.run, self.step + 1, nonfinite_terms(out))
        for b, saved in zip(self.bn_buffers, saved_bn):
            b.copy_(saved)
        self.optimizer.zero_grad(set_to_none=True)

    def log(self) -> None:
        """The metrics row of the steps since the last one (the one host sync of the window)."""
        now = time.perf_counter()
        row = self.window.read(self.procs)  # over all processes' shards of the global batches
        if any_process(not math.isfinite(row["loss"]), self.procs, self.device):
            _diverged(self.run, self.step, nonfinite_terms(row))
        images, self.images_untimed = row.pop("n") - self.images_untimed, 0
        row.update(step=self.step, epoch=self.epoch, images_per_s=images / (now - self.t_last),
                   elapsed_s=now - self.t_start)
        self.t_last = now
        if self.procs.is_main:
            self.logs.metrics.append(row)
            add_scalars(self.logs.writer, "train", row, self.step)
            self.logs.bar.set_postfix(loss=f"{row['loss']:.4g}", kl=f"{row['kl']:.3g}", active=row["active_units"])
            if self.on_progress:
                self.on_progress(self.step, self.total_steps)

    def payload(self) -> dict:
        """What a checkpoint holds: everything a resumed run continues exactly from."""
        trained = {"trained_model": self.model.state_dict()} if self.average else {}  # what a resume trains on
        return {"config": self.cfg.to_dict(), "meta": self.meta, "model": self.output_model.state_dict(), **trained,
                "optimizer": self.optimizer.state_dict(), "step": self.step, "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch, "rng": rng_state(self.device),
                "window": self.window.state(self.procs), "elapsed_s": time.perf_counter() - self.t_start}

    def save(self, epoch_name: str | None = None) -> None:
        """Checkpoint, never over good weights with non-finite ones (all processes check, and agree)."""
        finite = finite_weights(self.model) and (self.average is None or finite_weights(self.average.model))
        if any_process(not finite, self.procs, self.device):
            _diverged(self.run, self.step, "the weights")
        payload = self.payload()  # on every process: the log window is summed over them
        if self.procs.is_main:
            save_checkpoint(self.run, payload, epoch_name=epoch_name)

    def calibrate(self) -> dict:
        """Fit the latent's calibration (rank 0: the one whose weights are saved); its KL before and after.
        The weights' average first gets the BatchNorm statistics of its own weights."""
        # the faces come from the training split where it is held on the GPU: no host conversion or copy
        read = self.data.source.floats
        if self.average:
            self.average.recompute_batchnorm(self.data.cache.images, self.data.calibration_idx, self.device, read=read)
        return fit_latent_calibration(self.output_model, self.data.cache.images, self.data.calibration_idx,
                                      self.device, self.cfg.calibrate_latent, read=read)

    def end_epoch(self) -> None:
        """An epoch's end: the latent's calibration, the held-out evaluation, the grids and the curves
        (rank 0), and the epoch's checkpoint."""
        self.epoch += 1
        self.batch_in_epoch = 0
        if self.procs.is_main:
            calibration = self.calibrate()
            summary = evaluate_fixed_set(self.output_model, self.loss_fn, self.data.eval_x, self.device, self.autocast)
            self.logs.epochs.append({"epoch": self.epoch, "step": self.step, **summary, **calibration})
            add_scalars(self.logs.writer, "held_out", summary, self.step)
            save_epoch_grids(self.output_model, self.data.eval_x, self.run / "grids", self.epoch, self.cfg.seed,
                             self.device, self.caption)
        self.save(epoch_name=f"epoch_{self.epoch:03d}.pt")
        if self.procs.is_main:
            plot_curves([self.run], self.run / "curves.png")
            tqdm.write(f"epoch {self.epoch}: eval loss {summary['eval_loss']:.4g}, recon {summary['eval_recon']:.4g}, "
                       f"KL {summary['eval_kl']:.3g}, active units {summary['active_units']}/{self.cfg.latent_dim}")
        self.model.train()

    def finish(self) -> None:
        """Stopped inside an epoch (max_steps): calibrate and keep where we are. Then the curves, unless
        an epoch's end has just drawn them, and the processes' teardown."""
        self.logs.bar.close()
        if self.batch_in_epoch:
            if self.procs.is_main:
                self.calibrate()
            self.save()
        if self.procs.is_main and (self.batch_in_epoch or not (self.run / "curves.png").is_file()):
            plot_curves([self.run], self.run / "curves.png")
        self._close()

    def _stop_if_asked(self) -> None:
        """After a SIGINT or SIGTERM, and while steps remain: save a checkpoint at this step, as a periodic
        save does, and raise TrainingInterrupted. Under data parallelism the processes agree to stop at the
        same step, at the metrics rows (which read the device anyway)."""
        if self.step >= self.total_steps:
            return  # the run's end is as near as a checkpoint
        if self.procs.world == 1:
            asked = self.stop.requested
        else:
            asked = self.step % self.cfg.log_every == 0 and any_process(self.stop.requested, self.procs, self.device)
        if not asked:
            return
        self.logs.bar.close()
        self.save()
        self._close()
        resume = f"dfc-vae train --out {shlex.quote(str(self.cfg.out))} --resume"
        raise TrainingInterrupted(f"interrupted at step {self.step}: saved; continue with {resume}"
                                  if self.procs.is_main else "")

    def _close(self) -> None:
        """TensorBoard's files closed, and the processes' teardown."""
        if self.procs.is_main and self.logs.writer is not None:
            self.logs.writer.close()
        teardown_processes(self.procs)


def _load_data(cfg: TrainConfig, faces, procs: Processes, device: torch.device, progress: bool) -> _Data:
    """Decode the faces once into the cache (rank 0 first, so the others find it made); the training
    batches, the held-out set (the validation split, or training faces without one) and the
    calibration faces."""
    if procs.is_main:
        report_notes(faces)
        cache = prepare_cache(faces, cfg.image_size, cfg.crop, cfg.cache_dir, cfg.workers or None, progress)
    barrier(procs)
    if not procs.is_main:
        cache = prepare_cache(faces, cfg.image_size, cfg.crop, cfg.cache_dir, cfg.workers or None, False)
    train_idx = faces.indices("train")
    eval_idx = faces.indices("valid")[:EVAL_IMAGES]
    if len(eval_idx) < 16:
        eval_idx = train_idx[:EVAL_IMAGES]
    source = BatchSource(cache.images, train_idx, cfg.batch_size, device, cfg.seed, cfg.flip, procs.rank, procs.world)
    return _Data(cache, len(train_idx), source, read_rows(cache.images, np.sort(eval_idx)),
                 np.sort(train_idx[:CALIBRATION_IMAGES]))


def _diverged(run: Path, step: int, what: str):
    """Stop training: `what` went non-finite at `step`, with what the run directory still holds."""
    ckpt = latest_checkpoint(run)
    kept = f"the last good checkpoint {ckpt} is intact" if ckpt else "no checkpoint was written yet"
    raise TrainingDiverged(f"{what} became NaN/Inf at step {step}; {kept}. Lower --lr, or pass --skip-bad-batches N "
                           "to skip such batches")
