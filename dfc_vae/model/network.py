"""The DFC-VAE network (Hou et al. 2017, Sec. 3.1 and Fig. 2), at 32, 64, 128 or 256 pixels.

Encoder: per stage Conv 4x4 stride 2 pad 1 -> BatchNorm -> LeakyReLU(0.2), widths 32, 64, 128, 256
at 64x64 (a stage removed or added per halving or doubling: 3 stages at 32, 5 at 128, 6 at 256), then two linear heads give the posterior mean
and log-variance of a 100-d latent. Decoder: Linear -> ReLU to (256, 4, 4), then per stage nearest
upsample x2 -> replication pad 1 -> Conv 3x3 -> BatchNorm(eps 1e-3) -> LeakyReLU(0.2), and a last
upsample + conv to RGB with no BatchNorm and no output activation (as the official CVAE.lua).

Images cross this boundary as (B, 3, S, S) floats with pixels in [0, 1]; the decoder's output is
in the same space but unclamped.

Two views of the latent (our addition, not the paper's): training sees the heads' raw latent
(`encode_raw`, `decode_raw`, `forward`); `encode` and `decode` see it through a per-dimension
calibration z = (raw - shift) * scale, fitted by `calibrate_latent` (dfc_vae/training: at every epoch's end) so that the
training faces' aggregate posterior has mean 0 and E[z_j^2] = 1 in every dimension, as N(0, I) has.
The decoder undoes the map, so decode(encode(x)) is unchanged, while the KL term can only fall: a
per-dimension shift and scale that the decoder's first linear layer absorbs leaves the
reconstruction alone, and the KL's minimum over them is exactly that mean and second moment (the
optimizer approaches it only slowly: its gradient is tiny next to the reconstruction's). Until
fitted, the calibration is the identity.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from safetensors.torch import load_file, save
from torch import nn

from dfc_vae.util.choices import IMAGE_SIZES
from dfc_vae.util.errors import UserError
from dfc_vae.util.fileio import write_bytes, write_json
from dfc_vae.util.device import resolve_device
from dfc_vae.util.hub import resolve_model

# Bounds on the sizes a configuration may ask for (the paper: 100 and 32): far beyond any useful
# model, and low enough that a damaged or crafted checkpoint cannot ask for terabytes of weights.
MAX_LATENT_DIM = 4096
MAX_BASE_CHANNELS = 128


@dataclass(frozen=True)
class ModelConfig:
    image_size: int = 64
    latent_dim: int = 100
    base_channels: int = 32  # widths double per stage: 32, 64, 128, 256 at 64x64

    def __post_init__(self):
        if self.image_size not in IMAGE_SIZES:
            raise UserError(f"image size {self.image_size} is not supported; use one of {IMAGE_SIZES}")
        if self.latent_dim < 1 or self.base_channels < 1:
            raise UserError("latent_dim and base_channels must be positive integers")
        if self.latent_dim > MAX_LATENT_DIM or self.base_channels > MAX_BASE_CHANNELS:
            raise UserError(f"latent_dim {self.latent_dim} or base_channels {self.base_channels} is beyond what dfc_vae "
                            f"builds (at most {MAX_LATENT_DIM} and {MAX_BASE_CHANNELS}); choose smaller values")

    @property
    def widths(self) -> tuple[int, ...]:
        """Encoder stage widths; the deepest stage leaves a 4x4 map."""
        stages = int(math.log2(self.image_size // 4))
        return tuple(self.base_channels * 2**i for i in range(stages))

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _encoder_stage(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 4, stride=2, padding=1),
        nn.BatchNorm2d(c_out),
        nn.LeakyReLU(0.2, inplace=True),
    )


class EdgePad(nn.Module):
    """nn.ReplicationPad2d(1): repeat the edge pixels once on every side.

    Eagerly, PyTorch's own replication_pad2d (its backward is much cheaper than that of the torch.cat
    form below, which builds zero-filled gradients for every slice). Under torch.compile (torch
    2.14, CPU), inductor mis-states the strides of replication_pad2d's backward on channels_last
    tensors and fails, so a compiled graph gets the same numbers written with torch.cat.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_compiling():
            return nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
        x = torch.cat([x[:, :, :1], x, x[:, :, -1:]], dim=2)
        return torch.cat([x[:, :, :, :1], x, x[:, :, :, -1:]], dim=3)


def _decoder_stage(c_in: int, c_out: int, last: bool = False) -> nn.Sequential:
    layers = [nn.Upsample(scale_factor=2, mode="nearest"), EdgePad(), nn.Conv2d(c_in, c_out, 3)]
    if not last:
        layers += [nn.BatchNorm2d(c_out, eps=1e-3), nn.LeakyReLU(0.2, inplace=True)]
    return nn.Sequential(*layers)


