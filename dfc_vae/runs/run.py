"""Using a trained model: load it from a run directory or an exported folder (or Hub id), draw samples,
reconstruct faces."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dfc_vae.runs.checkpoint import latest_checkpoint, load_checkpoint
from dfc_vae.runs.config import TrainConfig
from dfc_vae.util.device import resolve_device
from dfc_vae.util.errors import UserError
from dfc_vae.util.images import save_figure, to_uint8
from dfc_vae.model.losses import RANDOM_VGG
from dfc_vae.model.network import DFCVAE
from dfc_vae.runs.provenance import provenance
from dfc_vae.runs.prior import Draw, FittedPrior, stored_prior
from dfc_vae.runs.split import FaceSplit
from dfc_vae.util.hub import resolve_model


@dataclass
class LoadedRun:
    path: Path
    model: DFCVAE  # in eval mode
    config: TrainConfig
    meta: dict  # provenance: data, synthetic, VGG weights ...
    step: int
    device: torch.device
    source: str = ""  # where the model came from when not a run directory: an exported folder's name or a Hub id

    @property
    def caption(self) -> list[str]:
        return provenance(self.meta.get("synthetic", False), self.meta.get("vgg_weights", ""))

    @property
    def name(self) -> str:
        """How captions name the model: the run's folder, the exported folder or the Hub id."""
        return self.source or self.path.name

    @property
    def description(self) -> str:
        """The provenance line of the model (its model card says it too): loss, data, VGG weights, steps, size."""
        return describe_model(self.config, self.meta, self.step)

    @functools.cached_property
    def prior(self) -> FittedPrior | None:
        """The prior fitted to the faces kept with the model (RUN/prior.safetensors, runs/prior.py); None where
        there is none for this step (`prior.prior_for` fits one on demand)."""
        return stored_prior(self)


LOSS_TITLES = {"vae123": "VAE-123 (VGG19 relu1_1, relu2_1, relu3_1 feature loss)",
               "vae345": "VAE-345 (VGG19 relu3_1, relu4_1, relu5_1 feature loss)", "pvae": "PVAE (pixel loss)"}


def vgg_description(vgg_weights: str) -> str:
    """The VGG weights a model was trained with, said plainly."""
    if vgg_weights.startswith("random"):
        return RANDOM_VGG
    if vgg_weights.startswith("none") or not vgg_weights:
        return "no VGG19 (pixel loss)" if vgg_weights else "VGG19 weights not recorded"
    return "VGG19 with ImageNet weights" if vgg_weights.startswith("imagenet") else f"VGG19 weights from {vgg_weights}"


def describe_model(config: TrainConfig, meta: dict, step: int) -> str:
    """One line: which model, trained how long on which faces with which VGG weights."""
    data = meta.get("data_description") or ("synthetic faces" if meta.get("synthetic") else str(config.data or "?"))
    return (f"{LOSS_TITLES.get(config.loss, config.loss)}, {config.image_size}x{config.image_size}, {step:,} steps "
            f"on {data}; {vgg_description(meta.get('vgg_weights', ''))}")


