"""Training settings: the one place their defaults live.

Precedence: these defaults < a TOML file (--config) < command-line flags. The CLI's flags are built
from this dataclass, so the two cannot drift apart.
"""

from __future__ import annotations

import argparse
import tomllib
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from dfc_vae.util.argtypes import allowed_range, in_range
from dfc_vae.util.errors import UserError
from dfc_vae.util.choices import CROPS, DEVICES, IMAGE_SIZES, PRECISIONS
from dfc_vae.model.losses import LOSS_NAMES, REDUCTIONS
from dfc_vae.model.network import MAX_BASE_CHANNELS, MAX_LATENT_DIM, ModelConfig


LR_SCHEDULES = ("constant", "cosine")


def _opt(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    data: str = _opt(None, "the faces: CelebA (official, torchvision, Kaggle or PNG layout), any folder of face images "
                           "(docs/data.md), or synthetic faces from `dfc-vae synth`")
    labels: str = _opt(None, "labels file of a folder of images: a CSV with an image column and 0/1 attribute columns, or "
                             "CelebA-HQ's attribute file; without it, DIR/labels.csv is read when present")
    allow_missing: bool = _opt(False, "use the images present when the annotations or labels list some that are not "
                                      "there (their number is recorded in the run's config.json)")
    out: str = _opt(None, "run directory: config, metrics, checkpoints and grids go here")
    loss: str = _opt("vae123", "reconstruction loss: vae123 (VGG relu1_1,2_1,3_1), vae345 (relu3_1,4_1,5_1) or pvae (pixels)",
                     choices=LOSS_NAMES)
    reduction: str = _opt("sum", "loss scale: sum (per-image sums: a per-image negative ELBO) or paper (Eq. 5: per-element "
                          "means of Caffe-scale VGG features; model/losses.py derives the scale)", choices=REDUCTIONS)
    alpha: float = _opt(1.0, "weight of the KL term (paper: 1)", min=0)
    beta: float = _opt(0.5, "weight of the reconstruction term (paper: 0.5)", min=0)
    vgg_weights: str = _opt("imagenet", "VGG19 weights: imagenet (torchvision cache/download), random (offline), or a state-dict PATH")
    image_size: int = _opt(ModelConfig.image_size, "face size in pixels: 32, 64 (paper), 128 or 256",
                           choices=IMAGE_SIZES)
    latent_dim: int = _opt(ModelConfig.latent_dim, "latent dimensions (paper: 100)", min=1, max=MAX_LATENT_DIM)
    base_channels: int = _opt(ModelConfig.base_channels, "width of the first encoder stage; doubles per stage (paper: 32)",
                              min=1, max=MAX_BASE_CHANNELS)
    crop: str = _opt("auto", "face crop: auto (the data's own: official for CelebA, center for folders), official "
                             "(DFC-VAE's 138x138 box), center148 (the central 148x148) or center (the largest centred "
                             "square); a run records the resolved crop", choices=("auto",) + CROPS)
    epochs: int = _opt(10, "passes over the training split", min=1)
    batch_size: int = _opt(64, "global batch size (paper: 64)", min=1)
    lr: float = _opt(5e-4, "Adam learning rate (paper: 5e-4)", above=0)
    beta1: float = _opt(0.5, "Adam beta1 (paper: 0.5)", min=0, below=1)
    beta2: float = _opt(0.999, "Adam beta2", min=0, below=1)
    lr_halving: int = _opt(0, "halve the learning rate at the start of epochs N, 2N, 3N, ... (N = 2: the official code's "
                              "intended schedule; a misplaced line there halves it at every step of even epochs); "
                              "0: constant, as the paper", min=0)
    lr_schedule: str = _opt("constant", "constant (the paper; halved by --lr-halving if set) or cosine: after the warm-up, "
                            "from --lr down to 0 along a half cosine over the steps of --epochs (--max-steps cuts it short)",
                            choices=LR_SCHEDULES)
    warmup_steps: int = _opt(0, "raise the rate linearly from lr/N to lr over the first N optimizer steps (0: none)", min=0)
    ema_decay: float = _opt(0.0, "keep an exponential moving average of the weights, this decay per step (e.g. 0.999: "
                              "about the last 1,000 steps; Polyak averaging): the averaged weights are the ones evaluated, "
                              "calibrated, drawn and saved as the run's model; 0: the last weights, as the paper",
                            min=0, below=1)
    flip: bool = _opt(False, "random horizontal flips of training batches")
    calibrate_latent: bool = _opt(True, "at every epoch's end, shift and scale each latent dimension so that the training "
                                  "faces' posteriors have mean 0 and E[z^2] = 1, as N(0, I): reconstructions unchanged, "
                                  "KL lower, prior samples where the faces are (model/network.py; not in the paper)")
    seed: int = _opt(0, "seed of initialization, data order and sampling", min=0, max=2**32 - 1)
    device: str = _opt("auto", "auto (CUDA when available), cpu or cuda", choices=DEVICES)
    compile: bool = _opt(False, "run the model through torch.compile")
    precision: str = _opt("auto", "arithmetic of the training step: bf16 (autocast; fp32 weights and optimizer) or fp32; "
                          "auto = bf16 on CUDA and on CPUs with native bf16 (AVX512-BF16, AMX), fp32 elsewhere",
                          choices=PRECISIONS)
    log_every: int = _opt(20, "read losses (a host sync) and append a metrics row every N steps", min=1)
    checkpoint_every: int = _opt(500, "also save the latest checkpoint every N steps (0: at epoch ends only)", min=0)
    max_steps: int = _opt(0, "stop after N optimizer steps in all (0: no limit)", min=0)
    skip_bad_batches: int = _opt(0, "skip up to N batches whose loss is NaN/Inf before stopping", min=0)
    deterministic: bool = _opt(False, "deterministic algorithms (bitwise-reproducible resume on CPU; slower)")
    cache_dir: str = _opt(None, "folder of the decoded-image cache (default: $DFC_VAE_CACHE or ~/.cache/dfc_vae)")
    workers: int = _opt(0, "processes that decode images for the cache (0: one per CPU core)", min=0)

    def model_config(self) -> ModelConfig:
        return ModelConfig(image_size=self.image_size, latent_dim=self.latent_dim, base_channels=self.base_channels)

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> "TrainConfig":
        """Refuse a setting outside its allowed values (the fields' `choices`, and `min`, `max`,
        `above`, `below` of numbers, which must also be finite), the same for flags and TOML files."""
        for f in fields(self):
            value = getattr(self, f.name)
            choices = f.metadata.get("choices")
            if choices and value not in choices:
                raise UserError(f"{f.name} = {value!r} is not valid; choose one of {', '.join(map(str, choices))}")
            if f.type in ("int", "float"):
                allowed = allowed_range(f.type, f.metadata)
                if not in_range(value, f.type, f.metadata):
                    raise UserError(f"{f.name} = {value!r} is out of range; allowed: {allowed} "
                                    f"(flag --{f.name.replace('_', '-')}, TOML key {f.name})")
        self.model_config()
        return self


def load_toml(path: str | Path) -> dict:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8"))  # TOML is UTF-8 whatever the locale says
    except FileNotFoundError:
        raise UserError(f"config file {path} does not exist; check the --config path") from None
    except IsADirectoryError:
        raise UserError(f"config file {path} is a folder; give --config the path of a TOML file") from None
    except UnicodeDecodeError as e:
        raise UserError(f"config file {path} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                        "save it as UTF-8, as TOML requires") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"config file {path} is not valid TOML ({e}); fix the line it names") from None
    known = {f.name for f in fields(TrainConfig)}
    flat = {}
    for k, v in raw.items():
        if isinstance(v, dict):  # allow [train] / [model] tables
            flat.update(v)
        else:
            flat[k] = v
    flat = {k.replace("-", "_"): v for k, v in flat.items()}
    unknown = sorted(set(flat) - known)
    if unknown:
        raise UserError(f"config file {path}: unknown setting '{unknown[0]}'; known: {', '.join(sorted(known))}")
    return flat


def add_config_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One flag per TrainConfig field; defaults stay None so we can tell what the user gave."""
    parser.add_argument("--config", metavar="FILE.toml", help="TOML file of settings (flags override it)")
    for f in fields(TrainConfig):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                help=f"{f.metadata['help']} (default: {f.default})")
            continue
        typ = {"int": int, "float": float}.get(f.type, str)
        parser.add_argument(flag, type=typ, default=None, choices=f.metadata.get("choices"),
                            metavar=f.name.upper() if not f.metadata.get("choices") else None,
                            help=f"{f.metadata['help']} (default: {f.default})")


def config_from_args(args: argparse.Namespace, base: dict | None = None) -> TrainConfig:
    """Defaults < `base` (e.g. a saved run's config) < --config TOML < flags the user gave; not yet
    validated (training validates its settings first thing, once)."""
    values = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    values.update(base or {})
    if getattr(args, "config", None):
        values.update(load_toml(args.config))
    values.update({f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name, None) is not None})
    return TrainConfig(**values)
