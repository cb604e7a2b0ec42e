"""The training loop: a run's set-up, its epochs of optimizer steps, each epoch's end, and its finish.

`train` checks the settings and locks the run directory (rundir.py); `_train` then reads top to
bottom, in named pieces: `_set_up` (settings, devices, processes, data, model, resume, logs), per
epoch `_train_epoch` (one `_optimizer_step` per batch) and `_end_epoch` (measures.py, the epoch's
checkpoint), and `_finish`. `_Training` holds what the pieces share and where the run stands; its
`save` and `calibrate` are the checkpoint and the latent's calibration. The step's own parts
(`TrainStep`, `make_step_fn`, `make_optimizer`, `learning_rate`) and the divergence checks are here
too; experiments build a step from them.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

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
from dfc_vae.training.distributed import Processes, any_process, barrier, data_parallel, launched_rank, world_size
from dfc_vae.training.distributed import setup as setup_processes, teardown as teardown_processes
from dfc_vae.training.logs import EPOCH_COLUMNS, METRIC_COLUMNS, CSVLog, Logs, StepWindow, add_scalars, tensorboard_writer
from dfc_vae.training.measures import (CALIBRATION_IMAGES, EVAL_IMAGES, evaluate_fixed_set, fit_latent_calibration,
                                       save_epoch_grids)
from dfc_vae.training.rundir import (RESUMABLE_OVERRIDES, check_run_dir, merge_resume_config, resume_from,
                                     run_directory)
from dfc_vae.util.device import autocast_for, autotune_convolutions, resolve_device, resolve_precision
from dfc_vae.util.errors import UserError
from dfc_vae.util.fileio import write_json
from dfc_vae.util.images import provenance
from dfc_vae.util.runlock import run_lock

# the names this module has always offered, wherever they now live
__all__ = ["CALIBRATION_IMAGES", "EPOCH_COLUMNS", "EVAL_IMAGES", "METRIC_COLUMNS", "RESUMABLE_OVERRIDES", "TrainStep",
           "TrainingDiverged", "WeightAverage", "autocast_for", "check_run_dir", "evaluate_fixed_set",
           "finite_weights", "fit_latent_calibration", "learning_rate", "make_optimizer", "make_step_fn",
           "merge_resume_config", "nonfinite_terms", "resolve_device", "resolve_precision", "resume_from",
           "run_directory", "save_epoch_grids", "tensorboard_writer", "train"]


class TrainingDiverged(UserError):
    """A loss term or the weights became NaN/Inf; the last good checkpoint is kept."""


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True, tensorboard: bool = False,
          on_progress: Callable[[int, int], None] | None = None) -> Path:
    """Train a DFC-VAE as `cfg` says; returns the run directory.

    Every setting is checked before anything is written; the run directory is locked (util/runlock.py)
    for as long as training runs, so a second `train` on it is refused. `tensorboard` also writes
    the logged rows as TensorBoard event files into RUN/tensorboard (the `tensorboard` extra). `on_progress(step,
    total_steps)` is called (rank 0) with every metrics row: e.g. an estimate of the time left."""
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
    run = run_directory(cfg)
    if launched_rank() != 0:  # under torchrun rank 0 alone writes, and holds the lock
        return _train(cfg, faces, resume, progress, writer_class)
    with run_lock(run, "train"):
        return _train(cfg, faces, resume, progress, writer_class, on_progress)


def _train(cfg: TrainConfig, faces, resume: bool, progress: bool, writer_class, on_progress=None) -> Path:
    """Set up, then epochs (each ended by `_end_epoch`) until the last epoch or max_steps, then finish."""
    t = _set_up(cfg, faces, resume, progress, writer_class)
    t.on_progress = on_progress
    while t.epoch < t.cfg.epochs and t.step < t.total_steps:
        if not _train_epoch(t):  # stopped inside the epoch (max_steps)
            break
        _end_epoch(t)
    _finish(t)
    return t.run


@dataclass
class _Data:
    """The decoded faces and what training draws from them."""
    cache: Any  # the uint8 cache of the faces (data/cache.py): .images (N, S, S, 3), .path
    train_images: int
    source: BatchSource  # the training batches
    eval_x: torch.Tensor  # the fixed held-out set, (n, 3, S, S) in [0, 1]
    calibration_idx: np.ndarray  # the training faces the latent's calibration is fitted on (cache rows)


@dataclass
class _Training:
    """What the loop works with, and where it stands: step, epoch and batch_in_epoch, which a
    checkpoint keeps and a resumed run starts from."""
    cfg: TrainConfig
    run: Path
    procs: Processes
    device: torch.device
    data: _Data
    model: DFCVAE
    loss_fn: DFCLoss
    optimizer: torch.optim.Optimizer
    step_fn: Callable  # make_step_fn's f(x, eps) -> (loss dict, mu)
    autocast: Any
    meta: dict
    caption: list[str]
    step: int
    epoch: int
    batch_in_epoch: int
    total_steps: int
    schedule_steps: int = 0  # the steps of the epochs asked for, which the rate's decay spans
    per_step_rate: bool = False  # a warm-up or decay: each step sets its rate
    logs: Logs | None = None
    window: StepWindow | None = None
    check_each_step: bool = False  # read each step's loss back (a CPU step syncs anyway)
    bn_buffers: list[torch.Tensor] = field(default_factory=list)  # restored after a skipped batch
    skipped: int = 0
    t_start: float = 0.0
    t_last: float = 0.0  # when the last metrics row was written
    average: WeightAverage | None = None  # --ema-decay
    on_progress: Callable[[int, int], None] | None = None  # told (step, total_steps) with each metrics row

    @property
    def shown(self) -> DFCVAE:
        """The model evaluated, calibrated, drawn and saved: the weights' average, or the trained weights."""
        return self.average.model if self.average else self.model

    def payload(self) -> dict:
        trained = {"trained_model": self.model.state_dict()} if self.average else {}  # what a resume trains on
        return {"config": self.cfg.to_dict(), "meta": self.meta, "model": self.shown.state_dict(), **trained,
                "optimizer": self.optimizer.state_dict(), "step": self.step, "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch, "rng": rng_state(self.device)}

    def save(self, epoch_name: str | None = None) -> None:
        """Checkpoint, never over good weights with non-finite ones (all processes check, and agree)."""
        finite = finite_weights(self.model) and (self.average is None or finite_weights(self.average.model))
        if any_process(not finite, self.procs, self.device):
            _diverged(self.run, self.step, "the weights")
        if self.procs.is_main:
            save_checkpoint(self.run, self.payload(), epoch_name=epoch_name)

    def calibrate(self) -> dict:
        """Fit the latent's calibration (rank 0: the one whose weights are saved); its KL before and after.
        The weights' average first gets the BatchNorm statistics of its own weights."""
        # the faces come from the training split where it is held on the GPU: no host conversion or copy
        read = self.data.source.floats
        if self.average:
            self.average.recompute_batchnorm(self.data.cache.images, self.data.calibration_idx, self.device, read=read)
        return fit_latent_calibration(self.shown, self.data.cache.images, self.data.calibration_idx, self.device,
                                      self.cfg.calibrate_latent, read=read)


def _set_up(cfg: TrainConfig, faces, resume: bool, progress: bool, writer_class) -> _Training:
    """Settings (a resumed run's own), processes, seeds, data, model, loss, optimizer, the checkpoint
    resumed from, and the logs; in this order, which the numbers of a seeded run depend on."""
    run, saved = check_run_dir(cfg, resume)
    resume = resume and latest_checkpoint(run) is not None
    if saved is not None:
        cfg = merge_resume_config(saved, cfg)
    if cfg.deterministic:  # before anything touches cuBLAS, which reads its workspace setting once
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    # the device first: the process group's backend follows it (gloo for --device cpu on a GPU host)
    procs, device = setup_processes(resolve_device(cfg.device))
    autotune_convolutions(device, cfg.deterministic)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    data = _load_data(cfg, faces, procs, device, progress)

    # model, loss, optimizer (channels_last: batches arrive NHWC-strided from the cache)
    model = DFCVAE(cfg.model_config()).to(device, memory_format=torch.channels_last)
    loss_fn = DFCLoss(cfg.loss, cfg.alpha, cfg.beta, cfg.vgg_weights, cfg.reduction).to(device, memory_format=torch.channels_last)
    optimizer = make_optimizer(model, cfg, device)
    average = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay else None
    step, epoch, batch_in_epoch = 0, 0, 0
    if resume:
        step, epoch, batch_in_epoch = resume_from(latest_checkpoint(run), model, optimizer, device, average)
    step_module = data_parallel(TrainStep(model), procs, device)
    precision = resolve_precision(cfg.precision, device)
    step_fn = make_step_fn(step_module, loss_fn, device, cfg.compile, precision)

    meta = {**faces.provenance(), "train_images": data.train_images, "cache": str(data.cache.path),
            "vgg_weights": loss_fn.vgg_weights_description, "dfc_vae": __version__, "torch": str(torch.__version__),
            "device": str(device), "precision": precision, "world_size": procs.world}
    # the rate's schedule spans the epochs asked for; --max-steps stops inside it
    schedule_steps = total_steps = cfg.epochs * data.source.num_batches
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    t = _Training(cfg=cfg, run=run, procs=procs, device=device, data=data, model=model, loss_fn=loss_fn,
                  optimizer=optimizer, step_fn=step_fn, autocast=autocast_for(device, precision), meta=meta,
                  caption=provenance(faces.synthetic is not None, meta["vgg_weights"]), step=step, epoch=epoch,
                  batch_in_epoch=batch_in_epoch, total_steps=total_steps, schedule_steps=schedule_steps,
                  per_step_rate=per_step_rate(cfg), average=average)
    t.logs = _open_logs(t, resume, progress, writer_class)
    t.window = StepWindow(cfg.latent_dim, device)
    t.check_each_step = device.type == "cpu" or cfg.skip_bad_batches > 0  # a CPU step syncs anyway
    # a skipped batch's forward pass has already moved the BatchNorm running statistics: keep a copy
    t.bn_buffers = _batchnorm_buffers(model) if cfg.skip_bad_batches else []
    t.t_start = t.t_last = time.perf_counter()
    model.train()
    return t


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


def _open_logs(t: _Training, resume: bool, progress: bool, writer_class) -> Logs:
    """config.json, metrics.csv and epochs.csv (resuming: cut back to the checkpoint), TensorBoard's
    events, the provenance lines printed (rank 0 alone), and the progress bar."""
    from tqdm.auto import tqdm

    metrics = epochs = writer = None
    if t.procs.is_main:
        write_json(t.run / "config.json", {"config": t.cfg.to_dict(), "meta": t.meta})
        metrics = CSVLog(t.run / "metrics.csv", METRIC_COLUMNS, t.step if resume else None, "step")
        epochs = CSVLog(t.run / "epochs.csv", EPOCH_COLUMNS, t.epoch if resume else None, "epoch")
        if writer_class is not None:  # events past the checkpoint's step, of a killed run, are dropped
            writer = writer_class(str(t.run / "tensorboard"), purge_step=t.step if resume else None)
        for line in t.caption:
            print(f"note: {line}")
    bar = tqdm(total=t.total_steps, initial=min(t.step, t.total_steps), desc=f"train {t.cfg.loss}", unit="step",
               disable=not (progress and t.procs.is_main), dynamic_ncols=True)
    return Logs(metrics, epochs, writer, bar)


def _train_epoch(t: _Training) -> bool:
    """The epoch's batches from batch_in_epoch on; False when training stops inside the epoch."""
    for group in t.optimizer.param_groups:  # from the epoch alone, so a resumed run gets the same rate
        group["lr"] = learning_rate(t.cfg, t.epoch, t.step, t.schedule_steps)
    for x in t.data.source.batches(t.epoch, t.batch_in_epoch):
        _optimizer_step(t, x)
        if t.step >= t.total_steps and t.batch_in_epoch < t.data.source.num_batches:
            return False  # (at an epoch's last batch, the epoch ends instead)
    return True


def _optimizer_step(t: _Training, x: torch.Tensor) -> None:
    """One batch: forward pass and loss, then backward and Adam's step unless the loss is not finite
    (--skip-bad-batches); a metrics row every log_every steps, a checkpoint every checkpoint_every."""
    cfg, procs = t.cfg, t.procs
    eps = torch.randn(cfg.batch_size, cfg.latent_dim, device=t.device)  # the global batch's noise
    eps = eps[procs.rank * len(x):(procs.rank + 1) * len(x)]
    saved_bn = [b.clone() for b in t.bn_buffers]
    out, mu = t.step_fn(x, eps)
    t.batch_in_epoch += 1
    # decided on all processes together: one skipping or stopping alone would leave the others
    # waiting in a collective
    if t.check_each_step and any_process(~torch.isfinite(out["loss"]), procs, t.device):
        _skip_batch(t, out, saved_bn)
        return
    t.optimizer.zero_grad(set_to_none=True)
    out["loss"].backward()
    if t.per_step_rate:
        for group in t.optimizer.param_groups:
            group["lr"] = learning_rate(cfg, t.epoch, t.step, t.schedule_steps)
    t.optimizer.step()
    if t.average:
        t.average.update(t.step)
    t.step += 1
    t.window.add(out, mu)
    if t.step % cfg.log_every == 0 or t.step == t.total_steps:
        _log_window(t)
    t.logs.bar.update(1)
    if cfg.checkpoint_every and t.step % cfg.checkpoint_every == 0:
        t.save()


def _skip_batch(t: _Training, out: dict, saved_bn: list[torch.Tensor]) -> None:
    """Drop a batch whose loss is not finite, undoing what its forward pass did to the BatchNorm
    running statistics; one more than --skip-bad-batches allows stops training."""
    t.skipped += 1
    if t.skipped > t.cfg.skip_bad_batches:
        _diverged(t.run, t.step + 1, nonfinite_terms(out))
    for b, saved in zip(t.bn_buffers, saved_bn):
        b.copy_(saved)
    t.optimizer.zero_grad(set_to_none=True)


def _log_window(t: _Training) -> None:
    """The metrics row of the steps since the last one (the one host sync of the window)."""
    now = time.perf_counter()
    row = t.window.read(t.procs)  # over all processes' shards of the global batches
    if any_process(not math.isfinite(row["loss"]), t.procs, t.device):
        _diverged(t.run, t.step, nonfinite_terms(row))
    row.update(step=t.step, epoch=t.epoch, images_per_s=row.pop("n") / (now - t.t_last),
               elapsed_s=now - t.t_start)
    t.t_last = now
    if t.procs.is_main:
        t.logs.metrics.append(row)
        add_scalars(t.logs.writer, "train", row, t.step)
        t.logs.bar.set_postfix(loss=f"{row['loss']:.4g}", kl=f"{row['kl']:.3g}", active=row["active_units"])
        if t.on_progress:
            t.on_progress(t.step, t.total_steps)


def _end_epoch(t: _Training) -> None:
    """An epoch's end: the latent's calibration, the held-out evaluation, the grids and the curves
    (rank 0), and the epoch's checkpoint."""
    from tqdm.auto import tqdm

    t.epoch += 1
    t.batch_in_epoch = 0
    if t.procs.is_main:
        calibration = t.calibrate()
        summary = evaluate_fixed_set(t.shown, t.loss_fn, t.data.eval_x, t.device, t.autocast)
        t.logs.epochs.append({"epoch": t.epoch, "step": t.step, **summary, **calibration})
        add_scalars(t.logs.writer, "held_out", summary, t.step)
        save_epoch_grids(t.shown, t.data.eval_x, t.run / "grids", t.epoch, t.cfg.seed, t.device, t.caption)
    t.save(epoch_name=f"epoch_{t.epoch:03d}.pt")
    if t.procs.is_main:
        plot_curves([t.run], t.run / "curves.png")
        tqdm.write(f"epoch {t.epoch}: eval loss {summary['eval_loss']:.4g}, recon {summary['eval_recon']:.4g}, "
                   f"KL {summary['eval_kl']:.3g}, active units {summary['active_units']}/{t.cfg.latent_dim}")
    t.model.train()


def _finish(t: _Training) -> None:
    """Stopped inside an epoch (max_steps): calibrate and keep where we are. Then the curves, unless
    an epoch's end has just drawn them, and the processes' teardown."""
    t.logs.bar.close()
    if t.batch_in_epoch:
        if t.procs.is_main:
            t.calibrate()
        t.save()
    if t.procs.is_main and (t.batch_in_epoch or not (t.run / "curves.png").is_file()):
        plot_curves([t.run], t.run / "curves.png")
    if t.procs.is_main and t.logs.writer is not None:
        t.logs.writer.close()
    teardown_processes(t.procs)


class TrainStep(nn.Module):
    """The model's forward pass with the reparameterization noise passed in.

    Under data parallelism every process draws the noise of the whole global batch (same seed)
    and passes in its own slice, so N processes see the noise a one-process run would.
    x: (B, 3, S, S) pixels in [0, 1]; eps: (B, latent_dim) ~ N(0, I) -> (recon, mu, logvar).
    """

    def __init__(self, model: DFCVAE):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, eps: torch.Tensor):
        mu, logvar = self.model.encode_raw(x)  # training sees the raw latent (model/network.py: calibration)
        return self.model.decode_raw(self.model.reparameterize(mu, logvar, eps)), mu, logvar


