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
"""

from __future__ import annotations

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
from .checkpoint import latest_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import TrainConfig
from .data import BatchSource, to_tensor
from .faces import open_faces, report_notes
from .errors import UserError
from .fileio import write_json, write_text
from .images import grid, provenance, save_png, to_uint8
from .losses import DFCLoss, active_units, kl_divergence
from .model import DFCVAE

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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but PyTorch sees no CUDA GPU; use --device cpu or auto")
    return torch.device(name)


class _AllReduceSum(torch.autograd.Function):
    """Sum a tensor over all processes; the gradient of every process's input is the sum of the
    gradients that reach the output in all processes (each process's loss depends on every input)."""

    @staticmethod
    def forward(ctx, x):
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class _GlobalBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose training statistics are taken over the whole global batch of all processes.

    The CPU (gloo) counterpart of nn.SyncBatchNorm, which DistributedDataParallel accepts on GPUs
    only: per-channel sums and sums of squares are all-reduced (with gradient, so backpropagation
    sees the same global statistics as a one-process run over the global batch).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        c = x.shape[1]
        n = x.numel() // c * dist.get_world_size()
        xf = x.float()
        stats = _AllReduceSum.apply(torch.cat([xf.sum((0, 2, 3)), xf.pow(2).sum((0, 2, 3))]))
        mean = stats[:c] / n
        var = (stats[c:] / n - mean.pow(2)).clamp_min(0)  # biased, as BatchNorm normalizes with
        with torch.no_grad():  # running statistics as nn.BatchNorm2d keeps them (unbiased variance)
            self.num_batches_tracked += 1
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * (n / (n - 1)), self.momentum)
        scale = self.weight * torch.rsqrt(var + self.eps)
        return (xf * scale.view(1, c, 1, 1) + (self.bias - mean * scale).view(1, c, 1, 1)).to(x.dtype)


def _global_batchnorm(module: nn.Module) -> nn.Module:
    """Swap every BatchNorm2d in `module` (in place) for one with global-batch statistics."""
    if torch.cuda.is_available() and next(module.parameters()).is_cuda:
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            bn = _GlobalBatchNorm(child.num_features, child.eps, child.momentum)
            bn.weight, bn.bias = child.weight, child.bias  # the same parameters and buffers
            bn.running_mean, bn.running_var, bn.num_batches_tracked = (
                child.running_mean, child.running_var, child.num_batches_tracked)
            setattr(module, name, bn)
        else:
            _global_batchnorm(child)
    return module


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


