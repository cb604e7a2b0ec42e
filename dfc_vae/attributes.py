"""Attribute vectors: mean(z | attribute) - mean(z | not attribute) over posterior means
(the official linear_walk_attribute_vector.lua, over ALL labelled images of a split rather than
the same first 100 ten times over).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .celeba import ATTRIBUTE_NAMES, find_celeba, load_annotations, split_mask
from .data import prepare_cache, to_tensor
from .errors import UserError


@torch.no_grad()
def encode_split(run, data: str | Path, split: str = "train", cache_dir=None, batch_size: int = 512,
                 progress: bool = True) -> tuple[torch.Tensor, pd.DataFrame]:
    """Posterior means (N, latent_dim) of every image of `split`, in eval mode, and their annotation rows.

    `run` is a dfc_vae.run.LoadedRun.
    """
    from tqdm.auto import tqdm

    root = find_celeba(data)
    annotations = load_annotations(root)
    rows = annotations[split_mask(annotations, split)]
    if len(rows) == 0:
        raise UserError(f"the {split} split of {data} is empty; choose another split")
    cfg = run.config
    cache = prepare_cache(root, cfg.image_size, cfg.crop, cache_dir or cfg.cache_dir, None, progress)
    idx = np.flatnonzero(split_mask(annotations, split))
    run.model.eval()
    mus = []
    for i in tqdm(range(0, len(idx), batch_size), desc=f"encoding {split}", unit="batch", disable=not progress):
        x = to_tensor(cache.images[idx[i:i + batch_size]]).to(run.device)
        mus.append(run.model.encode(x)[0].float().cpu())
    return torch.cat(mus), rows


def attribute_vectors(mu: torch.Tensor, labels: np.ndarray) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """mu: (N, D) posterior means; labels: (N, A) bool. Returns (A, D) vectors
    mean(mu | label) - mean(mu | not label), and the (A,) counts with and without each label.
    An attribute that no image (or every image) has gets a zero vector."""
    labels = torch.as_tensor(np.asarray(labels, dtype=bool))
    pos = labels.float()
    neg = 1.0 - pos
    n_pos, n_neg = pos.sum(0), neg.sum(0)
    mean_pos = (pos.T @ mu.float()) / n_pos.clamp(min=1).unsqueeze(1)
    mean_neg = (neg.T @ mu.float()) / n_neg.clamp(min=1).unsqueeze(1)
    vectors = torch.where(((n_pos > 0) & (n_neg > 0)).unsqueeze(1), mean_pos - mean_neg, torch.zeros_like(mean_pos))
    return vectors, n_pos.long().numpy(), n_neg.long().numpy()


__all__ = ["ATTRIBUTE_NAMES", "encode_split", "attribute_vectors"]
