"""The DFC-VAE objective: alpha * KL + beta * reconstruction (Hou et al. 2017, Eq. 7).

Reconstruction is the feature perceptual loss (Sec. 3.2, Eq. 5-6) on a frozen VGG19, or the pixel
loss of the PVAE baseline. Each loss is declared once, as one ReconstructionLoss in LOSSES: its name,
the VGG layers it compares (none: the pixels), its plain per-image definition, and optionally a faster
batch sum of the same numbers for training (tests/model/test_losses.py holds every such fast path to its
definition, for both reductions). A new loss is one entry there, and a test of what it computes.

Reductions (`reduction`; the run's config records which). Every term is per image, averaged over the batch.

'sum' (the default) -- per-image SUMS:
  KL      = sum over latent dims of KL(N(mu, sigma^2) || N(0, 1))
  L_l     = sum over the (C, H, W) elements of layer l of (phi_l(x) - phi_l(x_hat))^2
  L_pixel = sum over the (3, H, W) pixels of (x - x_hat)^2
With the paper's alpha = 1 and beta = 0.5, beta * L is then exactly the negative log-likelihood of a
unit-variance Gaussian on features (or pixels), so the objective is a true per-image negative ELBO.

'paper' -- Eq. 5 as the paper writes it: each layer's squared difference AVERAGED over its C x H x W
elements (the 1/2 of Eq. 5 is the beta = 0.5 of Eq. 7, applied once, as the official code does), the KL
summed over latent dims, on the feature scale of the paper's Caffe VGG19. Caffe fed VGG 0-255 pixels
minus the channel means, x_caffe = 255 (x - m) = 255 s * x_tv for torchvision's normalised input
x_tv = (x - m) / s; the first convolution is linear and ReLU positively homogeneous, so (up to the
biases) every feature is 255 s times torchvision's, and squared differences (255 s)^2 times:
  L_l     = CAFFE_FEATURE_SCALE^2 * mean over (C, H, W) of (phi_l(x) - phi_l(x_hat))^2
with CAFFE_FEATURE_SCALE = 255 * mean(IMAGENET_STD) = 57.6 (the three channels' 58.4, 57.1 and 57.4
differ by 2%). The pixel loss is the per-element mean on 0-255 pixels, the same input scale:
  L_pixel = 255^2 * mean over (3, H, W) of (x - x_hat)^2
Against 'sum', this weighs reconstruction far less relative to the KL (by C H W / 3,321 per layer:
79x for relu1_1, 20x for relu3_1 at 64x64), closer to the official code's balance.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from dfc_vae.util.errors import UserError

# torchvision vgg19().features indices of the tapped ReLUs (official README; Sec. 4.1).
VGG_LAYERS = {
    "relu1_1": 1, "relu2_1": 6, "relu3_1": 11, "relu4_1": 20, "relu5_1": 29,
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
REDUCTIONS = ("sum", "paper")
CAFFE_FEATURE_SCALE = 255 * sum(IMAGENET_STD) / 3  # Caffe-scale VGG features / torchvision's (module doc)
PIXEL_SCALE = 255  # 'paper' reduction of the pixel loss: differences of 0-255 pixel values
ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2016: a latent unit is active if Var(posterior mean) exceeds this
# The provenance sentence of a model whose VGG19 had random weights: every output made with them says so, in
# these words (runs/provenance.py puts it in captions and reports).
RANDOM_VGG = "VGG19 with RANDOM weights, not ImageNet"


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-image KL(N(mu, exp(logvar)) || N(0, I)), summed over latent dims: (B, D) -> (B,).

    Closed form, Kingma & Welling 2014, Appendix B: -1/2 sum(1 + log sigma^2 - mu^2 - sigma^2).
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)


def active_units(mu: torch.Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """Burda et al. 2016: latent dims whose posterior mean varies over the data by more than the threshold.

    mu: (N, D) posterior means of N images. A collapsed posterior has ~0 active units.
    """
    if mu.shape[0] < 2:
        return 0
    return int((mu.float().var(dim=0) > threshold).sum())


# VGG19 (Simonyan & Zisserman 2015, Table 1, configuration E): 3x3 convs (padding 1) with their
# widths, 'M' = 2x2 max pooling. Built here, not by torchvision, so that training never imports
# torchvision (~160 MB of resident memory); module indices are torchvision's `features` indices.
VGG19_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
VGG19_IMAGENET_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"  # torchvision's VGG19_Weights.IMAGENET1K_V1


def _vgg19_feature_layers(upto: int | None = None) -> nn.Sequential:
    """VGG19's `features` (conv, ReLU and pooling modules, no classifier), up to index `upto`."""
    layers: list[nn.Module] = []
    channels = 3
    for v in VGG19_CONFIG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = v
    return nn.Sequential(*layers[: None if upto is None else upto + 1])


