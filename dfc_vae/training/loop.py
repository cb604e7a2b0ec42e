"""The training loop: data, model, loss, optimizer, logging, checkpoints, grids, resume.

`_train` reads top to bottom: `_set_up` (settings, devices, processes, data, model, resume, logs), then
per epoch `_train_epoch` (one `_optimizer_step` per batch) and `_end_epoch`, and `_finish`.
Everything a run makes goes into its run directory:
  config.json     resolved settings + provenance (data, VGG weights, versions)
  metrics.csv     a row every `log_every` steps: loss, recon, kl, active units, images/s
  epochs.csv      a row per epoch: the same on a fixed held-out set, in eval mode, through the latent's
                  calibration (model.py), fitted at every epoch's end on up to CALIBRATION_IMAGES training
                  faces (their mean KL per image before and after it: kl_uncalibrated, kl_calibrated)
  checkpoints/    latest.pt (also every `checkpoint_every` steps) and epoch_NNN.pt
  grids/          epoch_NNN_recon.png (inputs above reconstructions), epoch_NNN_samples.png (z ~ N(0, I))
  curves.png      loss, reconstruction, KL and active units against the step (curves.py), at every epoch's end
  tensorboard/    the same rows as TensorBoard event files, with --tensorboard
  .lock           the run directory's lock (runlock.py): one `train` (or other writer) at a time
"""

from __future__ import annotations

import copy
import csv
import io
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from dfc_vae import __version__
from dfc_vae.util.choices import ACTIVE_UNIT_THRESHOLD
from dfc_vae.runs.checkpoint import latest_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from dfc_vae.runs.config import TrainConfig
from dfc_vae.training.curves import plot_curves
from dfc_vae.data.batches import BatchSource
from dfc_vae.util.images import to_tensor
from dfc_vae.util.device import autocast_for, resolve_device, resolve_precision  # noqa: F401 (also this module's API)
from dfc_vae.training.distributed import Processes, any_process, barrier, data_parallel, launched_rank, world_size
from dfc_vae.training.distributed import setup as setup_processes, teardown as teardown_processes
from dfc_vae.data.faces import report_notes
from dfc_vae.data.sources import open_faces
from dfc_vae.util.errors import UserError
from dfc_vae.util.fileio import write_json, write_text
from dfc_vae.util.images import grid, provenance, save_png, to_uint8
from dfc_vae.model.losses import DFCLoss, active_units, kl_divergence
from dfc_vae.model.network import DFCVAE
from dfc_vae.util.runlock import LOCK_NAME, run_lock
from dfc_vae.data.cache import prepare_cache

METRIC_COLUMNS = ["step", "epoch", "loss", "recon", "kl", "active_units", "images_per_s", "elapsed_s"]
EPOCH_COLUMNS = ["epoch", "step", "eval_loss", "eval_recon", "eval_kl", "active_units", "images", "kl_uncalibrated",
                 "kl_calibrated"]
# Settings a resumed run may change; everything else must match the run's config.json.
RESUMABLE_OVERRIDES = {"epochs", "max_steps", "log_every", "checkpoint_every", "device", "compile", "precision",
                       "calibrate_latent", "skip_bad_batches", "workers", "cache_dir", "data", "out"}
EVAL_IMAGES = 1024
CALIBRATION_IMAGES = 10_000  # per-dimension means and second moments to ~1.4% (sqrt(2 / n))


class TrainingDiverged(UserError):
    pass


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
        mu, logvar = self.model.encode_raw(x)  # training sees the raw latent (model.py: calibration)
        return self.model.decode_raw(self.model.reparameterize(mu, logvar, eps)), mu, logvar


