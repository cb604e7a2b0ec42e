"""Measures of a trained VAE: pixel reconstruction quality and the linear attribute probe.

* `mse`, `psnr`, `ssim`: per-image scores of (B, 3, H, W) images in [0, 1].
* `linear_probe`: the paper's attribute-prediction protocol (Sec. 4.4): one linear classifier per
  attribute on the latent vectors of the train split, its regularization chosen on the valid
  split, accuracy on the test split, beside the majority-class baseline; the thresholds its honesty
  checks on synthetic faces hold it to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

# Honesty checks on synthetic faces: drawn attributes must be linearly decodable, the
# label-only ones must not be (a probe beating chance there would be leaking labels). evaluate.honesty_checks
# applies them to the probe, the report (evaluation/report.py) says them.
VISIBLE_MIN_ACCURACY = 0.95
LABEL_ONLY_MAX_GAP = 0.02


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image: (B, C, H, W) x2 in [0, 1] -> (B,)."""
    return (x.float() - y.float()).pow(2).flatten(1).mean(1)


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, eps: float = 1e-12) -> torch.Tensor:
    """Peak signal-to-noise ratio per image in dB: 10 log10(range^2 / MSE), (B, C, H, W) x2 -> (B,).

    Identical images give a large finite value (MSE floored at `eps`), not infinity.
    """
    return 10.0 * torch.log10(data_range ** 2 / mse(x, y).clamp(min=eps))


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-t.pow(2) / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()  # (size, size), sums to 1


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, window: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Structural similarity per image (Wang, Bovik, Sheikh, Simoncelli 2004, Eq. 13), (B, C, H, W) x2 -> (B,).

    Local statistics under an 11x11 Gaussian window (sigma 1.5), computed per channel over the
    'valid' positions only (no padding, as in the authors' MATLAB code); the SSIM map is averaged
    over positions and channels. C1 = (k1 L)^2, C2 = (k2 L)^2 with L = data_range. Images must be
    at least `window` pixels on each side.
    """
    x, y = x.float(), y.float()
    b, c, h, w = x.shape
    if min(h, w) < window:
        raise ValueError(f"SSIM needs images of at least {window}x{window} pixels, got {h}x{w}")
    kernel = _gaussian_window(window, sigma).to(x.device).expand(c, 1, window, window)

    def blur(t):  # depthwise Gaussian filter, valid positions only
        return F.conv2d(t, kernel, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x.pow(2)
    var_y = blur(y * y) - mu_y.pow(2)
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x.pow(2) + mu_y.pow(2) + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(1)


# --- the linear probe ------------------------------------------------------------------------

# L2 strengths tried, strongest first. math.inf is the intercept-only model, which predicts the
# train split's majority label: the probe falls back to it unless a linear model does better.
L2_GRID: tuple[float, ...] = (math.inf, 1.0, 1e-1, 1e-2, 1e-3, 1e-4)


@dataclass
class ProbeResult:
    """Per-attribute outcome of `linear_probe` (arrays of shape (A,))."""

    names: list[str]
    test_accuracy: np.ndarray  # in [0, 1]
    majority_baseline: np.ndarray  # test accuracy of always predicting the train split's majority label
    valid_accuracy: np.ndarray  # of the chosen model
    l2: np.ndarray  # the chosen L2 strength (inf: intercept only)
    test_positive_rate: np.ndarray

    def table(self) -> pd.DataFrame:
        return pd.DataFrame({
            "attribute": self.names, "test_accuracy": self.test_accuracy, "majority_baseline": self.majority_baseline,
            "gain": self.test_accuracy - self.majority_baseline, "valid_accuracy": self.valid_accuracy,
            "l2": self.l2, "test_positive_rate": self.test_positive_rate,
        })


def _fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float, init: torch.Tensor | None, max_iter: int = 200) -> torch.Tensor:
    """All A attributes at once: minimize mean BCE + l2/2 ||W||^2 (bias not penalized) by full-batch LBFGS.

    x: (N, D) standardized features; y: (N, A) float 0/1. Returns (D + 1, A) weights, bias last.
    The attributes do not share parameters, so the joint sum is A independent problems.
    """
    n, d = x.shape
    w = (init.clone() if init is not None else torch.zeros(d + 1, y.shape[1], dtype=x.dtype)).requires_grad_(True)
    opt = torch.optim.LBFGS([w], lr=1, max_iter=max_iter, tolerance_grad=1e-6, tolerance_change=1e-9,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logits = x @ w[:-1] + w[-1]
        loss = F.binary_cross_entropy_with_logits(logits, y, reduction="sum") / n
        loss = loss + 0.5 * l2 * w[:-1].pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach()


def linear_probe(z_train: torch.Tensor, y_train: np.ndarray, z_valid: torch.Tensor, y_valid: np.ndarray,
                 z_test: torch.Tensor, y_test: np.ndarray, names: list[str] | None = None,
                 l2_grid: tuple[float, ...] = L2_GRID) -> ProbeResult:
    """L2-regularized logistic regression per attribute on latent vectors.

    z_*: (N_split, D) latent vectors (posterior means); y_*: (N_split, A) bool labels.
    Inputs are standardized with the train split's mean and std. For each attribute the L2
    strength is chosen on the valid split by the one-standard-error rule: the strongest
    regularization whose valid accuracy is within one binomial standard error of the best. The
    grid starts with the intercept-only model (the majority label), so an attribute the latent
    space knows nothing about is predicted by its majority label instead of by fitted noise.
    """
    y_train, y_valid, y_test = (np.asarray(a, dtype=bool) for a in (y_train, y_valid, y_test))
    a = y_train.shape[1]
    names = list(names) if names is not None else [f"attr{i}" for i in range(a)]
    mean = z_train.double().mean(0)
    std = z_train.double().std(0).clamp(min=1e-8)

    def prep(z):
        return ((z.double() - mean) / std).float()

    xt, xv, xs = prep(z_train), prep(z_valid), prep(z_test)
    majority = y_train.mean(0) >= 0.5  # (A,)

    valid_acc, test_acc = [], []  # per grid value, each (A,)
    w = None
    for l2 in l2_grid:
        if math.isinf(l2):
            pred_v = np.broadcast_to(majority, y_valid.shape)
            pred_t = np.broadcast_to(majority, y_test.shape)
        else:
            w = _fit_logistic(xt, torch.tensor(y_train, dtype=torch.float32), l2, w)  # warm start from the stronger l2
            pred_v = ((xv @ w[:-1] + w[-1]) > 0).numpy()
            pred_t = ((xs @ w[:-1] + w[-1]) > 0).numpy()
        valid_acc.append((pred_v == y_valid).mean(0))
        test_acc.append((pred_t == y_test).mean(0))
    valid_acc, test_acc = np.stack(valid_acc), np.stack(test_acc)  # (G, A)

    best = valid_acc.max(0)
    se = np.sqrt(best * (1 - best) / max(len(y_valid), 1))
    chosen = np.argmax(valid_acc >= best - se - 1e-12, axis=0)  # first = strongest within one SE of the best
    cols = np.arange(a)
    return ProbeResult(
        names=names, test_accuracy=test_acc[chosen, cols], majority_baseline=(y_test == majority).mean(0),
        valid_accuracy=valid_acc[chosen, cols], l2=np.asarray(l2_grid, dtype=float)[chosen],
        test_positive_rate=y_test.mean(0),
    )