def learning_rate(cfg: TrainConfig, epoch: int, step: int = 0, schedule_steps: int = 0) -> float:
    """The rate of the 0-based optimizer `step` in the 0-based `epoch`, of a run planned for `schedule_steps`.

    Halved at the start of 1-based epochs N, 2N, ... (N = cfg.lr_halving): the official code meant `if epoch % 2 == 0
    then lr = lr / 2` once per even (1-based) epoch. A linear warm-up over cfg.warmup_steps, then with
    cfg.lr_schedule "cosine" a half cosine from the rate down to 0 at `schedule_steps`. A function of the step alone,
    so a resumed run takes the rates the uninterrupted one did."""
    rate = cfg.lr * 0.5 ** ((epoch + 1) // cfg.lr_halving) if cfg.lr_halving else cfg.lr
    if step < cfg.warmup_steps:
        rate *= (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "cosine" and schedule_steps:
        done = min(1.0, max(0, step - cfg.warmup_steps) / max(1, schedule_steps - cfg.warmup_steps))
        rate *= 0.5 * (1 + math.cos(math.pi * done))
    return rate


def per_step_rate(cfg: TrainConfig) -> bool:
    """Whether the rate changes within an epoch (a warm-up or a decay), so that each step sets its own."""
    return cfg.warmup_steps > 0 or cfg.lr_schedule != "constant"


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Adam:
    """Adam as the paper (lr 5e-4, beta1 0.5), with the fused kernel (one pass over all tensors)."""
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=True)


def make_step_fn(step_module: nn.Module, loss_fn: DFCLoss, device: torch.device, compile: bool = False,
                 precision: str = "fp32"):
    """f(x, eps) -> (loss dict, mu): forward pass and loss under autocast, ready for backward.

    Nothing here reads a value back to the host, so on CUDA the step never waits for the GPU.
    With `compile`, forward and loss run as one torch.compile graph (and so does their backward).
    """
    autocast = autocast_for(device, precision)

    def forward_loss(x, eps):
        with autocast:
            recon, mu, logvar = step_module(x, eps)
            return loss_fn(x, recon, mu, logvar), mu

    return torch.compile(forward_loss) if compile else forward_loss


def _diverged(run: Path, step: int, what: str):
    """Stop training: `what` went non-finite at `step`, with what the run directory still holds."""
    ckpt = latest_checkpoint(run)
    kept = f"the last good checkpoint {ckpt} is intact" if ckpt else "no checkpoint was written yet"
    raise TrainingDiverged(f"{what} became NaN/Inf at step {step}; {kept}. Lower --lr, or pass --skip-bad-batches N "
                           "to skip such batches")


def nonfinite_terms(values: dict) -> str:
    """Which loss term went non-finite ('the KL term', 'the reconstruction term', both, or 'the loss'
    when both terms are finite but their weighted sum is not), from a loss dict or a metrics row."""
    bad = [name for key, name in (("kl", "the KL term"), ("recon", "the reconstruction term"))
           if not math.isfinite(float(torch.as_tensor(values[key]).detach()))]
    return " and ".join(bad) if bad else "the loss"


def finite_weights(model: nn.Module) -> bool:
    """Whether every parameter and buffer is finite (one host sync)."""
    tensors = [t for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()]
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


def _batchnorm_buffers(model: nn.Module) -> list[torch.Tensor]:
    """The BatchNorm running statistics a skipped batch's forward pass has moved, to restore them."""
    return [b for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            for b in (m.running_mean, m.running_var, m.num_batches_tracked)]