class WeightAverage:
    """An exponential moving average of a model's weights (Polyak & Juditsky 1992), the model a run
    evaluates and saves. Decay min(d, (1 + t) / (10 + t)) at step t (TensorFlow's warm-up), so the
    first steps do not average in the random initialization. The trained weights' BatchNorm running
    statistics do not fit the averaged weights, so `recompute_batchnorm` measures the average's own
    (as stochastic weight averaging does, Izmailov et al. 2018) before it is evaluated or saved."""

    def __init__(self, model: DFCVAE, decay: float):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self._params = list(self.model.parameters())
        self._trained = [p.detach() for p in model.parameters()]  # views: they follow the optimizer's updates

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Move the average towards the trained weights after optimizer step `step` (0-based)."""
        decay = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self._params, self._trained, 1 - decay)

    @torch.no_grad()
    def recompute_batchnorm(self, images: np.ndarray, rows: np.ndarray, device: torch.device, batch_size: int = 256) -> None:
        """BatchNorm statistics of the averaged weights: the mean over training-mode forward passes of
        images[rows] (uint8 cache rows), with the training view's sampled z; the global RNG is left as
        it was, so training goes on drawing what it would have drawn."""
        norms = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the pass
        self.model.train()
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            for i in range(0, len(rows), batch_size):
                x = to_tensor(images[rows[i:i + batch_size]]).to(device, memory_format=torch.channels_last)
                self.model(x)
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        self.model.eval()


def _batchnorm_buffers(model: nn.Module) -> list[torch.Tensor]:
    return [b for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            for b in (m.running_mean, m.running_var, m.num_batches_tracked)]


def run_directory(cfg: TrainConfig) -> Path:
    """The run directory --out names (not yet checked for what it holds)."""
    if not cfg.out:
        raise UserError("no run directory given; pass --out RUN")
    run = Path(cfg.out)
    if run.exists() and not run.is_dir():
        raise UserError(f"--out {run} is a file; give a folder for the run")
    return run


def check_run_dir(cfg: TrainConfig, resume: bool) -> tuple[Path, dict | None]:
    """The run directory, and the saved config when resuming; refuses to overwrite another run."""
    run = run_directory(cfg)
    saved = run / "config.json"
    if resume:
        if not saved.is_file():
            raise UserError(f"{run} holds no run to resume; start it without --resume")
        import json

        # a run killed before its first checkpoint resumes from step 0 with its saved settings
        return run, json.loads(saved.read_text())["config"]
    if run.is_dir() and any(p.name != LOCK_NAME for p in run.iterdir()):
        if saved.is_file() and latest_checkpoint(run) is not None:
            raise UserError(f"{run} already holds a run; pass --resume to continue it, or choose another --out")
        if saved.is_file():  # killed before its first checkpoint: nothing to lose, start again
            return run, None
        raise UserError(f"{run} exists, is not empty and is not a dfc_vae run; choose another --out")
    return run, None


def merge_resume_config(saved: dict, cfg: TrainConfig) -> TrainConfig:
    # a setting newer than the run is missing from its config.json: the run had its default
    saved = {f.name: f.default for f in fields(TrainConfig)} | saved
    changed = [k for k, v in cfg.to_dict().items() if k not in RESUMABLE_OVERRIDES and saved.get(k) != v]
    if changed:
        k = changed[0]
        raise UserError(f"--{k.replace('_', '-')} {getattr(cfg, k)} differs from the run's {saved.get(k)!r}; "
                        "a resumed run keeps its settings (only epochs, max-steps, device and logging may change)")
    return cfg


class _CSVLog:
    """Appends rows to a CSV; on resume, first drops rows past the checkpoint's step."""

    def __init__(self, path: Path, columns: list[str], keep_until: int | None, key: str):
        self.path, self.columns = path, columns
        rows = []
        if keep_until is not None and path.is_file():
            with open(path, newline="") as f:
                for row in csv.DictReader(f):
                    try:
                        if row.get(key) and int(row[key]) <= keep_until:
                            rows.append(row)
                    except ValueError:  # a half-written last line of a killed run
                        pass
        buf = io.StringIO()
        w = csv.DictWriter(buf, columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        write_text(path, buf.getvalue())

    def append(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.columns, extrasaction="ignore").writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True, tensorboard: bool = False) -> Path:
    """Train a DFC-VAE as `cfg` says; returns the run directory.

    Every setting is checked before anything is written; the run directory is locked (runlock.py)
    for as long as training runs, so a second `train` on it is refused. `tensorboard` also writes
    the logged rows as TensorBoard event files into RUN/tensorboard (the `tensorboard` extra)."""
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
        return _train(cfg, faces, resume, progress, writer_class)


