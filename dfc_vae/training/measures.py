"""What a run measures and draws at an epoch's end: the latent's calibration fitted on training
faces, the loss terms on a fixed held-out set, and the epoch's reconstruction and sample grids.

None of these touches the global RNG, the BatchNorm statistics or anything the optimizer sees,
so a run, and its resume, train on exactly as without them.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from dfc_vae.model.losses import DFCLoss, active_units, kl_divergence
from dfc_vae.model.network import DFCVAE
from dfc_vae.runs.split import encode_rows
from dfc_vae.util.images import save_figure, to_uint8

EVAL_IMAGES = 1024
CALIBRATION_IMAGES = 10_000  # per-dimension means and second moments to ~1.4% (sqrt(2 / n))


@torch.no_grad()
def fit_latent_calibration(model: DFCVAE, images: np.ndarray, rows: np.ndarray, device, enabled: bool = True,
                           read=None) -> dict:
    """Fit the model's latent calibration (model/network.py) to the eval-mode posteriors of images[rows]
    (uint8 cache rows); returns their mean KL per image in the raw and the calibrated latent.
    Touches no random state, no BatchNorm statistics and nothing the optimizer sees, so training,
    and resuming it, go on exactly as without it. `enabled=False` keeps the identity. `read`: as encode_rows'."""
    if not enabled:
        return {}
    # encode_rows hands the posteriors back on the CPU; the fit and its KLs are computed on the
    # device, where the model's calibration buffers are
    mu, logvar = (t.to(device) for t in encode_rows(model, images, rows, device, batch_size=512, raw=True,
                                                                read=read))
    model.calibrate_latent(mu, logvar)
    return {"kl_uncalibrated": float(kl_divergence(mu, logvar).mean()),
            "kl_calibrated": float(kl_divergence(*model.calibrated(mu, logvar)).mean())}


@torch.no_grad()
def evaluate_fixed_set(model: DFCVAE, loss_fn: DFCLoss, x: torch.Tensor, device, autocast=nullcontext()) -> dict:
    """Eval-mode loss terms on held-out images, decoding the posterior mean; active units."""
    model.eval()
    recon_sum, kl_sum, mus = 0.0, 0.0, []
    for i in range(0, len(x), 128):
        xb = x[i:i + 128].to(device)
        with autocast:
            mu, logvar = model.encode(xb)
            rec = loss_fn.reconstruction(xb, model.decode(mu))
        recon_sum += float(rec.float().sum())
        kl_sum += float(kl_divergence(mu.float(), logvar.float()).sum())
        mus.append(mu.float())
    n = len(x)
    recon, kl = recon_sum / n, kl_sum / n
    return {"eval_loss": loss_fn.alpha * kl + loss_fn.beta * recon, "eval_recon": recon, "eval_kl": kl,
            "active_units": active_units(torch.cat(mus)), "images": n}


@torch.no_grad()
def save_epoch_grids(model: DFCVAE, x: torch.Tensor, folder: Path, epoch: int, seed: int, device, caption):
    """Inputs over their reconstructions, and 64 samples from fixed z ~ N(0, I) (a private RNG)."""
    model.eval()
    xb = x[:16].to(device)
    recon = model.decode(model.encode(xb)[0])
    pairs = [to_uint8(xb[:8]), to_uint8(recon[:8]), to_uint8(xb[8:16]), to_uint8(recon[8:16])]
    save_figure(folder / f"epoch_{epoch:03d}_recon.png", [r for r in pairs if len(r) == len(pairs[0])],
                caption + [f"epoch {epoch}: rows 1 and 3 inputs, rows 2 and 4 reconstructions"],
                ["input", "reconstruction"] * 2)
    z = torch.randn(64, model.config.latent_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    samples = to_uint8(model.decode(z))
    save_figure(folder / f"epoch_{epoch:03d}_samples.png", [samples[i:i + 8] for i in range(0, 64, 8)],
                caption + [f"epoch {epoch}: decoded z ~ N(0, I)"])
