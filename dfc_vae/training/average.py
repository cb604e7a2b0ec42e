"""The weight average: an exponential moving average of the trained weights, the model a run
evaluates and saves, and the BatchNorm statistics recomputed for its own weights."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from dfc_vae.model.network import DFCVAE
from dfc_vae.runs.split import read_rows


class WeightAverage:
    """An exponential moving average of a model's weights (Polyak & Juditsky 1992), the model a run
    evaluates and saves. Decay min(d, (1 + t) / (10 + t)) at step t (TensorFlow's warm-up), so the
    first steps do not average in the random initialization. The trained weights' BatchNorm running
    statistics do not fit the averaged weights, so `recompute_batchnorm` measures the average's own
    (as stochastic weight averaging does, Izmailov et al. 2018) before it is evaluated or saved."""

    def __init__(self, model: DFCVAE, decay: float):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self._params = list(self.model.parameters())
        self._trained = [p.detach() for p in model.parameters()]  # views: they follow the optimizer's updates

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Move the average towards the trained weights after optimizer step `step` (0-based)."""
        decay = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self._params, self._trained, 1 - decay)

    @torch.no_grad()
    def recompute_batchnorm(self, images: np.ndarray, rows: np.ndarray, device: torch.device, batch_size: int = 256,
                            read=None) -> None:
        """BatchNorm statistics of the averaged weights: the mean over training-mode forward passes of
        images[rows] (uint8 cache rows), with the training view's sampled z; the global RNG is left as
        it was, so training goes on drawing what it would have drawn. `read(rows)`, when given, hands
        over the rows' floats on the device (training: from the split held on the GPU)."""
        norms = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the pass
        self.model.train()
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            for i in range(0, len(rows), batch_size):
                batch = rows[i:i + batch_size]
                x = read(batch) if read is not None else read_rows(images, batch)
                x = x.to(device, memory_format=torch.channels_last)
                self.model(x)
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        self.model.eval()
