"""Attribute vectors: mean(z | attribute) - mean(z | not attribute) over posterior means
(the official linear_walk_attribute_vector.lua, over ALL labelled images of a split rather than
the same first 100 ten times over).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .celeba import ATTRIBUTE_NAMES, find_celeba, load_annotations, split_mask
from .data import prepare_cache, to_tensor
from .errors import UserError
from .fileio import write_bytes

FILE_FORMAT = "dfc_vae.attribute_vectors/1"


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
    labels = torch.tensor(np.asarray(labels, dtype=bool))
    pos = labels.float()
    neg = 1.0 - pos
    n_pos, n_neg = pos.sum(0), neg.sum(0)
    mean_pos = (pos.T @ mu.float()) / n_pos.clamp(min=1).unsqueeze(1)
    mean_neg = (neg.T @ mu.float()) / n_neg.clamp(min=1).unsqueeze(1)
    vectors = torch.where(((n_pos > 0) & (n_neg > 0)).unsqueeze(1), mean_pos - mean_neg, torch.zeros_like(mean_pos))
    return vectors, n_pos.long().numpy(), n_neg.long().numpy()


@dataclass
class AttributeVectors:
    """The attribute vectors of one run on one split, with where they came from.

    vectors: (A, D) float32, row i = mean(mu | names[i]) - mean(mu | not names[i]);
    n_pos, n_neg: (A,) images with and without each attribute; meta: run, step, data, split,
    synthetic, vgg_weights (provenance, as strings/bools/ints).
    """

    names: list[str]
    vectors: torch.Tensor
    n_pos: np.ndarray
    n_neg: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def latent_dim(self) -> int:
        return int(self.vectors.shape[1])

    def vector(self, name: str) -> torch.Tensor:
        """(D,) vector of one attribute; unknown names are a UserError listing the valid ones."""
        if name not in self.names:
            raise UserError(f"unknown attribute '{name}'; valid names: {', '.join(self.names)}")
        return self.vectors[self.names.index(name)]

    def combination(self, weights: dict[str, float]) -> torch.Tensor:
        """(D,) sum_i weights[name_i] * v_i."""
        out = torch.zeros(self.latent_dim)
        for name, w in weights.items():
            out = out + float(w) * self.vector(name)
        return out

    def save(self, path: str | Path) -> Path:
        """One safetensors file: vectors and counts as tensors, names and provenance as metadata."""
        from safetensors.torch import save

        tensors = {"vectors": self.vectors.float().contiguous().cpu(),
                   "n_pos": torch.as_tensor(np.asarray(self.n_pos, dtype=np.int64)),
                   "n_neg": torch.as_tensor(np.asarray(self.n_neg, dtype=np.int64))}
        metadata = {"format": FILE_FORMAT, "names": json.dumps(list(self.names)), "meta": json.dumps(self.meta)}
        write_bytes(path, save(tensors, metadata=metadata))
        return Path(path)


def load_attribute_vectors(path: str | Path, latent_dim: int | None = None) -> AttributeVectors:
    """Read a file written by AttributeVectors.save; with `latent_dim` (the model's), check it fits."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"attribute-vector file {path} does not exist; make one with `dfc-vae attributes --run RUN --data DIR --out FILE`")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        if metadata.get("format") != FILE_FORMAT:
            raise ValueError("not an attribute-vector file")
        names = json.loads(metadata["names"])
        meta = json.loads(metadata.get("meta", "{}"))
        vectors, n_pos, n_neg = tensors["vectors"].float(), tensors["n_pos"].numpy(), tensors["n_neg"].numpy()
    except Exception as e:
        raise UserError(f"{path} is not an attribute-vector file of dfc_vae ({type(e).__name__}); "
                        "make one with `dfc-vae attributes --run RUN --data DIR --out FILE`") from e
    if vectors.ndim != 2 or len(names) != vectors.shape[0]:
        raise UserError(f"{path} is damaged ({len(names)} names for {tuple(vectors.shape)} vectors); recompute it with `dfc-vae attributes`")
    if latent_dim is not None and vectors.shape[1] != latent_dim:
        raise UserError(f"{path} holds {vectors.shape[1]}-d vectors but the model's latent has {latent_dim} dimensions; "
                        "compute the vectors with this run: `dfc-vae attributes --run RUN --data DIR`")
    return AttributeVectors(names, vectors, n_pos, n_neg, meta)


def compute_attribute_vectors(run, data: str | Path, split: str = "train", cache_dir=None,
                              progress: bool = True) -> AttributeVectors:
    """Encode every labelled image of `split` with `run` (a LoadedRun) and take, for each of the 40
    CelebA attributes, mean(mu | attribute) - mean(mu | not attribute), with the counts."""
    mu, rows = encode_split(run, data, split, cache_dir=cache_dir, progress=progress)
    names = list(ATTRIBUTE_NAMES)
    vectors, n_pos, n_neg = attribute_vectors(mu, rows[names].to_numpy())
    root = find_celeba(data)
    meta = {"run": str(Path(run.path).resolve()), "step": int(run.step), "data": str(root.annotations.resolve()),
            "data_description": root.description, "synthetic": root.synthetic is not None, "split": split,
            "images": int(len(rows)), "vgg_weights": run.meta.get("vgg_weights", ""), "latent_dim": int(mu.shape[1])}
    return AttributeVectors(names, vectors, n_pos, n_neg, meta)


__all__ = ["ATTRIBUTE_NAMES", "encode_split", "attribute_vectors", "AttributeVectors", "load_attribute_vectors",
           "compute_attribute_vectors"]