def load_run(run_dir: str | Path, device: str | torch.device = "cpu", checkpoint: str | Path | None = None) -> LoadedRun:
    """The model of a run directory's latest checkpoint (or `checkpoint`), in eval mode."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} does not exist; pass --run a folder made by `dfc-vae train`")
    path = Path(checkpoint) if checkpoint else latest_checkpoint(run_dir)
    if path is None and is_export(run_dir):
        raise UserError(f"{run_dir} is an exported model, not a run directory; pass it as --model {run_dir}")
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
    return LoadedRun(run_dir, model.to(device).eval(), config, _with_data_absolute(ckpt.get("meta", {}), run_dir),
                     ckpt["step"], device)


def _with_data_absolute(meta: dict, run_dir: Path) -> dict:
    """The checkpoint's provenance, with the data folder's absolute path from the run's config.json where the
    checkpoint lacks it (runs.split.recorded_data falls back to it; an export carries it on)."""
    if "data_absolute" in meta:
        return meta
    try:
        recorded = json.loads((run_dir / "config.json").read_text()).get("meta", {}).get("data_absolute")
    except (ValueError, AttributeError):  # a damaged config.json: the checkpoint is what loads the model
        recorded = None
    return {**meta, "data_absolute": recorded} if recorded else meta


def is_export(folder: Path) -> bool:
    """Whether `folder` holds a model written by `save_pretrained` (`dfc-vae export`)."""
    return (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()


def load_exported(dir_or_id: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """The model of an exported folder (or a Hub id, through the extra dfc_vae[hub]), in eval mode, with the
    settings and provenance its config.json keeps. Old exports without those load with the defaults."""
    folder, source = resolve_model(dir_or_id)
    if not is_export(folder):
        raise UserError(f"--model {dir_or_id} holds no exported model (config.json and model.safetensors); make one "
                        "with `dfc-vae export --run RUN --out DIR`, or pass a run directory as --run")
    device = resolve_device(device) if isinstance(device, str) else device
    model = DFCVAE.from_pretrained(folder, map_location=device)
    saved = json.loads((folder / "config.json").read_text())
    settings = {**saved.get("training_config", {}), "image_size": model.config.image_size,
                "latent_dim": model.config.latent_dim, "base_channels": model.config.base_channels}
    try:
        config = TrainConfig(**settings)
    except TypeError as e:
        raise UserError(f"{folder / 'config.json'} was written by another version of dfc_vae ({e}); re-export it") from e
    return LoadedRun(folder, model, config, saved.get("meta", {}), int(saved.get("step", 0)), device, source)


def load_model_or_run(run: str | Path | None, model: str | Path | None, device: str | torch.device = "cpu") -> LoadedRun:
    """A run directory (--run) or an exported model (--model, a folder or Hub id): whichever was given."""
    return load_exported(model, device) if model is not None else load_run(run, device)


@torch.no_grad()
def sample_grid(run: LoadedRun, out: str | Path, n: int = 64, seed: int = 0, temperature: float = 1.0,
                draw: Draw | None = None, drawn_from: str | None = None) -> Path:
    """Decode n draws of z ~ N(0, temperature^2 I) into one PNG grid; `draw` ((n, generator) -> (n, D)), when
    given, draws them instead, and `drawn_from` says from what in the caption."""
    if n < 1:
        raise UserError("--n must be at least 1")
    g = torch.Generator().manual_seed(seed)
    z = draw(n, g) if draw is not None else torch.randn(n, run.config.latent_dim, generator=g) * temperature
    images = to_uint8(run.model.decode(z.to(run.device)))
    ncol = int(np.ceil(np.sqrt(n)))
    blank = np.full((ncol * ncol - n, *images.shape[1:]), 255, np.uint8)  # the last row's empty places
    images = np.concatenate([images, blank])
    what = drawn_from or f"z ~ N(0, {temperature:g}^2 I)"
    save_figure(out, [images[i:i + ncol] for i in range(0, n, ncol)],
                run.caption + [f"{run.name} step {run.step}: {n} samples, {what}, seed {seed}"])
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
    rows, width = [], min(8, len(x))
    for i in range(0, len(x), 8):  # inputs row, then their reconstructions (the last pair padded blank)
        rows += [_padded(to_uint8(x[i:i + 8]), width), _padded(to_uint8(recon[i:i + 8]), width)]
    caption = provenance(synthetic, run.meta.get("vgg_weights", ""))
    save_figure(out, rows, caption + [f"{run.name} step {run.step}: {split} faces (odd rows) and reconstructions "
                                      "(even rows)"], [f"{split} faces", "reconstructions"] * (len(rows) // 2))
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
    footer = "; ".join(caption + [f"{split} split"])
    caption += [f"row 1: {len(x)} {split} faces; rows 2-{len(runs) + 1}: their reconstructions by " + ", ".join(
        f"{name} (step {run.step})" for name, run in runs.items()) + ", in that order"]
    save_figure(out, rows, caption, [f"{split} faces"] + [f"{name} (step {run.step})" for name, run in runs.items()],
                footer=footer)
    return Path(out)


def _padded(images: np.ndarray, width: int) -> np.ndarray:
    """(N, S, S, 3) -> (width, S, S, 3), blank (white) after the N images."""
    return np.concatenate([images, np.full((width - len(images), *images.shape[1:]), 255, np.uint8)])
