"""Faces as a run sees them: one split of a FaceSet decoded at the run's image size and crop, its
labels, and its posterior means.

`FaceSplit` is the one object through which attribute vectors, reconstruction grids, evaluation,
the classifier, the figures and the training's latent calibration read a split, so the cache call,
and the empty-split message each exist once here.
Batch sizes stay parameters of each call: they are part of what makes a run's numbers repeatable.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from dfc_vae.data.batches import gather_rows
from dfc_vae.data.cache import ImageCache, prepare_cache
from dfc_vae.data.faces import FaceSet
from dfc_vae.data.sources import open_faces
from dfc_vae.util.errors import UserError
from dfc_vae.runs.provenance import provenance
from dfc_vae.util.images import to_tensor


def open_faces_for_run(run, data=None, labels=None, allow_missing: bool | None = None) -> FaceSet:
    """The faces a run was trained on (its config's data, labels and allow_missing), or `data`."""
    if isinstance(data, FaceSet):
        return data
    cfg = run.config
    if data is None:
        data = recorded_data(run)
        labels = labels or getattr(cfg, "labels", None)
    if allow_missing is None:
        allow_missing = bool(getattr(cfg, "allow_missing", False))
    return open_faces(data, labels=labels, allow_missing=allow_missing)


def recorded_data(run) -> str:
    """The data folder the run (or exported model) was trained on, as its config.json records it: the path as
    given to training when it exists from the current folder, else the absolute path training resolved it to
    (meta "data_absolute") when that exists; a UserError naming the config.json and --data when neither does."""
    given, absolute = run.config.data, run.meta.get("data_absolute")
    config = Path(run.path) / "config.json"
    if not given:
        raise UserError(f"{config} does not record the data the model was trained on; pass --data DIR")
    if Path(given).expanduser().exists():
        return given
    if absolute and Path(absolute).exists():
        print(f"note: data folder {given} (recorded in {config}) is not in {Path.cwd()}; using {absolute}",
              file=sys.stderr)
        return absolute
    also = f" nor {absolute}" if absolute and absolute != given else ""
    raise UserError(f"data folder {given}, recorded in {config}, does not exist from {Path.cwd()}{also}; "
                    "pass --data DIR to use the faces where they are now")


def read_rows(images: np.ndarray, rows) -> torch.Tensor:
    """Cache rows images[rows] ((N, S, S, 3) uint8, memory-mapped) as (N, 3, S, S) floats in [0, 1], in
    the order asked (read through dfc_vae.data.batches.gather_rows)."""
    return to_tensor(gather_rows(images, rows))


@torch.no_grad()
def encode_rows(model, images: np.ndarray, rows, device, batch_size: int = 512, raw: bool = False,
                progress: bool = False, desc: str = "encoding", read=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and log-variances (N, D), float32 on the CPU, of cache rows images[rows]
    ((N, S, S, 3) uint8), in eval mode, `batch_size` images per forward pass; `raw` for the training
    view of the latent (model.encode_raw), else the calibrated one (model.encode). `read(rows)`, when
    given, hands over the rows' floats on the device instead (training: from the split held on the GPU)."""
    rows = np.asarray(rows, dtype=np.int64)
    model.eval()
    encode = model.encode_raw if raw else model.encode
    mus, logvars = [], []
    for i in tqdm(range(0, len(rows), batch_size), desc=desc, unit="batch", disable=not progress):
        batch = rows[i:i + batch_size]
        mu, logvar = encode(read(batch) if read is not None else read_rows(images, batch).to(device))
        mus.append(mu.float().cpu())
        logvars.append(logvar.float().cpu())
    if not mus:
        dim = model.config.latent_dim
        return torch.zeros(0, dim), torch.zeros(0, dim)
    return torch.cat(mus), torch.cat(logvars)


class FaceSplit:
    """One split ('train', 'valid', 'test' or 'all') of a FaceSet at one image size and crop.

    rows: the split's cache rows, ascending; labels: the FaceSet's label table (indexed by cache
    row order); run: the LoadedRun it was opened for (FaceSplit.of_run), whose model encodes.
    """

    def __init__(self, faces: FaceSet, split: str, image_size: int, crop: str | None = None, cache_dir=None,
                 progress: bool = True, needs=(), workers: int | None = None, run=None,
                 empty_hint: str = "choose another split"):
        faces.check_attributes(needs)
        self.faces, self.split, self.run = faces, split, run
        self.rows = faces.indices(split)
        if len(self.rows) == 0:
            raise UserError(f"the {split} split of {faces.root} is empty; {empty_hint}")
        self.cache: ImageCache = prepare_cache(faces, image_size, crop, cache_dir, workers, progress)

    @classmethod
    def of_run(cls, run, data=None, split: str = "test", cache_dir=None, progress: bool = True, needs=(),
               empty_hint: str = "choose another split") -> FaceSplit:
        """The split of `data` (a FaceSet or a folder; default: the run's data) at the run's size and crop."""
        cfg = run.config
        return cls(open_faces_for_run(run, data), split, cfg.image_size, cfg.crop, cache_dir or cfg.cache_dir,
                   progress, needs, run=run, empty_hint=empty_hint)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def labels(self) -> pd.DataFrame:
        return self.faces.labels

    def uint8(self, rows=None) -> np.ndarray:
        """(N, S, S, 3) uint8 of `rows` (default: the whole split)."""
        return self.cache.images[self.rows if rows is None else rows]

    def images(self, rows=None) -> torch.Tensor:
        """(N, 3, S, S) floats in [0, 1] of `rows` (default: the whole split), in the order given."""
        return read_rows(self.cache.images, self.rows if rows is None else rows)

    def encode(self, rows=None, batch_size: int = 512, raw: bool = False, progress: bool = False, desc: str = "",
               model=None, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior means and log-variances (N, D) of `rows` (default: the whole split), eval mode, on the
        CPU; by the run's model unless `model` (on `device`) is given."""
        model = model if model is not None else self.run.model
        device = device if device is not None else self.run.device
        return encode_rows(model, self.cache.images, self.rows if rows is None else rows, device, batch_size, raw,
                           progress, desc or f"encoding {self.split}")

    def select(self, conditions: dict, n: int, seed: int, salt: int) -> np.ndarray:
        """Up to n cache rows of the split whose labels match `conditions`, in a seeded random order."""
        mask = np.ones(len(self.rows), bool)
        for name, value in conditions.items():
            mask &= self.labels[name].to_numpy()[self.rows] == bool(value)
        rows = self.rows[mask]
        rng = np.random.default_rng([seed, salt])
        return rows[rng.permutation(len(rows))[:n]]

    def by_id(self, image_id: str) -> int:
        """The cache row of the image named `image_id`."""
        try:
            return int(self.labels.index.get_loc(image_id))
        except KeyError:
            raise UserError(f"image id {image_id} is not in {self.faces.root}; give a name such as "
                            f"{self.labels.index[self.rows[0]]}") from None

    def ids(self, rows) -> list[str]:
        return [str(self.labels.index[r]) for r in rows]

    def footer(self) -> str:
        """The one line under a figure of these faces: the data (saying when it is synthetic), the VGG weights
        when they are random, the split and the model."""
        run = self.run
        return "; ".join([self.faces.description, *provenance(False, run.meta.get("vgg_weights", "")),
                          f"{self.split} split; model {run.name} step {run.step}"])

    def caption(self) -> list[str]:
        """The caption lines that say what made a picture of these faces: provenance, data, model."""
        run = self.run
        return provenance(self.faces.synthetic is not None, run.meta.get("vgg_weights", "")) + [
            f"{self.faces.description}, {self.split} split; model {run.name} step {run.step}"]