def _load_features_state(net: nn.Sequential, path: Path, what: str) -> None:
    """Load the `features.*` tensors of a torchvision vgg19 state-dict file (or a bare features
    state dict) into `net`. Memory-mapped, so the classifier's 0.5 GB is never read."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        raise UserError(f"{what} {path} is not a readable tensor state dict ({type(e).__name__}); "
                        "save one with torch.save(vgg19(...).state_dict(), PATH)") from e
    wanted = net.state_dict().keys()  # `net` may stop before the last layer
    state = {k.removeprefix("features."): v for k, v in state.items() if k.removeprefix("features.") in wanted}
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"{what} {path} does not hold torchvision VGG19 weights ({str(e).splitlines()[0]})") from e


def load_vgg19_features(weights: str = "imagenet", upto: int | None = None) -> tuple[nn.Sequential, str]:
    """torchvision's VGG19 `features` (up to index `upto`), and a description of the weights it holds.

    weights: 'imagenet' (torchvision's VGG19_Weights.IMAGENET1K_V1, through torch.hub's cache:
    downloaded once where there is internet), 'random' (offline runs and tests: the features carry
    no ImageNet knowledge), or a path to a state-dict file of torchvision's vgg19 (full model or
    its `features`).
    """
    net = _vgg19_feature_layers(upto)
    if weights == "random":
        # torchvision's VGG initialization (kaiming normal, fan_out), from a fixed seed so that
        # every run with random weights uses the same network
        g = torch.Generator().manual_seed(0)
        for m in net:
            if isinstance(m, nn.Conv2d):
                std = (2.0 / (m.out_channels * m.kernel_size[0] * m.kernel_size[1])) ** 0.5
                with torch.no_grad():
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g) * std)
                    m.bias.zero_()
        return net, "random"
    if weights == "imagenet":
        url = VGG19_IMAGENET_URL
        name = url.rsplit("/", 1)[-1]  # vgg19-dcbb9e9d.pth: the suffix is a sha256 prefix
        path = Path(torch.hub.get_dir()) / "checkpoints" / name
        if not path.is_file():
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.hub.download_url_to_file(url, str(path), hash_prefix=name.split("-")[1].split(".")[0])
            except Exception as e:  # no network, proxy, broken download...
                raise UserError(
                    f"VGG19 ImageNet weights could not be downloaded ({type(e).__name__}); put {name} (from {url}) "
                    f"in {path.parent}, or pass --vgg-weights PATH to a local file, or --vgg-weights random for an "
                    "offline run without ImageNet features") from e
        _load_features_state(net, path, "the cached VGG19 weights")
        return net, "imagenet (torchvision VGG19_Weights.IMAGENET1K_V1)"
    path = Path(weights)
    if not path.is_file():
        raise UserError(f"--vgg-weights {weights}: no such file; give 'imagenet', 'random' or a path to a VGG19 state dict")
    _load_features_state(net, path, "--vgg-weights")
    return net, f"file {os.path.abspath(path)}"


class VGGFeatures(nn.Module):
    """Frozen VGG19 cut after its deepest tapped layer; returns the tapped activations.

    Input: (B, 3, H, W) pixels in [0, 1]; ImageNet normalization happens here.
    """

    def __init__(self, layers: tuple[str, ...], weights: str = "imagenet"):
        super().__init__()
        for name in layers:
            if name not in VGG_LAYERS:
                raise UserError(f"unknown VGG layer '{name}'; choose from {', '.join(VGG_LAYERS)}")
        self.taps = sorted(VGG_LAYERS[n] for n in layers)
        # (its ReLUs run in place: only ReLU outputs are tapped, and no conv output is needed again)
        self.net, self.weights_description = load_vgg19_features(weights, upto=self.taps[-1])
        self.net.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._cast: tuple | None = None  # ((dtype, device), a copy of `net` in that dtype): see _layers
        self.eval()

    def train(self, mode: bool = True):  # frozen: BatchNorm-free, but keep it in eval regardless
        return super().train(False)

    def _layers(self, x: torch.Tensor) -> nn.Sequential:
        """`net`, or under autocast a copy of it in autocast's dtype, made once: autocast caches the
        casts of trainable weights only, so it would cast these frozen ones again at every call (its
        cost: docs/benchmarks.md). The numbers are the same either way."""
        device = x.device.type
        if not torch.is_autocast_enabled(device) or torch.compiler.is_compiling():
            return self.net
        key = (torch.get_autocast_dtype(device), x.device)
        if self._cast is None or self._cast[0] != key:
            self._cast = (key, copy.deepcopy(self.net).to(key[0]))
        return self._cast[1]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = (x - self.mean) / self.std
        out = []
        for i, layer in enumerate(self._layers(x)):
            h = layer(h)
            if i in self.taps:
                out.append(h)
        return out


class _SquaredNormOfDifference(torch.autograd.Function):
    """||t - a||^2, given d = t - a computed beforehand; the gradient for `a` is -2 d (the target
    t has none).

    The same as mse_loss(a, t, reduction="sum") in three passes over memory instead of ~7, and
    without a new feature-sized tensor when the caller computes d in place in a target it no longer
    needs (forward: that subtraction and a norm; backward: d scaled). On a CPU the feature loss of
    VAE-123 at 64x64 is memory-bound, so fewer passes are faster (docs/benchmarks.md).
    """

    @staticmethod
    def forward(ctx, a, d):
        ctx.save_for_backward(d)
        return torch.linalg.vector_norm(d).square()

    @staticmethod
    def backward(ctx, grad):
        (d,) = ctx.saved_tensors
        return d * (-2 * grad), None


# A CPU computes the feature loss of a batch chunk by chunk, forward and backward, so that each
# chunk's largest VGG maps (relu1_x: 64 channels at full resolution) stay in the processor's caches,
# and the activations saved for backward shrink from the whole batch's to one chunk's (the measured
# gain: docs/benchmarks.md).
CPU_CHUNK_BYTES = 8 * 2**20  # of one fp32 relu1 map per chunk: 8 images at 64x64, 32 at 32x32


def _images_per_chunk(x: torch.Tensor) -> int:
    """Images per chunk of the feature loss: cache-sized on a CPU; the whole batch on a GPU (where
    larger is faster) and under torch.compile (which traces one graph for the whole step)."""
    if x.device.type != "cpu" or torch.compiler.is_compiling():
        return len(x)
    return max(1, CPU_CHUNK_BYTES // (64 * 4 * x.shape[2] * x.shape[3]))


class _ChunkedFeatureLoss(torch.autograd.Function):
    """sum over images and layers of ||phi_l(x) - phi_l(recon)||^2, computed chunk by chunk.

    VGG is frozen, so the loss of each image depends on that image's reconstruction alone: the
    forward pass runs each chunk's VGG forward and backward at once and keeps only d loss / d recon
    (one image-sized tensor) for the backward pass. The same numbers as one pass over the batch, up
    to the order of float sums.
    """

    @staticmethod
    def forward(ctx, recon, x, squared_error_sum, chunk):
        grad = torch.empty_like(recon)
        total = recon.new_zeros((), dtype=torch.float32)
        for i in range(0, len(recon), chunk):
            part = recon[i:i + chunk].detach().requires_grad_()
            with torch.enable_grad():
                loss = squared_error_sum(x[i:i + chunk], part)
            loss.backward()
            grad[i:i + chunk] = part.grad
            total += loss.detach()
        ctx.save_for_backward(grad)
        return total

    @staticmethod
    def backward(ctx, grad_total):
        (grad,) = ctx.saved_tensors
        return grad * grad_total.to(grad.dtype), None, None, None


def _reduced(squared_sum: torch.Tensor, elements_per_image: int, reduction: str, scale: float) -> torch.Tensor:
    """One layer's (or the pixels') squared differences, summed per image (or over the batch), as
    `reduction` weighs them (module doc): 'sum' as they are; 'paper' as Eq. 5's per-element mean of
    the squared differences of `scale` times larger features (Caffe's, or 0-255 pixels)."""
    return squared_sum if reduction == "sum" else squared_sum * (scale ** 2 / elements_per_image)


# --- the plain definitions: per image, (B,), as the paper writes them ---

def feature_perceptual_loss(vgg: VGGFeatures, x: torch.Tensor, recon: torch.Tensor, reduction: str) -> torch.Tensor:
    """The feature perceptual loss (Sec. 3.2, Eq. 5-6): sum over the tapped VGG layers l of
    ||phi_l(x_hat) - phi_l(x)||^2 over layer l's (C, H, W) elements (the 1/2 of Eq. 5 is beta)."""
    return sum(_reduced((f_hat.float() - f.float()).pow(2).flatten(1).sum(1), f_hat[0].numel(), reduction,
                        CAFFE_FEATURE_SCALE) for f_hat, f in zip(vgg(recon), vgg(x)))


def pixel_loss(vgg: None, x: torch.Tensor, recon: torch.Tensor, reduction: str) -> torch.Tensor:
    """The pixel-by-pixel loss of the plain VAE baseline (PVAE): Eq. 5 with the pixels for features,
    ||x_hat - x||^2 over the (3, H, W) pixels (`vgg` is None: no network)."""
    return _reduced((recon.float() - x.float()).pow(2).flatten(1).sum(1), recon[0].numel(), reduction, PIXEL_SCALE)


# --- fast paths for training: the sum over the batch of the same numbers, up to the order of float sums ---

def feature_perceptual_loss_batch_sum(vgg: VGGFeatures, x: torch.Tensor, recon: torch.Tensor,
                                      reduction: str) -> torch.Tensor:
    """feature_perceptual_loss summed over the batch: in place, and chunk by chunk on a CPU."""
    chunk = _images_per_chunk(x)
    if chunk < len(x) and recon.requires_grad and torch.is_grad_enabled():
        return _ChunkedFeatureLoss.apply(recon, x, partial(_feature_squared_error_sum, vgg, reduction=reduction), chunk)
    return _feature_squared_error_sum(vgg, x, recon, reduction)


def _feature_squared_error_sum(vgg: VGGFeatures, x: torch.Tensor, recon: torch.Tensor, reduction: str) -> torch.Tensor:
    """Three passes over memory per layer: the differences are computed in place in our own target features."""
    with torch.no_grad():
        targets = vgg(x)  # our own temporaries: overwritten by the differences
    total = 0
    for f_hat, f in zip(vgg(recon), targets):
        f_hat = f_hat.float()
        with torch.no_grad():
            d = f.float().sub_(f_hat)
        total = total + _reduced(_SquaredNormOfDifference.apply(f_hat, d), f_hat[0].numel(), reduction,
                                 CAFFE_FEATURE_SCALE)
    return total


def pixel_loss_batch_sum(vgg: None, x: torch.Tensor, recon: torch.Tensor, reduction: str) -> torch.Tensor:
    """pixel_loss summed over the batch, in three passes over memory."""
    recon = recon.float()
    return _reduced(_SquaredNormOfDifference.apply(recon, x.float() - recon), recon[0].numel(), reduction, PIXEL_SCALE)


@dataclass(frozen=True)
class ReconstructionLoss:
    """A reconstruction loss, declared once.

    per_image(vgg, x, recon, reduction) -> (B,) is its definition, the one evaluation uses;
    batch_sum, with the same arguments, optionally the sum over the batch of the same numbers that
    training uses (faster, and checked against per_image in tests/model/test_losses.py); without one,
    training sums per_image. `vgg` is the frozen VGG19 cut after `layers` (None when there are none).
    """
    name: str
    layers: tuple[str, ...]  # the VGG19 layers compared (VGG_LAYERS); () compares the pixels
    per_image: Callable[..., torch.Tensor]
    batch_sum: Callable[..., torch.Tensor] | None = None


LOSSES: dict[str, ReconstructionLoss] = {loss.name: loss for loss in (
    ReconstructionLoss("vae123", ("relu1_1", "relu2_1", "relu3_1"), feature_perceptual_loss,
                       feature_perceptual_loss_batch_sum),
    ReconstructionLoss("vae345", ("relu3_1", "relu4_1", "relu5_1"), feature_perceptual_loss,
                       feature_perceptual_loss_batch_sum),
    ReconstructionLoss("pvae", (), pixel_loss, pixel_loss_batch_sum),  # the pixel loss, no VGG
)}
LOSS_NAMES = tuple(LOSSES)
LOSS_LAYERS: dict[str, tuple[str, ...]] = {name: loss.layers for name, loss in LOSSES.items()}


def check_loss_name(loss: str) -> None:
    if loss not in LOSSES:
        raise UserError(f"unknown loss '{loss}'; choose one of {', '.join(LOSS_NAMES)}")


class DFCLoss(nn.Module):
    """alpha * KL + beta * reconstruction, per image and averaged over the batch; `loss` one of LOSSES,
    `reduction` 'sum' (per-image sums) or 'paper' (Eq. 5's per-element means on Caffe-scale features):
    see the module doc."""

    def __init__(self, loss: str = "vae123", alpha: float = 1.0, beta: float = 0.5, vgg_weights: str = "imagenet",
                 reduction: str = "sum"):
        super().__init__()
        check_loss_name(loss)
        if reduction not in REDUCTIONS:
            raise UserError(f"unknown reduction '{reduction}'; choose one of {', '.join(REDUCTIONS)}")
        self.loss, self.alpha, self.beta, self.reduction = loss, alpha, beta, reduction
        self.definition = LOSSES[loss]
        self.vgg = VGGFeatures(self.definition.layers, vgg_weights) if self.definition.layers else None

    @property
    def vgg_weights_description(self) -> str:
        return self.vgg.weights_description if self.vgg is not None else "none (pixel loss)"

    def reconstruction(self, x: torch.Tensor, recon: torch.Tensor, per_image: bool = True) -> torch.Tensor:
        """The reconstruction term per image, (B,); or, with per_image=False, its batch mean, computed
        as one sum over the whole batch / B (the same number, in fewer passes over memory)."""
        if per_image or self.definition.batch_sum is None:
            values = self.definition.per_image(self.vgg, x, recon, self.reduction)
            return values if per_image else values.sum() / len(x)
        return self.definition.batch_sum(self.vgg, x, recon, self.reduction) / len(x)

    def forward(self, x, recon, mu, logvar) -> dict[str, torch.Tensor]:
        """Returns batch means: 'loss' (to minimize), 'recon' and 'kl'."""
        rec = self.reconstruction(x, recon, per_image=False)
        kl = kl_divergence(mu.float(), logvar.float()).mean()
        return {"loss": self.alpha * kl + self.beta * rec, "recon": rec, "kl": kl}
