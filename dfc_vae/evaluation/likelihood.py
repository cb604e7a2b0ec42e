"""log p(x) of a pixel-loss run: the ELBO and the importance-weighted bound (Burda et al. 2016).

Which density the pixel loss is. Training minimises alpha * KL + beta * L_pixel per image (model/losses.py),
where L_pixel = c * ||x - x_hat||^2 over the image's D = 3 H W values in [0, 1], with c = 1 for the 'sum'
reduction and c = 255^2 / D for 'paper'. Divided by alpha, that is KL + (beta / alpha) c ||x - x_hat||^2: the
negative ELBO of the model

    z ~ N(0, I),   x | z ~ N(x_hat(z), sigma^2 I)   with   1 / (2 sigma^2) = beta c / alpha,

up to the Gaussian's constant, so that

    log p(x | z) = -(beta / alpha) L_pixel(x, x_hat(z)) - (D / 2) log(2 pi sigma^2).

(The paper's alpha = 1, beta = 0.5 with 'sum': sigma = 1 pixel range.) `decoder_sigma` derives c from the loss
function itself, so the density follows the loss if its scale ever changes. It is a density over continuous
pixel values in [0, 1]; for 8-bit images read as bins of width 1/256, P(x) ~ p(x) / 256^D (`bits_per_dim`).

The latent is the one the run samples from (`sample_grid`: z ~ N(0, I) in the calibrated latent of
model/network.py): q(z | x) = N(mu, exp(logvar)) from `model.encode`, x_hat(z) = `model.decode(z)`.

The estimates. With importance weights w_s = p(x | z_s) p(z_s) / q(z_s | x), z_s ~ q(z | x) (Burda et al.
2016, Eq. 8), L_k = E[log (1/k) sum_{s<=k} w_s] satisfies ELBO = L_1 <= L_k <= L_{k+1} <= log p(x) (their
Theorem 1). Each face gets S samples (S a multiple of every k asked); the estimate of L_k is the mean over the
S / k disjoint groups of k of the group's log-mean-exp. The ELBO is E_q[log p(x | z)] (the mean over the S
samples) - KL(q(z | x) || N(0, I)) in closed form; log p(x) - ELBO = KL(q(z | x) || p(z | x)), so
L_k - ELBO is a lower estimate of that gap.

A feature-loss run (VAE-123, VAE-345) has no such density: its reconstruction term is a distance between VGG
features of x and x_hat, whose exponential does not integrate to one over images (nor to any constant that is
the same for every x_hat), so its ELBO-shaped objective bounds no log p(x); `log_likelihood` refuses it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from dfc_vae.model.losses import LOSSES, kl_divergence, pixel_loss
from dfc_vae.util.errors import UserError
from dfc_vae.util.images import to_tensor

LOG_2PI = math.log(2 * math.pi)
LL_FACES = 1000  # test faces `dfc-vae evaluate --log-likelihood K` measures (the first ones)
DECODED_PIXELS_PER_PASS = 2048 * 32 * 32  # bounds the decoder's activations per pass (memory, not results)


@dataclass(frozen=True)
class LogLikelihood:
    """Per-face estimates, in nats per image (a density over pixel values in [0, 1])."""

    k: tuple[int, ...]
    log_px: torch.Tensor  # (N, len(k)) float64: the estimate of L_k for each k, in the order of `k`
    elbo: torch.Tensor  # (N,) float64: reconstruction - kl
    reconstruction: torch.Tensor  # (N,) float64: E_q[log p(x | z)], the mean over the samples
    kl: torch.Tensor  # (N,) float64: KL(q(z | x) || N(0, I)), closed form
    sigma: float  # the decoder's standard deviation, in pixel range units
    samples: int  # importance samples per face
    dims: int  # D = 3 H W

    def bits_per_dim(self, log_px: torch.Tensor) -> torch.Tensor:
        """-log2 P(x) / D for 8-bit pixels read as bins of width 1/256: P(x) ~ p(x) 256^-D."""
        return 8.0 - log_px / (self.dims * math.log(2))

    def summary(self) -> dict:
        """Means over the faces (what `dfc-vae evaluate` reports)."""
        return {"faces": len(self.elbo), "samples": self.samples, "sigma": self.sigma, "dims": self.dims,
                "elbo": float(self.elbo.mean()), "reconstruction": float(self.reconstruction.mean()),
                "kl": float(self.kl.mean()),
                "log_px": {str(k): float(self.log_px[:, i].mean()) for i, k in enumerate(self.k)},
                "bits_per_dim": float(self.bits_per_dim(self.log_px[:, -1]).mean())}


def require_pixel_loss(run) -> None:
    """UserError unless `run` (a LoadedRun) was trained with a pixel loss and positive alpha and beta."""
    cfg = run.config
    if LOSSES[cfg.loss].layers:
        raise UserError(f"{run.name} was trained with the {cfg.loss} feature-perceptual loss, a distance between VGG "
                        "features that is not a density over images, so it has no log p(x); estimate it on a "
                        "pixel-loss run (train with --loss pvae)")
    if LOSSES[cfg.loss].per_image is not pixel_loss:  # the Gaussian of the module doc is the squared pixel error's
        raise UserError(f"{run.name} was trained with the {cfg.loss} loss, which is not the squared pixel error whose "
                        "density this estimate knows; estimate log p(x) on a run trained with --loss pvae")
    if not (cfg.alpha > 0 and cfg.beta > 0):
        raise UserError(f"{run.name} was trained with alpha = {cfg.alpha:g}, beta = {cfg.beta:g}: its objective is an ELBO "
                        "only with both > 0; estimate log p(x) on a run trained with positive weights")


def decoder_sigma(run) -> float:
    """The standard deviation of the Gaussian p(x | z) whose negative log the run's pixel loss is (module doc)."""
    size = run.config.image_size
    one = torch.ones(1, 3, size, size)
    c = float(pixel_loss(None, torch.zeros_like(one), one, run.config.reduction)) / one.numel()  # L = c ||x - x_hat||^2
    return math.sqrt(run.config.alpha / (2 * run.config.beta * c))


