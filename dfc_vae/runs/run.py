"""Using a trained run: load its model, draw samples, reconstruct faces."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dfc_vae.runs.checkpoint import latest_checkpoint, load_checkpoint
from dfc_vae.runs.config import TrainConfig
from dfc_vae.util.device import resolve_device
from dfc_vae.util.errors import UserError
from dfc_vae.util.images import enlarge, grid, provenance, save_png, to_uint8
from dfc_vae.model.network import DFCVAE
from dfc_vae.runs.split import FaceSplit
from dfc_vae.util.fileio import output_folder


@dataclass
class LoadedRun:
    path: Path
    model: DFCVAE  # in eval mode
    config: TrainConfig
    meta: dict  # provenance: data, synthetic, VGG weights ...
    step: int
    device: torch.device

    @property
    def caption(self) -> list[str]:
        return provenance(self.meta.get("synthetic", False), self.meta.get("vgg_weights", ""))


def load_run(run_dir: str | Path, device: str | torch.device = "cpu", checkpoint: str | Path | None = None) -> LoadedRun:
    """The model of a run directory's latest checkpoint (or `checkpoint`), in eval mode."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} does not exist; pass --run a folder made by `dfc-vae train`")
    path = Path(checkpoint) if checkpoint else latest_checkpoint(run_dir)
    if path is None or not (run_dir / "config.json").is_file():
        raise UserError(f"{run_dir} is not a dfc_vae run with a checkpoint (no config.json or checkpoints/latest.pt); "
                        "train one with `dfc-vae train --out RUN`")
    device = resolve_device(device) if isinstance(device, str) else device
    ckpt = load_checkpoint(path)
    try:
        # validated as a TOML file would be: a checkpoint is a file from anywhere, and a crafted
        # latent_dim or image_size would otherwise size the model's allocations
        config = TrainConfig(**ckpt["config"]).validate()
    except TypeError as e:
        raise UserError(f"{path} was written by another version of dfc_vae ({e}); retrain or export it there") from e
    except UserError as e:
        raise UserError(f"{path} holds a setting dfc_vae refuses ({e}); the file is damaged or was not made by "
                        "`dfc-vae train`") from None
    model = DFCVAE(config.model_config())
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise UserError(f"{path} does not fit its own configuration ({str(e).splitlines()[0]}); the file is damaged") from e
    return LoadedRun(run_dir, model.to(device).eval(), config, ckpt.get("meta", {}), ckpt["step"], device)


@torch.no_grad()
def sample_grid(run: LoadedRun, out: str | Path, n: int = 64, seed: int = 0, temperature: float = 1.0) -> Path:
    """Decode n draws of z ~ N(0, temperature^2 I) into one PNG grid."""
    if n < 1:
        raise UserError("--n must be at least 1")
    z = torch.randn(n, run.config.latent_dim, generator=torch.Generator().manual_seed(seed)) * temperature
    images = to_uint8(run.model.decode(z.to(run.device)))
    save_png(out, grid(images, int(np.ceil(np.sqrt(n)))),
             run.caption + [f"{run.path.name} step {run.step}: {n} samples, z ~ N(0, {temperature:g}^2 I), seed {seed}"])
    return Path(out)


def _split_images(run: LoadedRun, data, split: str, n: int, cache_dir, progress: bool):
    """The first n faces of `split` (cache order) at the run's size and crop, as (n, 3, S, S) on the
    run's device, and whether they are synthetic."""
    faces = FaceSplit.of_run(run, data, split, cache_dir, progress, empty_hint="choose another --split")
    return faces.images(faces.rows[:n]).to(run.device), faces.faces.synthetic is not None


@torch.no_grad()
def reconstruct_grid(run: LoadedRun, data, out: str | Path, split: str = "test", n: int = 32,
                     cache_dir: str | Path | None = None, progress: bool = True) -> Path:
    """Faces of `split` (the first n in cache order) beside their reconstructions from the posterior
    mean. `data`: a FaceSet or a folder (None: the run's data)."""
    x, synthetic = _split_images(run, data, split, n, cache_dir, progress)
    recon = run.model.decode(run.model.encode(x)[0])
    rows = []
    for i in range(0, len(x), 8):  # inputs row, then their reconstructions
        rows += [to_uint8(x[i:i + 8]), to_uint8(recon[i:i + 8])]
    caption = provenance(synthetic, run.meta.get("vgg_weights", ""))
    save_png(out, grid(np.concatenate(rows), min(8, len(x))),
             caption + [f"{run.path.name} step {run.step}: {split} faces (odd rows) and reconstructions (even rows)"])
    return Path(out)


@torch.no_grad()
def compare_reconstructions(runs: dict[str, LoadedRun], data, out: str | Path, split: str = "test", n: int = 8,
                            cache_dir: str | Path | None = None, progress: bool = True) -> Path:
    """The paper's reconstruction comparison: the same n faces of `split` in the top row, then one row
    of reconstructions (posterior mean decoded) per run, in the order of `runs` (name -> run; the runs
    must share their image size and crop)."""
    if not runs:
        raise UserError("no runs to compare; give at least one")
    first = next(iter(runs.values()))
    for name, run in runs.items():
        if (run.config.image_size, run.config.crop) != (first.config.image_size, first.config.crop):
            raise UserError(f"run {name} is {run.config.image_size} px / {run.config.crop} crop, the first "
                            f"{first.config.image_size} px / {first.config.crop}; compare runs of one size and crop")
    x, synthetic = _split_images(first, data, split, n, cache_dir, progress)
    rows = [to_uint8(x)] + [to_uint8(run.model.decode(run.model.encode(x.to(run.device))[0])) for run in runs.values()]
    caption = provenance(synthetic, first.meta.get("vgg_weights", ""))
    caption += [f"row 1: {len(x)} {split} faces; rows 2-{len(runs) + 1}: their reconstructions by " + ", ".join(
        f"{name} (step {run.step})" for name, run in runs.items()) + ", in that order"]
    save_png(out, grid(enlarge(np.concatenate(rows)), len(x)), caption)
    return Path(out)


def export_run(run_dir: str | Path, out: str | Path, checkpoint: str | Path | None = None) -> Path:
    """Write a run's model as model.safetensors + config.json (with the run's provenance)."""
    loaded = load_run(run_dir, "cpu", checkpoint)
    out = output_folder(out)
    loaded.model.save_pretrained(out, extra={"step": loaded.step, "meta": loaded.meta,
                                             "training_config": loaded.config.to_dict()})
    return out