def tensorboard_writer():
    """torch.utils.tensorboard's SummaryWriter, or a UserError saying how to install it."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("--tensorboard needs the tensorboard package; install it with "
                        "`pip install 'dfc_vae[tensorboard]'` (or `pip install tensorboard`), or drop --tensorboard") from None
    return SummaryWriter


@dataclass
class _Data:
    """The decoded faces and what training draws from them."""
    cache: Any  # the uint8 cache of the faces (data.py): .images (N, S, S, 3), .path
    train_images: int
    source: BatchSource  # the training batches
    eval_x: torch.Tensor  # the fixed held-out set, (n, 3, S, S) in [0, 1]
    calibration_idx: np.ndarray  # the training faces the latent's calibration is fitted on (cache rows)


@dataclass
class _Logs:
    """Where rows go (rank 0 alone writes: elsewhere they are None) and the progress bar."""
    metrics: _CSVLog | None
    epochs: _CSVLog | None
    writer: Any  # TensorBoard's SummaryWriter, with --tensorboard
    bar: Any


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
    logs: _Logs | None = None
    window: _Window | None = None
    check_each_step: bool = False  # read each step's loss back (a CPU step syncs anyway)
    bn_buffers: list[torch.Tensor] = field(default_factory=list)  # restored after a skipped batch
    skipped: int = 0
    t_start: float = 0.0
    t_last: float = 0.0  # when the last metrics row was written
    average: WeightAverage | None = None  # --ema-decay

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
        if self.average:
            self.average.recompute_batchnorm(self.data.cache.images, self.data.calibration_idx, self.device)
        return fit_latent_calibration(self.shown, self.data.cache.images, self.data.calibration_idx, self.device,
                                      self.cfg.calibrate_latent)


def _train(cfg: TrainConfig, faces, resume: bool, progress: bool, writer_class) -> Path:
    t = _set_up(cfg, faces, resume, progress, writer_class)
    while t.epoch < t.cfg.epochs and t.step < t.total_steps:
        if not _train_epoch(t):  # stopped inside the epoch (max_steps)
            break
        _end_epoch(t)
    _finish(t)
    return t.run


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
    total_steps = cfg.epochs * data.source.num_batches
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    t = _Training(cfg=cfg, run=run, procs=procs, device=device, data=data, model=model, loss_fn=loss_fn,
                  optimizer=optimizer, step_fn=step_fn, autocast=autocast_for(device, precision), meta=meta,
                  caption=provenance(faces.synthetic is not None, meta["vgg_weights"]), step=step, epoch=epoch,
                  batch_in_epoch=batch_in_epoch, total_steps=total_steps, average=average)
    t.logs = _open_logs(t, resume, progress, writer_class)
    t.window = _Window(cfg.latent_dim, device)
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
    return _Data(cache, len(train_idx), source, to_tensor(cache.images[np.sort(eval_idx)]),
                 np.sort(train_idx[:CALIBRATION_IMAGES]))


def _open_logs(t: _Training, resume: bool, progress: bool, writer_class) -> _Logs:
    """config.json, metrics.csv and epochs.csv (resuming: cut back to the checkpoint), TensorBoard's
    events, the provenance notes (rank 0 alone), and the progress bar."""
    from tqdm.auto import tqdm

    metrics = epochs = writer = None
    if t.procs.is_main:
        write_json(t.run / "config.json", {"config": t.cfg.to_dict(), "meta": t.meta})
        metrics = _CSVLog(t.run / "metrics.csv", METRIC_COLUMNS, t.step if resume else None, "step")
        epochs = _CSVLog(t.run / "epochs.csv", EPOCH_COLUMNS, t.epoch if resume else None, "epoch")
        if writer_class is not None:  # events past the checkpoint's step, of a killed run, are dropped
            writer = writer_class(str(t.run / "tensorboard"), purge_step=t.step if resume else None)
        for line in t.caption:
            print(f"note: {line}")
    bar = tqdm(total=t.total_steps, initial=min(t.step, t.total_steps), desc=f"train {t.cfg.loss}", unit="step",
               disable=not (progress and t.procs.is_main), dynamic_ncols=True)
    return _Logs(metrics, epochs, writer, bar)


def _train_epoch(t: _Training) -> bool:
    """The epoch's batches from batch_in_epoch on; False when training stops inside the epoch."""
    for group in t.optimizer.param_groups:  # from the epoch alone, so a resumed run gets the same rate
        group["lr"] = learning_rate(t.cfg, t.epoch)
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
    row = t.window.read()
    if any_process(not math.isfinite(row["loss"]), t.procs, t.device):
        _diverged(t.run, t.step, nonfinite_terms(row))
    row.update(step=t.step, epoch=t.epoch, images_per_s=row.pop("n") * t.procs.world / (now - t.t_last),
               elapsed_s=now - t.t_start)
    t.t_last = now
    if t.procs.is_main:
        t.logs.metrics.append(row)
        _add_scalars(t.logs.writer, "train", row, t.step)
        t.logs.bar.set_postfix(loss=f"{row['loss']:.4g}", kl=f"{row['kl']:.3g}", active=row["active_units"])


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
        _add_scalars(t.logs.writer, "held_out", summary, t.step)
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


def resume_from(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device,
                average: WeightAverage | None = None) -> tuple[int, int, int]:
    """Load a checkpoint into `model` and `optimizer` (and the weight average, if the run keeps one)
    and restore the RNG states; (step, epoch, batch).

    Loaded to the CPU: load_state_dict then places the model's and the optimizer's tensors where
    the parameters are, and the RNG states stay the CPU ByteTensors their setters want."""
    ckpt = load_checkpoint(path, map_location="cpu")
    model.load_state_dict(ckpt.get("trained_model", ckpt["model"]))
    if average:
        average.model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    set_rng_state(ckpt["rng"], device)
    return ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]