def log_px_given_z(run, x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """log p(x | z) of (B, 3, S, S) faces `x` under the decoder's output `recon` = x_hat(z), in nats per image:
    -(beta / alpha) L_pixel - (D / 2) log(2 pi sigma^2) (module doc), (B,) float64."""
    cfg = run.config
    dims = x[0].numel()
    constant = 0.5 * dims * (LOG_2PI + 2 * math.log(decoder_sigma(run)))
    return -(cfg.beta / cfg.alpha) * pixel_loss(None, x, recon, cfg.reduction).double() - constant


def _group_bounds(log_w: torch.Tensor, ks: tuple[int, ...]) -> torch.Tensor:
    """(N, S) log-weights -> (N, len(ks)): per k, the mean over S / k disjoint groups of their log-mean-exp."""
    n, s = log_w.shape
    return torch.stack([(log_w.view(n, s // k, k).logsumexp(-1) - math.log(k)).mean(-1) for k in ks], dim=1)


@torch.no_grad()
def _log_weights(run, x: torch.Tensor, samples: int, generator: torch.Generator):
    """For a batch of faces (B, 3, S, S): the (B, samples) log-weights, the (B,) mean of log p(x | z) over
    the samples and the (B,) closed-form KL."""
    mu, logvar = (t.double() for t in run.model.encode(x))
    std = (0.5 * logvar).exp()
    log_w, log_lik = [], []
    per_pass = max(1, DECODED_PIXELS_PER_PASS // (x.shape[-1] * x.shape[-2] * len(x)))  # samples per pass
    for start in range(0, samples, per_pass):
        m = min(per_pass, samples - start)
        eps = torch.randn(m, *mu.shape, generator=generator, dtype=torch.float64).to(mu.device)
        z = mu + std * eps  # (m, B, latent)
        recon = run.model.decode(z.flatten(0, 1).float())
        lik = log_px_given_z(run, x.repeat(m, 1, 1, 1), recon).view(m, len(x))
        log_prior = -0.5 * (z.pow(2) + LOG_2PI).sum(-1)  # log N(z; 0, I)
        log_q = -0.5 * (eps.pow(2) + LOG_2PI + logvar).sum(-1)  # log N(z; mu, sigma^2), z = mu + sigma eps
        log_w.append((lik + log_prior - log_q).T)
        log_lik.append(lik.T)
    return torch.cat(log_w, 1).cpu(), torch.cat(log_lik, 1).mean(1).cpu(), kl_divergence(mu, logvar).cpu()


def log_likelihood(run, faces, k: int | Sequence[int] = (1, 10, 100, 1000), samples: int | None = None,
                   seed: int = 0, batch_size: int = 64) -> LogLikelihood:
    """Importance-weighted estimates of log p(x) (Burda et al. 2016) of a pixel-loss run, and the ELBO.

    run: a LoadedRun (`load_run`); faces: (N, 3, S, S) floats in [0, 1] or (N, S, S, 3) uint8 at the run's size;
    k: one number of importance samples or several; samples: draws per face, a multiple of every k (default
    their least common multiple); seed: of the draws (the same faces and seed give the same numbers).
    """
    require_pixel_loss(run)
    ks = tuple(k) if isinstance(k, (list, tuple, range, np.ndarray)) else (k,)
    if not ks or any(int(v) != v or v < 1 for v in ks):
        raise UserError(f"k = {k!r}: give one or more whole numbers of importance samples, each at least 1")
    ks = tuple(int(v) for v in ks)
    samples = math.lcm(*ks) if samples is None else samples
    if samples < 1 or any(samples % v for v in ks):
        raise UserError(f"samples = {samples} is not a multiple of every k in {ks}; give a common multiple")
    x = faces if isinstance(faces, torch.Tensor) else to_tensor(np.asarray(faces))
    size = run.config.image_size
    if x.ndim != 4 or tuple(x.shape[1:]) != (3, size, size) or not len(x):
        raise UserError(f"faces of shape {tuple(x.shape)} do not fit the run's {size}x{size} model; give "
                        f"(N, 3, {size}, {size}) floats or (N, {size}, {size}, 3) uint8 images, N >= 1")
    generator = torch.Generator().manual_seed(seed)
    run.model.eval()
    parts = [_log_weights(run, x[i:i + batch_size].to(run.device).float(), samples, generator)
             for i in range(0, len(x), batch_size)]
    log_w, rec, kl = (torch.cat(p) for p in zip(*parts))
    return LogLikelihood(ks, _group_bounds(log_w, ks), rec - kl, rec, kl, decoder_sigma(run), samples, x[0].numel())


def likelihood_lines(s: dict) -> list[str]:
    """The report's section on the summary of a LogLikelihood (`LogLikelihood.summary`)."""
    bounds = ", ".join(f"k = {k}: {v:.2f}" for k, v in s["log_px"].items())
    return [
        "## log p(x) (pixel-loss run)",
        "",
        f"- p(x | z) = N(x_hat(z), sigma^2 I) on pixels in [0, 1], sigma = {s['sigma']:.4g} (from the run's loss, "
        f"alpha and beta); nats per image of {s['dims']} values, means over the first {s['faces']} test faces",
        f"- ELBO {s['elbo']:.2f} = E_q log p(x|z) {s['reconstruction']:.2f} - KL {s['kl']:.2f}",
        f"- importance-weighted log p(x) (Burda et al. 2016), {s['samples']} samples per face: {bounds}; "
        f"{s['bits_per_dim']:.3f} bits per dimension as 8-bit pixels",
        "",
    ]
