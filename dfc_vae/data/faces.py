"""One face collection, opened once: where its images are, their labels, the split, the cache.

`open_faces(path)` recognises the kind of source (dfc_vae/sources/: CelebA in its layouts, or any
folder of face images) and returns a `FaceSet`. Everything that reads faces -- training, attribute
vectors, the classifier, the figures, evaluation, reconstruction grids -- takes a FaceSet (or a
path opened through it), so annotations are parsed and images fingerprinted once per process.

A FaceSet holds, in cache order (row i of the cache is the face of ids[i]):
  ids        image names: CelebA's annotation names (000001.jpg), a folder's relative paths
  paths      the files themselves
  labels     bool DataFrame indexed by ids, one column per attribute (possibly none)
  split      per image 0 (train), 1 (valid) or 2 (test)
and its provenance: the source kind and layout, where the split came from, how many listed
images were missing, the synthetic marker of dfc_vae's rendered faces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dfc_vae.util.errors import UserError

SPLITS: dict[str, int] = {"train": 0, "valid": 1, "test": 2}
AUTO_CROP = "auto"  # a setting meaning "the source's own crop" (FaceSet.default_crop)


@dataclass
class FaceSet:
    """A face collection opened once (module docstring)."""

    root: Path  # the folder the user gave
    ids: list[str]
    paths: list[Path]
    labels: pd.DataFrame  # bool columns, index = ids
    split: np.ndarray  # (N,) int8: 0 train, 1 valid, 2 test
    kind: str  # the source: 'celeba' or 'folder'
    layout: str  # e.g. 'official', 'torchvision', 'kaggle', 'png' for CelebA; 'folder'
    default_crop: str  # 'official' for CelebA, 'center' for folders
    split_source: str  # where the split came from, in words
    missing: int = 0  # listed images left out (--allow-missing)
    synthetic: dict | None = None  # the marker of dfc_vae.synth's faces; None for real photos
    labels_file: Path | None = None
    notes: list[str] = field(default_factory=list)  # one-line facts a user should hear once
    _caches: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def attribute_names(self) -> list[str]:
        return [str(c) for c in self.labels.columns]

    @property
    def description(self) -> str:
        if self.synthetic:
            return f"synthetic faces rendered by dfc_vae.synth (seed {self.synthetic.get('seed')}), not CelebA"
        return "CelebA" if self.kind == "celeba" else f"face folder {self.root}"

    @property
    def identity(self) -> str:
        """What names this collection in provenance and in the classifier's record: its labels
        folder for CelebA (as before), the folder (and labels file) otherwise."""
        base = str(self.root.resolve())
        return base + (f" (labels {self.labels_file.resolve()})" if self.labels_file and self.kind == "folder" else "")

    def provenance(self) -> dict:
        """JSON-able facts about the collection, for a run's config.json and other outputs."""
        return {"data": str(self.root), "data_description": self.description, "synthetic": self.synthetic is not None,
                "source": self.kind, "layout": self.layout, "split_source": self.split_source, "images": len(self),
                "missing_images": self.missing, "labels": str(self.labels_file) if self.labels_file else None,
                "attributes": len(self.attribute_names)}

    def resolve_crop(self, crop: str | None) -> str:
        return self.default_crop if crop in (None, AUTO_CROP) else crop

    def split_mask(self, split: str) -> np.ndarray:
        """Bool (N,) mask of the images in `split` ('train', 'valid', 'test' or 'all')."""
        if split == "all":
            return np.ones(len(self), dtype=bool)
        if split not in SPLITS:
            raise UserError(f"unknown split '{split}'; choose train, valid, test or all")
        return self.split == SPLITS[split]

    def indices(self, split: str) -> np.ndarray:
        """Cache rows of `split`, ascending."""
        return np.flatnonzero(self.split_mask(split))

    def split_sizes(self) -> dict[str, int]:
        return {name: int((self.split == k).sum()) for name, k in SPLITS.items()}

    def check_attributes(self, names, what: str = "attribute") -> None:
        """A UserError naming the first of `names` the data lacks, listing the ones it has."""
        have = self.attribute_names
        for name in names:
            if name not in have:
                if not have:
                    raise UserError(f"unknown {what} '{name}': {self.root} has no labels; put a labels.csv (an image column "
                                    "and 0/1 attribute columns) beside the images or pass --labels FILE")
                raise UserError(f"unknown {what} '{name}'; {self.root} has: {', '.join(have)}")

    def require_labels(self) -> None:
        if not self.attribute_names:
            raise UserError(f"{self.root} has no labels; put a labels.csv (an image column and 0/1 attribute columns) "
                            "beside the images or pass --labels FILE (or use --positive DIR_A --negative DIR_B)")

    def cache(self, image_size: int, crop: str | None = None, cache_dir=None, workers: int | None = None,
              progress: bool = True):
        """The decoded uint8 cache (dfc_vae.data.ImageCache) at this size and crop, made on first use
        and kept for later calls."""
        from dfc_vae.data.cache import build_cache

        crop = self.resolve_crop(crop)
        key = (image_size, crop, str(cache_dir))
        if key not in self._caches:
            self._caches[key] = build_cache(self, image_size, crop, cache_dir, workers, progress)
        return self._caches[key]


