"""The training loop: data, model, loss, optimizer, logging, checkpoints, grids, resume.

Reads top to bottom: set-up (devices, processes, run directory), data, model, then the loop.
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
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from . import __version__
from .choices import ACTIVE_UNIT_THRESHOLD
from .checkpoint import latest_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import TrainConfig
from .curves import plot_curves
from .data import BatchSource, to_tensor
from .device import autocast_for, resolve_device, resolve_precision  # noqa: F401 (also this module's API)
from .distributed import any_process, data_parallel, world_size
from .distributed import setup as setup_processes, teardown as teardown_processes
from .faces import open_faces, report_notes
from .errors import UserError
from .fileio import write_json, write_text
from .images import grid, provenance, save_png, to_uint8
from .losses import DFCLoss, active_units, kl_divergence
from .model import DFCVAE
from .runlock import LOCK_NAME, run_lock

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
        z = mu + torch.exp(0.5 * logvar) * eps  # z = mu + sigma * eps (Kingma & Welling 2014, Sec. 2.4)
        return self.model.decode_raw(z), mu, logvar


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

    @torch.no_grad()
    def update(self, model: DFCVAE, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self._params, [p.detach() for p in model.parameters()], 1 - decay)

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
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun rank 0 alone writes, and holds the lock
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


def _train(cfg: TrainConfig, faces, resume: bool, progress: bool, writer_class) -> Path:
    from tqdm.auto import tqdm

    run, saved = check_run_dir(cfg, resume)
    resume = resume and latest_checkpoint(run) is not None
    if saved is not None:
        cfg = merge_resume_config(saved, cfg)
    if cfg.deterministic:  # before anything touches cuBLAS, which reads its workspace setting once
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    # the device first: the process group's backend follows it (gloo for --device cpu on a GPU host)
    procs, device = setup_processes(resolve_device(cfg.device))
    rank, world, is_main = procs.rank, procs.world, procs.is_main
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)

    # --- data: decode once into the cache (rank 0 first, so the others find it made)
    if is_main:
        report_notes(faces)
        cache = faces.cache(cfg.image_size, cfg.crop, cfg.cache_dir, cfg.workers or None, progress)
    if world > 1:
        dist.barrier()
    if not is_main:
        cache = faces.cache(cfg.image_size, cfg.crop, cfg.cache_dir, cfg.workers or None, False)
    train_idx = faces.indices("train")
    eval_idx = faces.indices("valid")[:EVAL_IMAGES]
    if len(eval_idx) < 16:
        eval_idx = train_idx[:EVAL_IMAGES]
    source = BatchSource(cache.images, train_idx, cfg.batch_size, device, cfg.seed, cfg.flip, rank, world)
    eval_x = to_tensor(cache.images[np.sort(eval_idx)])
    calibration_idx = np.sort(train_idx[:CALIBRATION_IMAGES])

    # --- model, loss, optimizer (channels_last: batches arrive NHWC-strided from the cache)
    model = DFCVAE(cfg.model_config()).to(device, memory_format=torch.channels_last)
    loss_fn = DFCLoss(cfg.loss, cfg.alpha, cfg.beta, cfg.vgg_weights, cfg.reduction).to(device, memory_format=torch.channels_last)
    optimizer = make_optimizer(model, cfg, device)
    average = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay else None
    shown = average.model if average else model  # the model evaluated, calibrated, drawn and saved
    step, epoch, batch_in_epoch = 0, 0, 0
    if resume:
        step, epoch, batch_in_epoch = resume_from(latest_checkpoint(run), model, optimizer, device, average)
    step_module = data_parallel(TrainStep(model), procs, device)
    precision = resolve_precision(cfg.precision, device)
    step_fn = make_step_fn(step_module, loss_fn, device, cfg.compile, precision)
    autocast = autocast_for(device, precision)

    synthetic = faces.synthetic is not None
    meta = {**faces.provenance(), "train_images": len(train_idx), "cache": str(cache.path),
            "vgg_weights": loss_fn.vgg_weights_description, "dfc_vae": __version__, "torch": str(torch.__version__),
            "device": str(device), "precision": precision, "world_size": world}
    caption = provenance(synthetic, meta["vgg_weights"])
    writer = None
    if is_main:
        write_json(run / "config.json", {"config": cfg.to_dict(), "meta": meta})
        metrics = _CSVLog(run / "metrics.csv", METRIC_COLUMNS, step if resume else None, "step")
        epochs_log = _CSVLog(run / "epochs.csv", EPOCH_COLUMNS, epoch if resume else None, "epoch")
        if writer_class is not None:  # events past the checkpoint's step, of a killed run, are dropped
            writer = writer_class(str(run / "tensorboard"), purge_step=step if resume else None)
        for line in caption:
            print(f"note: {line}")

    def payload() -> dict:
        trained = {"trained_model": model.state_dict()} if average else {}  # what a resume goes on training
        return {"config": cfg.to_dict(), "meta": meta, "model": shown.state_dict(), **trained,
                "optimizer": optimizer.state_dict(), "step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
                "rng": rng_state(device)}

    def save(epoch_name: str | None = None) -> None:
        """Checkpoint, never over good weights with non-finite ones (all processes check, and agree)."""
        if any_process(not (finite_weights(model) and finite_weights(shown)), procs, device):
            _diverged(run, step, "the weights")
        if is_main:
            save_checkpoint(run, payload(), epoch_name=epoch_name)

    total_steps = cfg.epochs * source.num_batches
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    check_each_step = device.type == "cpu" or cfg.skip_bad_batches > 0  # a CPU step syncs anyway
    bar = tqdm(total=total_steps, initial=min(step, total_steps), desc=f"train {cfg.loss}", unit="step",
               disable=not (progress and is_main), dynamic_ncols=True)
    window = _Window(cfg.latent_dim, device)
    skipped = 0
    # a skipped batch's forward pass has already moved the BatchNorm running statistics: keep a copy
    bn_buffers = _batchnorm_buffers(model) if cfg.skip_bad_batches else []
    t_last = time.perf_counter()
    t_start = t_last
    model.train()
    while epoch < cfg.epochs and step < total_steps:
        for group in optimizer.param_groups:  # from the epoch alone, so a resumed run gets the same rate
            group["lr"] = learning_rate(cfg, epoch)
        for x in source.batches(epoch, batch_in_epoch):
            eps = torch.randn(cfg.batch_size, cfg.latent_dim, device=device)  # the global batch's noise
            eps = eps[rank * len(x):(rank + 1) * len(x)]
            saved_bn = [b.clone() for b in bn_buffers]
            out, mu = step_fn(x, eps)
            loss = out["loss"]
            # decided on all processes together: one skipping or stopping alone would leave the others
            # waiting in a collective
            if check_each_step and any_process(~torch.isfinite(loss), procs, device):
                skipped += 1
                if skipped > cfg.skip_bad_batches:
                    _diverged(run, step + 1, nonfinite_terms(out))
                for b, saved in zip(bn_buffers, saved_bn):
                    b.copy_(saved)
                optimizer.zero_grad(set_to_none=True)
                batch_in_epoch += 1
                continue
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if average:
                average.update(model, step)
            step += 1
            batch_in_epoch += 1
            window.add(out, mu)
            if step % cfg.log_every == 0 or step == total_steps:
                now = time.perf_counter()
                row = window.read()  # the one host sync of the window
                if any_process(not math.isfinite(row["loss"]), procs, device):
                    _diverged(run, step, nonfinite_terms(row))
                row.update(step=step, epoch=epoch, images_per_s=row.pop("n") * world / (now - t_last),
                           elapsed_s=now - t_start)
                t_last = now
                if is_main:
                    metrics.append(row)
                    _add_scalars(writer, "train", row, step)
                    bar.set_postfix(loss=f"{row['loss']:.4g}", kl=f"{row['kl']:.3g}", active=row["active_units"])
            bar.update(1)
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                save()
            if step >= total_steps and batch_in_epoch < source.num_batches:
                break  # (at an epoch's last batch, fall through to the epoch's end instead)
        else:  # the epoch ran to its end
            epoch += 1
            batch_in_epoch = 0
            if is_main:
                if average:
                    average.recompute_batchnorm(cache.images, calibration_idx, device)
                calibration = fit_latent_calibration(shown, cache.images, calibration_idx, device, cfg.calibrate_latent)
                summary = evaluate_fixed_set(shown, loss_fn, eval_x, device, autocast)
                epochs_log.append({"epoch": epoch, "step": step, **summary, **calibration})
                _add_scalars(writer, "held_out", summary, step)
                save_epoch_grids(shown, eval_x, run / "grids", epoch, cfg.seed, device, caption)
            save(epoch_name=f"epoch_{epoch:03d}.pt")
            if is_main:
                plot_curves([run], run / "curves.png")
                tqdm.write(f"epoch {epoch}: eval loss {summary['eval_loss']:.4g}, recon {summary['eval_recon']:.4g}, "
                           f"KL {summary['eval_kl']:.3g}, active units {summary['active_units']}/{cfg.latent_dim}")
            model.train()
            continue
        break
    bar.close()
    if batch_in_epoch:  # stopped inside an epoch (max_steps): keep where we are
        if is_main:
            if average:
                average.recompute_batchnorm(cache.images, calibration_idx, device)
            fit_latent_calibration(shown, cache.images, calibration_idx, device, cfg.calibrate_latent)
        save()
    if is_main and (batch_in_epoch or not (run / "curves.png").is_file()):  # an epoch's end drew the rest
        plot_curves([run], run / "curves.png")
    if is_main and writer is not None:
        writer.close()
    teardown_processes(procs)
    return run


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
