"""The parts of one optimizer step, which the Trainer (loop.py) and experiments build a step from:
`TrainStep` (the forward pass with its noise passed in), `make_step_fn` (forward and loss under
autocast), `make_optimizer` (Adam as the paper), `learning_rate` (the rate of any step), and the
checks for NaN/Inf in the loss terms and the weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dfc_vae.model.losses import DFCLoss
from dfc_vae.model.network import DFCVAE
from dfc_vae.runs.config import TrainConfig
from dfc_vae.util.device import autocast_for
from dfc_vae.util.errors import UserError


class TrainingDiverged(UserError):
    """A loss term or the weights became NaN/Inf; the last good checkpoint is kept."""


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
        mu, logvar = self.model.encode_raw(x)  # training sees the raw latent (model/network.py: calibration)
        return self.model.decode_raw(self.model.reparameterize(mu, logvar, eps)), mu, logvar


def learning_rate(cfg: TrainConfig, epoch: int, step: int = 0, schedule_steps: int = 0) -> float:
    """The rate of the 0-based optimizer `step` in the 0-based `epoch`, of a run planned for `schedule_steps`.

    Halved at the start of 1-based epochs N, 2N, ... (N = cfg.lr_halving): the official code meant `if epoch % 2 == 0
    then lr = lr / 2` once per even (1-based) epoch. A linear warm-up over cfg.warmup_steps, then with
    cfg.lr_schedule "cosine" a half cosine from the rate down to 0 at `schedule_steps`. A function of the step alone,
    so a resumed run takes the rates the uninterrupted one did."""
    rate = cfg.lr * 0.5 ** ((epoch + 1) // cfg.lr_halving) if cfg.lr_halving else cfg.lr
    if step < cfg.warmup_steps:
        rate *= (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "cosine" and schedule_steps:
        done = min(1.0, max(0, step - cfg.warmup_steps) / max(1, schedule_steps - cfg.warmup_steps))
        rate *= 0.5 * (1 + math.cos(math.pi * done))
    return rate


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Adam:
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


def batchnorm_buffers(model: nn.Module) -> list[torch.Tensor]:
    """The BatchNorm running statistics a skipped batch's forward pass has moved, to restore them."""
    return [b for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            for b in (m.running_mean, m.running_var, m.num_batches_tracked)]