def open_faces(path, labels: str | Path | None = None, allow_missing: bool = False, split_seed: int = 0) -> FaceSet:
    """Open the face collection at `path` (a FaceSet is returned as it is).

    labels: a labels file for a folder of images (default: DIR/labels.csv when present);
    allow_missing: use the images present when annotations list some that are not there, and
    record how many were left out; split_seed: the seed of a folder's hashed split.
    """
    if isinstance(path, FaceSet):
        return path
    from dfc_vae.data.sources import SOURCES

    root = Path(path).expanduser()
    if not root.exists():
        raise UserError(f"data folder {root} does not exist; pass --data a folder of face images or CelebA "
                        "(or make synthetic faces with `dfc-vae synth --out DIR`)")
    if not root.is_dir():
        raise UserError(f"--data {root} is a file; pass the folder that holds the face images")
    for source in SOURCES:
        if source.recognises(root):
            return source.open(root, labels=labels, allow_missing=allow_missing, split_seed=split_seed)
    raise UserError(f"{root} holds no face collection dfc_vae recognises")


def open_faces_for_run(run, data=None, labels=None, allow_missing: bool | None = None) -> FaceSet:
    """The faces a run was trained on (its config's data, labels and allow_missing), or `data`."""
    if isinstance(data, FaceSet):
        return data
    cfg = run.config
    if data is None:
        data = cfg.data
        labels = labels or getattr(cfg, "labels", None)
        if not data:
            raise UserError(f"{run.path} does not record its data; pass --data DIR")
    if allow_missing is None:
        allow_missing = bool(getattr(cfg, "allow_missing", False))
    return open_faces(data, labels=labels, allow_missing=allow_missing)


def report_notes(faces: FaceSet) -> None:
    """Print the collection's notes (one line each), once per FaceSet."""
    import sys

    for line in faces.notes:
        print(f"note: {line}", file=sys.stderr)
    faces.notes = []


@torch.no_grad()
def encode_rows(model, images: np.ndarray, rows, device, batch_size: int = 512, raw: bool = False,
                progress: bool = False, desc: str = "encoding") -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and log-variances (N, D), float32 on the CPU, of cache rows images[rows]
    ((N, S, S, 3) uint8), in eval mode, `batch_size` images per forward pass; `raw` for the training
    view of the latent (model.encode_raw), else the calibrated one (model.encode).

    Rows are read from the memory map in ascending order and the results put back in the order asked.
    """
    from tqdm.auto import tqdm

    from dfc_vae.util.images import to_tensor

    rows = np.asarray(rows, dtype=np.int64)
    model.eval()
    encode = model.encode_raw if raw else model.encode
    mus, logvars = [], []
    for i in tqdm(range(0, len(rows), batch_size), desc=desc, unit="batch", disable=not progress):
        chunk = rows[i:i + batch_size]
        order = np.argsort(chunk, kind="stable")
        x = to_tensor(images[chunk[order]])[torch.from_numpy(np.argsort(order))]
        mu, logvar = encode(x.to(device))
        mus.append(mu.float().cpu())
        logvars.append(logvar.float().cpu())
    if not mus:
        dim = model.config.latent_dim
        return torch.zeros(0, dim), torch.zeros(0, dim)
    return torch.cat(mus), torch.cat(logvars)