def _distributed() -> tuple[int, int, bool]:
    """(rank, world size, whether this call made the process group); under torchrun, the process
    group is made here unless the caller made one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, False
    made = not dist.is_initialized()
    if made:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world, made


def check_run_dir(cfg: TrainConfig, resume: bool) -> tuple[Path, dict | None]:
    """The run directory, and the saved config when resuming; refuses to overwrite another run."""
    if not cfg.out:
        raise UserError("no run directory given; pass --out RUN")
    run = Path(cfg.out)
    if run.exists() and not run.is_dir():
        raise UserError(f"--out {run} is a file; give a folder for the run")
    saved = run / "config.json"
    if resume:
        if not saved.is_file():
            raise UserError(f"{run} holds no run to resume; start it without --resume")
        import json

        # a run killed before its first checkpoint resumes from step 0 with its saved settings
        return run, json.loads(saved.read_text())["config"]
    if run.is_dir() and any(run.iterdir()):
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


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train a DFC-VAE as `cfg` says; returns the run directory."""
    from tqdm.auto import tqdm

    cfg.validate()
    if not cfg.data:
        raise UserError("no data given; pass --data DIR (CelebA, or faces from `dfc-vae synth`)")
    faces = open_faces(cfg.data, cfg.labels, cfg.allow_missing)
    cfg = replace(cfg, crop=faces.resolve_crop(cfg.crop))  # the run records (and a resume compares) the resolved crop
    run, saved = check_run_dir(cfg, resume)
    resume = resume and latest_checkpoint(run) is not None
    if saved is not None:
        cfg = merge_resume_config(saved, cfg)
    rank, world, made_group = _distributed()
    is_main = rank == 0
    device = resolve_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
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
    step, epoch, batch_in_epoch = 0, 0, 0
    if resume:
        ckpt = load_checkpoint(latest_checkpoint(run), map_location=device)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        step, epoch, batch_in_epoch = ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]
        set_rng_state(ckpt["rng"])
    step_module = TrainStep(model)
    if world > 1:  # BatchNorm over the global batch, gradients averaged over processes
        step_module = nn.parallel.DistributedDataParallel(
            _global_batchnorm(step_module), device_ids=[device.index] if device.type == "cuda" else None)
    precision = resolve_precision(cfg.precision, device)
    step_fn = make_step_fn(step_module, loss_fn, device, cfg.compile, precision)
    autocast = autocast_for(device, precision)

    synthetic = faces.synthetic is not None
    meta = {**faces.provenance(), "train_images": len(train_idx), "cache": str(cache.path),
            "vgg_weights": loss_fn.vgg_weights_description, "dfc_vae": __version__, "torch": str(torch.__version__),
            "device": str(device), "precision": precision, "world_size": world}
    caption = provenance(synthetic, meta["vgg_weights"])
    if is_main:
        write_json(run / "config.json", {"config": cfg.to_dict(), "meta": meta})
        metrics = _CSVLog(run / "metrics.csv", METRIC_COLUMNS, step if resume else None, "step")
        epochs_log = _CSVLog(run / "epochs.csv", EPOCH_COLUMNS, epoch if resume else None, "epoch")
        for line in caption:
            print(f"note: {line}")

    def payload() -> dict:
        return {"config": cfg.to_dict(), "meta": meta, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch, "rng": rng_state()}

    total_steps = cfg.epochs * source.num_batches
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    check_each_step = device.type == "cpu" or cfg.skip_bad_batches > 0  # a CPU step syncs anyway
    bar = tqdm(total=total_steps, initial=min(step, total_steps), desc=f"train {cfg.loss}", unit="step",
               disable=not (progress and is_main), dynamic_ncols=True)
    window = _Window(cfg.latent_dim, device)
    skipped = 0
    # a skipped batch's forward pass has already moved the BatchNorm running statistics: keep a copy
    bn_buffers = [b for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                  for b in (m.running_mean, m.running_var, m.num_batches_tracked)] if cfg.skip_bad_batches else []
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
            if check_each_step and not torch.isfinite(loss).item():
                skipped += 1
                if skipped > cfg.skip_bad_batches:
                    _diverged(run, step + 1)
                for b, saved in zip(bn_buffers, saved_bn):
                    b.copy_(saved)
                optimizer.zero_grad(set_to_none=True)
                batch_in_epoch += 1
                continue
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            batch_in_epoch += 1
            window.add(out, mu)
            if step % cfg.log_every == 0 or step == total_steps:
                now = time.perf_counter()
                row = window.read()  # the one host sync of the window
                if not math.isfinite(row["loss"]):
                    _diverged(run, step)
                row.update(step=step, epoch=epoch, images_per_s=row.pop("n") * world / (now - t_last),
                           elapsed_s=now - t_start)
                t_last = now
                if is_main:
                    metrics.append(row)
                    bar.set_postfix(loss=f"{row['loss']:.4g}", kl=f"{row['kl']:.3g}", active=row["active_units"])
            bar.update(1)
            if is_main and cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                save_checkpoint(run, payload())
            if step >= total_steps and batch_in_epoch < source.num_batches:
                break  # (at an epoch's last batch, fall through to the epoch's end instead)
        else:  # the epoch ran to its end
            epoch += 1
            batch_in_epoch = 0
            if is_main:
                calibration = fit_latent_calibration(model, cache.images, calibration_idx, device, cfg.calibrate_latent)
                summary = evaluate_fixed_set(model, loss_fn, eval_x, device, autocast)
                epochs_log.append({"epoch": epoch, "step": step, **summary, **calibration})
                save_epoch_grids(model, eval_x, run / "grids", epoch, cfg.seed, device, caption)
                save_checkpoint(run, payload(), epoch_name=f"epoch_{epoch:03d}.pt")
                tqdm.write(f"epoch {epoch}: eval loss {summary['eval_loss']:.4g}, recon {summary['eval_recon']:.4g}, "
                           f"KL {summary['eval_kl']:.3g}, active units {summary['active_units']}/{cfg.latent_dim}")
            model.train()
            continue
        break
    bar.close()
    if is_main and batch_in_epoch:  # stopped inside an epoch (max_steps): keep where we are
        fit_latent_calibration(model, cache.images, calibration_idx, device, cfg.calibrate_latent)
        save_checkpoint(run, payload())
    if world > 1:
        dist.barrier()
        if made_group:  # a process that exits with a live gloo group can abort in its teardown
            dist.destroy_process_group()
    return run


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> 'bf16' where the hardware computes in bf16 natively (CUDA; CPUs with AVX512-BF16 or
    AMX, where oneDNN's bf16 convolutions run ~2x the fp32 ones), else 'fp32'."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16"
    try:
        native = device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (AttributeError, RuntimeError):  # a build without oneDNN
        native = False
    return "bf16" if native else "fp32"


def autocast_for(device: torch.device, precision: str):
    """bf16 autocast (convolutions and matmuls in bf16, fp32 master weights) or plain fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()


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


def _diverged(run: Path, step: int):
    ckpt = latest_checkpoint(run)
    kept = f"the last good checkpoint {ckpt} is intact" if ckpt else "no checkpoint was written yet"
    raise TrainingDiverged(f"loss became NaN/Inf at step {step}; {kept}. Lower --lr, or pass --skip-bad-batches N to skip such batches")


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
        row = {"loss": loss, "recon": recon, "kl": kl, "active_units": int((var > 0.01).sum()), "n": self.n}
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