class DFCVAE(nn.Module):
    def __init__(self, config: ModelConfig = ModelConfig()):
        super().__init__()
        self.config = config
        widths = config.widths
        c_top = widths[-1]
        self.encoder = nn.Sequential(
            *[_encoder_stage(c_in, c_out) for c_in, c_out in zip((3,) + widths[:-1], widths)],
            nn.Flatten(),
        )
        flat = c_top * 4 * 4
        self.fc_mu = nn.Linear(flat, config.latent_dim)
        self.fc_logvar = nn.Linear(flat, config.latent_dim)
        self.fc_decode = nn.Sequential(nn.Linear(config.latent_dim, flat), nn.ReLU(inplace=True))
        rev = widths[::-1]
        self.decoder = nn.Sequential(
            *[_decoder_stage(c_in, c_out) for c_in, c_out in zip(rev[:-1], rev[1:])],
            _decoder_stage(rev[-1], 3, last=True),
        )
        self.apply(_init_official)
        self.register_buffer("latent_shift", torch.zeros(config.latent_dim))
        self.register_buffer("latent_scale", torch.ones(config.latent_dim))
        self.register_load_state_dict_pre_hook(_identity_calibration_if_missing)

    def encode_raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The training view: (B, 3, S, S) pixels in [0, 1] -> the heads' posterior mean and log-variance."""
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        """The training view: (B, latent_dim) raw latent -> (B, 3, S, S) pixels, nominally in [0, 1] (not clamped)."""
        h = self.fc_decode(z).view(z.shape[0], -1, 4, 4)
        return self.decoder(h)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) pixels in [0, 1] -> posterior mean and log-variance, each (B, latent_dim), in the
        calibrated latent (module docstring)."""
        return self.calibrated(*self.encode_raw(x))

    def calibrated(self, mu: torch.Tensor, logvar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw posterior parameters -> the same posterior in the calibrated latent."""
        return (mu - self.latent_shift) * self.latent_scale, logvar + 2 * self.latent_scale.log()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) calibrated latent -> (B, 3, S, S) pixels, nominally in [0, 1] (not clamped)."""
        return self.decode_raw(z / self.latent_scale + self.latent_shift)

    @torch.no_grad()
    def calibrate_latent(self, mu: torch.Tensor, logvar: torch.Tensor) -> None:
        """Fit the calibration to posteriors from `encode_raw` (N, latent_dim): afterwards their
        aggregate posterior, seen through `encode`, has mean 0 and E[z_j^2] = 1 per dimension."""
        mean = mu.mean(0)
        second_moment = ((mu - mean) ** 2 + logvar.exp()).mean(0)
        self.latent_shift.copy_(mean)
        self.latent_scale.copy_(second_moment.rsqrt())

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
        """z = mu + sigma * eps, eps ~ N(0, I) (Kingma & Welling 2014, Sec. 2.4); `eps` drawn here unless
        passed in (training passes each process its slice of the global batch's noise)."""
        if eps is None:
            eps = torch.randn_like(mu)
        return mu + torch.exp(0.5 * logvar) * eps

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The training view: (reconstruction, raw mean, raw log-variance)."""
        mu, logvar = self.encode_raw(x)
        return self.decode_raw(self.reparameterize(mu, logvar)), mu, logvar

    # --- safe model files: safetensors weights + a JSON config, never pickle ---
    def save_pretrained(self, directory: str | Path, extra: dict | None = None) -> None:
        directory = Path(directory)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        write_bytes(directory / "model.safetensors", save(tensors))
        write_json(directory / "config.json", {"model": asdict(self.config), **(extra or {})})

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device = "cpu") -> "DFCVAE":
        """Load a model written by `save_pretrained` (or `dfc-vae export`): a folder, or a Hugging Face Hub
        id (user/name, with the extra dfc_vae[hub]). Returns it in eval mode on `map_location` ('auto':
        CUDA when available)."""
        device = resolve_device(map_location) if isinstance(map_location, str) else map_location
        directory, _ = resolve_model(directory, "from_pretrained:")
        cfg_path, weights_path = directory / "config.json", directory / "model.safetensors"
        if not cfg_path.is_file() or not weights_path.is_file():
            raise UserError(f"{directory} is not an exported model (needs config.json and model.safetensors); "
                            "make one with `dfc-vae export --run RUN --out DIR`")
        model = cls(ModelConfig.from_dict(json.loads(cfg_path.read_text())["model"]))
        state = load_file(str(weights_path))  # on the CPU, where the model was built; moved below as a whole
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise UserError(f"{weights_path} does not fit its config.json ({str(e).splitlines()[0]}); re-export the model") from e
        return model.to(device).eval()


def _identity_calibration_if_missing(module, state_dict, prefix, *args) -> None:
    """Models saved before the latent calibration existed load with the identity calibration."""
    for name, fill in (("latent_shift", 0.0), ("latent_scale", 1.0)):
        state_dict.setdefault(prefix + name, torch.full_like(getattr(module, name), fill))


def _init_official(m: nn.Module) -> None:
    """Official init: conv weights N(0, 0.02), BatchNorm weights N(1, 0.02), their biases 0."""
    if isinstance(m, nn.Conv2d):
        nn.init.normal_(m.weight, 0.0, 0.02)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)