def learning_rate(cfg: TrainConfig, epoch: int) -> float:
    """The rate of the 0-based `epoch`: halved at the start of 1-based epochs N, 2N, ... (N = cfg.lr_halving).
    The official code meant `if epoch % 2 == 0 then lr = lr / 2` once per even (1-based) epoch."""
    return cfg.lr * 0.5 ** ((epoch + 1) // cfg.lr_halving) if cfg.lr_halving else cfg.lr


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


def _add_scalars(writer, prefix: str, row: dict, step: int) -> None:
    if writer is not None:
        for key, value in row.items():
            if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                writer.add_scalar(f"{prefix}/{key}", value, step)


class _Window:
    """Loss sums and posterior-mean moments since the last log, kept on the device (no sync)."""

    def __init__(self, latent_dim: int, device: torch.device):
        self.sums = torch.zeros(3, device=device)
        self.mu_sum = torch.zeros(latent_dim, device=device)
        self.mu_sq = torch.zeros(latent_dim, device=device)
        self.steps = 0
        self.n = 0

    @torch.no_grad()
    def add(self, out: dict, mu: torch.Tensor) -> None:
        self.sums += torch.stack([out["loss"].detach(), out["recon"].detach(), out["kl"].detach()]).float()
        mu = mu.detach().float()
        self.mu_sum += mu.sum(0)
        self.mu_sq += mu.pow(2).sum(0)
        self.steps += 1
        self.n += mu.shape[0]

    def read(self) -> dict:
        loss, recon, kl = (self.sums / max(self.steps, 1)).tolist()
        mean = self.mu_sum / max(self.n, 1)
        var = self.mu_sq / max(self.n, 1) - mean.pow(2)
        row = {"loss": loss, "recon": recon, "kl": kl, "active_units": int((var > ACTIVE_UNIT_THRESHOLD).sum()), "n": self.n}
        self.sums.zero_(), self.mu_sum.zero_(), self.mu_sq.zero_()
        self.steps = self.n = 0
        return row


@torch.no_grad()
def fit_latent_calibration(model: DFCVAE, images: np.ndarray, rows: np.ndarray, device, enabled: bool = True) -> dict:
    """Fit the model's latent calibration (model.py) to the eval-mode posteriors of images[rows]
    (uint8 cache rows); returns their mean KL per image in the raw and the calibrated latent.
    Touches no random state, no BatchNorm statistics and nothing the optimizer sees, so training,
    and resuming it, go on exactly as without it. `enabled=False` keeps the identity."""
    if not enabled:
        return {}
    model.eval()
    out = [model.encode_raw(to_tensor(images[rows[i:i + 512]]).to(device)) for i in range(0, len(rows), 512)]
    mu, logvar = (torch.cat(t).float() for t in zip(*out))
    model.calibrate_latent(mu, logvar)
    return {"kl_uncalibrated": float(kl_divergence(mu, logvar).mean()),
            "kl_calibrated": float(kl_divergence(*model.calibrated(mu, logvar)).mean())}


@torch.no_grad()
def evaluate_fixed_set(model: DFCVAE, loss_fn: DFCLoss, x: torch.Tensor, device, autocast=nullcontext()) -> dict:
    """Eval-mode loss terms on held-out images, decoding the posterior mean; active units."""
    model.eval()
    recon_sum, kl_sum, mus = 0.0, 0.0, []
    for i in range(0, len(x), 128):
        xb = x[i:i + 128].to(device)
        with autocast:
            mu, logvar = model.encode(xb)
            rec = loss_fn.reconstruction(xb, model.decode(mu))
        recon_sum += float(rec.float().sum())
        kl_sum += float(kl_divergence(mu.float(), logvar.float()).sum())
        mus.append(mu.float())
    n = len(x)
    recon, kl = recon_sum / n, kl_sum / n
    return {"eval_loss": loss_fn.alpha * kl + loss_fn.beta * recon, "eval_recon": recon, "eval_kl": kl,
            "active_units": active_units(torch.cat(mus)), "images": n}


@torch.no_grad()
def save_epoch_grids(model: DFCVAE, x: torch.Tensor, folder: Path, epoch: int, seed: int, device, caption):
    """Inputs over their reconstructions, and 64 samples from fixed z ~ N(0, I) (a private RNG)."""
    model.eval()
    xb = x[:16].to(device)
    recon = model.decode(model.encode(xb)[0])
    pairs = np.concatenate([to_uint8(xb[:8]), to_uint8(recon[:8]), to_uint8(xb[8:16]), to_uint8(recon[8:16])])
    save_png(folder / f"epoch_{epoch:03d}_recon.png", grid(pairs, 8), caption + [f"epoch {epoch}: rows 1 and 3 inputs, rows 2 and 4 reconstructions"])
    z = torch.randn(64, model.config.latent_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    save_png(folder / f"epoch_{epoch:03d}_samples.png", grid(to_uint8(model.decode(z)), 8),
             caption + [f"epoch {epoch}: decoded z ~ N(0, I)"])
