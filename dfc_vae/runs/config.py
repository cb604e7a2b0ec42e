"""Training settings, the one place their defaults live, and the machinery of every settings dataclass.

A settings dataclass declares each setting once with `setting` (its default, help text and allowed
values) or `setting_like` (another dataclass's setting with a default of its own: the demo's preset of
the training settings); `check_allowed` refuses values outside what is allowed, `add_setting_flags`
builds one flag per setting and `given_settings` reads back the flags the user gave, so flags, help
and checks cannot drift apart. For training, precedence: these defaults < a TOML file (--config) <
command-line flags.
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


def setting(default, help: str, **allowed):
    """A settings dataclass field: its default, its help text, and its allowed values (`choices`; `min`,
    `max` inclusive and `above`, `below` exclusive for numbers, which must also be finite)."""
    return field(default=default, metadata={"help": help, **allowed})


def setting_like(settings: type, name: str, default, help: str | None = None):
    """The setting `name` of the dataclass `settings` with another default (and help): the same allowed values."""
    (original,) = [f for f in fields(settings) if f.name == name]
    return field(default=default, metadata={**original.metadata, **({"help": help} if help else {})})


def check_allowed(settings, toml: bool = False) -> None:
    """Refuse a value of a settings dataclass outside its allowed values (UserError naming the flag, and
    the TOML key when the settings are also read from TOML), the same for flags, files and Python callers."""
    for f in fields(settings):
        value = getattr(settings, f.name)
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise UserError(f"{f.name} = {value!r} is not valid; choose one of {', '.join(map(str, choices))}")
        if f.type in ("int", "float") and not in_range(value, f.type, f.metadata):
            where = f"flag --{f.name.replace('_', '-')}" + (f", TOML key {f.name}" if toml else "")
            raise UserError(f"{f.name} = {value!r} is out of range; allowed: {allowed_range(f.type, f.metadata)} "
                            f"({where})")


def add_setting_flags(parser: argparse.ArgumentParser, settings: type, skip: tuple[str, ...] = ()) -> None:
    """One flag per field of the dataclass `settings`, with its help and default; the flags' own
    defaults stay None, so that `given_settings` tells what the user gave."""
    for f in fields(settings):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        help = f"{f.metadata['help']} (default: {f.default})".replace("%", "%%")  # argparse formats help with %
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help)
            continue
        typ = {"int": int, "float": float}.get(f.type, str)
        choices = f.metadata.get("choices")
        parser.add_argument(flag, type=typ, default=None, choices=choices,
                            metavar=None if choices else f.name.upper(), help=help)


def given_settings(settings: type, args: argparse.Namespace) -> dict:
    """The settings of the dataclass `settings` that the user gave as flags (`add_setting_flags`)."""
    return {f.name: getattr(args, f.name) for f in fields(settings) if getattr(args, f.name, None) is not None}


@dataclass
class TrainConfig:
    data: str = setting(None, "the faces: CelebA (official, torchvision, Kaggle or PNG layout), any folder of face images "
                              "(docs/data.md), or synthetic faces from `dfc-vae synth`")
    labels: str = setting(None, "labels file of a folder of images: a CSV with an image column and 0/1 attribute columns, or "
                                "CelebA-HQ's attribute file; without it, DIR/labels.csv is read when present")
    allow_missing: bool = setting(False, "use the images present when the annotations or labels list some that are not "
                                         "there (their number is recorded in the run's config.json)")
    out: str = setting(None, "run directory: config, metrics, checkpoints and grids go here")
    loss: str = setting("vae123", "reconstruction loss: vae123 (VGG relu1_1,2_1,3_1), vae345 (relu3_1,4_1,5_1) or pvae (pixels)",
                        choices=LOSS_NAMES)
    reduction: str = setting("sum", "loss scale: sum (per-image sums: a per-image negative ELBO) or paper (Eq. 5: per-element "
                             "means of Caffe-scale VGG features; model/losses.py derives the scale)", choices=REDUCTIONS)
    alpha: float = setting(1.0, "weight of the KL term (paper: 1)", min=0)
    beta: float = setting(0.5, "weight of the reconstruction term (paper: 0.5)", min=0)
    vgg_weights: str = setting("imagenet", "VGG19 weights: imagenet (torchvision cache/download), random (offline), or a state-dict PATH")
    image_size: int = setting(ModelConfig.image_size, "face size in pixels: 32, 64 (paper), 128 or 256",
                              choices=IMAGE_SIZES)
    latent_dim: int = setting(ModelConfig.latent_dim, "latent dimensions (paper: 100)", min=1, max=MAX_LATENT_DIM)
    base_channels: int = setting(ModelConfig.base_channels, "width of the first encoder stage; doubles per stage (paper: 32)",
                                 min=1, max=MAX_BASE_CHANNELS)
    crop: str = setting("auto", "face crop: auto (the data's own: official for CelebA, center for folders), official "
                                "(DFC-VAE's 138x138 box), center148 (the central 148x148) or center (the largest centred "
                                "square); a run records the resolved crop", choices=("auto",) + CROPS)
    epochs: int = setting(10, "passes over the training split", min=1)
    batch_size: int = setting(64, "global batch size (paper: 64)", min=1)
    lr: float = setting(5e-4, "Adam learning rate (paper: 5e-4)", above=0)
    beta1: float = setting(0.5, "Adam beta1 (paper: 0.5)", min=0, below=1)
    beta2: float = setting(0.999, "Adam beta2", min=0, below=1)
    lr_halving: int = setting(0, "halve the learning rate at the start of epochs N, 2N, 3N, ... (N = 2: the official code's "
                                 "intended schedule; a misplaced line there halves it at every step of even epochs); "
                                 "0: constant, as the paper", min=0)
    lr_schedule: str = setting("constant", "constant (the paper; halved by --lr-halving if set) or cosine: after the warm-up, "
                               "from --lr down to 0 along a half cosine over the steps of --epochs (--max-steps cuts it short)",
                               choices=LR_SCHEDULES)
    warmup_steps: int = setting(0, "raise the rate linearly from lr/N to lr over the first N optimizer steps (0: none)", min=0)
    ema_decay: float = setting(0.0, "keep an exponential moving average of the weights, this decay per step (e.g. 0.999: "
                                 "about the last 1,000 steps; Polyak averaging): the averaged weights are the ones evaluated, "
                                 "calibrated, drawn and saved as the run's model; 0: the last weights, as the paper",
                               min=0, below=1)
    flip: bool = setting(False, "random horizontal flips of training batches")
    calibrate_latent: bool = setting(True, "at every epoch's end, shift and scale each latent dimension so that the training "
                                     "faces' posteriors have mean 0 and E[z^2] = 1, as N(0, I): reconstructions unchanged, "
                                     "KL lower, prior samples where the faces are (model/network.py; not in the paper)")
    seed: int = setting(0, "seed of initialization, data order and sampling", min=0, max=2**32 - 1)
    device: str = setting("auto", "auto (CUDA when available), cpu or cuda", choices=DEVICES)
    compile: bool = setting(False, "run the model through torch.compile")
    precision: str = setting("auto", "arithmetic of the training step: bf16 (autocast; fp32 weights and optimizer) or fp32; "
                             "auto = bf16 on CUDA and on CPUs with native bf16 (AVX512-BF16, AMX), fp32 elsewhere",
                             choices=PRECISIONS)
    log_every: int = setting(20, "read losses (a host sync) and append a metrics row every N steps", min=1)
    checkpoint_every: int = setting(500, "also save the latest checkpoint every N steps (0: at epoch ends only)", min=0)
    max_steps: int = setting(0, "stop after N optimizer steps in all (0: no limit)", min=0)
    skip_bad_batches: int = setting(0, "skip up to N batches whose loss is NaN/Inf before stopping", min=0)
    deterministic: bool = setting(False, "deterministic algorithms (bitwise-reproducible resume on CPU; slower)")
    cache_dir: str = setting(None, "folder of the decoded-image cache (default: $DFC_VAE_CACHE or ~/.cache/dfc_vae)")
    workers: int = setting(0, "processes that decode images for the cache (0: one per CPU core)", min=0)

    def model_config(self) -> ModelConfig:
        return ModelConfig(image_size=self.image_size, latent_dim=self.latent_dim, base_channels=self.base_channels)

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> "TrainConfig":
        """Refuse a setting outside its allowed values (`check_allowed`), the same for flags and TOML files."""
        check_allowed(self, toml=True)
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
    """--config, and one flag per TrainConfig field."""
    parser.add_argument("--config", metavar="FILE.toml", help="TOML file of settings (flags override it)")
    add_setting_flags(parser, TrainConfig, skip)


def config_from_args(args: argparse.Namespace, base: dict | None = None) -> TrainConfig:
    """Defaults < `base` (e.g. a saved run's config) < --config TOML < flags the user gave; not yet
    validated (training validates its settings first thing, once)."""
    values = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    values.update(base or {})
    if getattr(args, "config", None):
        values.update(load_toml(args.config))
    values.update(given_settings(TrainConfig, args))
    return TrainConfig(**values)
