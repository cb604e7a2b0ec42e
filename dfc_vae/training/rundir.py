"""A run's directory: which folder a run writes to, whether it may, and how a run stopped there
is resumed (its settings, its checkpoint, its RNG states).

Everything a run makes goes into its run directory:
  config.json     resolved settings + provenance (data as given and as an absolute path, VGG weights, versions)
  metrics.csv     a row every `log_every` steps: loss, recon, kl (means per image over the steps since the
                  last row), active units, images/s
  epochs.csv      a row per epoch: the same on a fixed held-out set, in eval mode, through the latent's
                  calibration (model/network.py), fitted at every epoch's end on up to CALIBRATION_IMAGES
                  training faces (their mean KL per image before and after it: kl_uncalibrated, kl_calibrated)
  checkpoints/    latest.pt (at every epoch's end, every `checkpoint_every` steps and where SIGINT or
                  SIGTERM stopped training) and epoch_NNN.pt
  grids/          epoch_NNN_recon.png (inputs above reconstructions), epoch_NNN_samples.png (z ~ N(0, I))
  curves.png      loss, reconstruction, KL and active units against the step (training/curves.py), at every
                  epoch's end
  tensorboard/    the same rows as TensorBoard event files, with --tensorboard
  .lock           the run directory's lock (util/runlock.py): one `train` (or other writer) at a time
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import torch
from torch import nn

from dfc_vae.runs.checkpoint import latest_checkpoint, load_checkpoint, set_rng_state
from dfc_vae.runs.config import TrainConfig
from dfc_vae.training.average import WeightAverage
from dfc_vae.util.errors import UserError
from dfc_vae.util.runlock import LOCK_NAME
from dfc_vae.util.fileio import output_folder

# Settings a resumed run may change; everything else must match the run's config.json.
RESUMABLE_OVERRIDES = {"epochs", "max_steps", "log_every", "checkpoint_every", "device", "compile", "precision",
                       "calibrate_latent", "skip_bad_batches", "workers", "cache_dir", "data", "out"}


def run_directory(cfg: TrainConfig) -> Path:
    """The run directory --out names (not yet checked for what it holds)."""
    if not cfg.out:
        raise UserError("no run directory given; pass --out RUN")
    return output_folder(cfg.out, purpose=" for the run")


def check_run_dir(run: Path, resume: bool) -> dict | None:
    """The saved config of the run in `run` when resuming (None otherwise); refuses to overwrite another run."""
    saved = run / "config.json"
    if resume:
        if not saved.is_file():
            raise UserError(f"{run} holds no run to resume; start it without --resume")
        # a run killed before its first checkpoint resumes from step 0 with its saved settings
        return json.loads(saved.read_text())["config"]
    if run.is_dir() and any(p.name != LOCK_NAME for p in run.iterdir()):
        if saved.is_file() and latest_checkpoint(run) is not None:
            raise UserError(f"{run} already holds a run; pass --resume to continue it, or choose another --out")
        if saved.is_file():  # killed before its first checkpoint: nothing to lose, start again
            return None
        raise UserError(f"{run} exists, is not empty and is not a dfc_vae run; choose another --out")
    return None


def merge_resume_config(saved: dict, cfg: TrainConfig) -> TrainConfig:
    """`cfg` for resuming the run whose config.json holds `saved`; refuses a setting outside
    RESUMABLE_OVERRIDES that differs from the run's."""
    # a setting newer than the run is missing from its config.json: the run had its default
    saved = {f.name: f.default for f in fields(TrainConfig)} | saved
    changed = [k for k, v in cfg.to_dict().items() if k not in RESUMABLE_OVERRIDES and saved.get(k) != v]
    if changed:
        k = changed[0]
        raise UserError(f"--{k.replace('_', '-')} {getattr(cfg, k)} differs from the run's {saved.get(k)!r}; "
                        "a resumed run keeps its settings (only epochs, max-steps, device and logging may change)")
    return cfg


def resume_from(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device,
                average: WeightAverage | None = None) -> dict:
    """Load a checkpoint into `model` and `optimizer` (and the weight average, if the run keeps one)
    and restore the RNG states; the checkpoint's other entries (step, epoch, batch_in_epoch, and,
    when it has them, the open log window and the time trained so far).

    Loaded to the CPU: load_state_dict then places the model's and the optimizer's tensors where
    the parameters are, and the RNG states stay the CPU ByteTensors their setters want."""
    ckpt = load_checkpoint(path, map_location="cpu")
    model.load_state_dict(ckpt.get("trained_model", ckpt["model"]))
    if average:
        average.model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    set_rng_state(ckpt["rng"], device)
    return {k: ckpt[k] for k in ("step", "epoch", "batch_in_epoch", "window", "elapsed_s") if k in ckpt}
