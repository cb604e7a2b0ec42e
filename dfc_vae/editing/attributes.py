"""Attribute vectors: mean(z | attribute) - mean(z | not attribute) over posterior means
(the official linear_walk_attribute_vector.lua, over ALL labelled images of a split rather than
the same first 100 ten times over), for whatever attributes the data is labelled with; or, from
two plain folders of faces, mean(z | folder A) - mean(z | folder B). Files of vectors merge
(`merge_attribute_vectors`, `dfc-vae attributes --merge FILE`).

Methods (`method`, recorded in the vector file's provenance):
  'mean-difference' (the paper's): v_a = mean(mu | a) - mean(mu | not a). Attributes that co-occur with a
      ride along (on CelebA an Eyeglasses vector also ages and masculinises the face).
  'regression' (ours): one linear regression of the posterior means on all labels at once,
      mu ~ b_0 + sum_a y_a b_a (least squares, y_a in {0, 1}); v_a = b_a is a's effect with the other
      labels held fixed. Where the labels are independent, both give the same vector up to noise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import save

from dfc_vae.data.celeba import ATTRIBUTE_NAMES
from dfc_vae.util.choices import VECTOR_METHODS
from dfc_vae.util.errors import UserError, check_names
from dfc_vae.runs.split import FaceSplit, open_faces_for_run
from dfc_vae.util.fileio import write_bytes
from dfc_vae.data import folder as folder_source

FILE_FORMAT = "dfc_vae.attribute_vectors/1"
FEW_EXAMPLES = 20  # an attribute with fewer labelled faces than this on either side has a noisy vector


def encode_split(run, data=None, split: str = "train", cache_dir=None, batch_size: int = 512,
                 progress: bool = True) -> tuple[torch.Tensor, pd.DataFrame]:
    """Posterior means (N, latent_dim) of every image of `split`, in eval mode, and their label rows.

    `run` is a dfc_vae.runs.run.LoadedRun; `data` a FaceSet or a folder (default: the run's data).
    """
    faces = FaceSplit.of_run(run, data, split, cache_dir, progress)
    mu, _ = faces.encode(batch_size=batch_size, progress=progress)
    return mu, faces.labels.iloc[faces.rows]


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


def regression_vectors(mu: torch.Tensor, labels: np.ndarray) -> torch.Tensor:
    """mu: (N, D) posterior means; labels: (N, A) bool. Returns (A, D): the coefficients b_a of the
    least-squares fit mu ~ b_0 + sum_a labels[:, a] b_a over all attributes at once. An attribute
    that no image (or every image) has is left out of the fit and gets a zero vector."""
    y = np.asarray(labels, dtype=np.float64)
    varies = (y.min(0) != y.max(0)) if len(y) else np.zeros(y.shape[1], dtype=bool)
    design = np.c_[np.ones(len(y)), y[:, varies]]
    coef, *_ = np.linalg.lstsq(design, mu.double().numpy(), rcond=None)  # (1 + A_varying, D)
    out = torch.zeros(y.shape[1], mu.shape[1])
    out[torch.from_numpy(varies)] = torch.from_numpy(coef[1:]).float()
    return out


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

    @property
    def constant(self) -> list[str]:
        """The attributes whose labels were all one value (no face with it, or none without it): they have
        no direction, only a zero row kept so that the file lists every label column."""
        return [n for n, p, q in zip(self.names, self.n_pos, self.n_neg) if p == 0 or q == 0]

    @property
    def usable(self) -> list[str]:
        """The attributes with a vector: every name but the constant ones."""
        constant = set(self.constant)
        return [n for n in self.names if n not in constant]

    def examples(self, name: str) -> int:
        """The labelled faces on the rarer side of an attribute (with or without it)."""
        i = self.names.index(name)
        return int(min(self.n_pos[i], self.n_neg[i]))

    def vector(self, name: str) -> torch.Tensor:
        """(D,) vector of one attribute; unknown names are a UserError listing the valid ones, and so is an
        attribute whose labels were all one value (it has no vector to add)."""
        check_names([name], self.names)
        i = self.names.index(name)
        if name in self.constant:
            raise UserError(f"attribute '{name}' has no vector: its labels were all one value ({self.n_pos[i]} faces "
                            f"with it, {self.n_neg[i]} without); choose another or recompute the vectors on faces "
                            "labelled both ways")
        return self.vectors[i]

    def combination(self, weights: dict[str, float]) -> torch.Tensor:
        """(D,) sum_i weights[name_i] * v_i."""
        out = torch.zeros(self.latent_dim)
        for name, w in weights.items():
            out = out + float(w) * self.vector(name)
        return out

    def save(self, path: str | Path) -> Path:
        """One safetensors file: vectors and counts as tensors, names and provenance as metadata."""
        tensors = {"vectors": self.vectors.float().contiguous().cpu(),
                   "n_pos": torch.as_tensor(np.asarray(self.n_pos, dtype=np.int64)),
                   "n_neg": torch.as_tensor(np.asarray(self.n_neg, dtype=np.int64))}
        metadata = {"format": FILE_FORMAT, "names": json.dumps(list(self.names)), "meta": json.dumps(self.meta),
                    "constant": json.dumps(self.constant)}  # for other readers; ours derive it from the counts
        write_bytes(path, save(tensors, metadata=metadata))
        return Path(path)


def load_attribute_vectors(path: str | Path, latent_dim: int | None = None) -> AttributeVectors:
    """Read a file written by AttributeVectors.save; with `latent_dim` (the model's), check it fits."""
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


def compute_attribute_vectors(run, data=None, split: str = "train", cache_dir=None,
                              progress: bool = True, method: str = "mean-difference") -> AttributeVectors:
    """Encode every labelled image of `split` with `run` (a LoadedRun) and take, for each attribute
    the data has (CelebA's 40, or a labels file's columns), its vector by `method` (module doc),
    with the counts."""
    return attribute_vectors_by_method(run, data, split, cache_dir, progress, (method,))[method]


def attribute_vectors_by_method(run, data=None, split: str = "train", cache_dir=None, progress: bool = True,
                                methods=VECTOR_METHODS) -> dict[str, AttributeVectors]:
    """compute_attribute_vectors for several methods at once, from one encoding of the split."""
    for method in methods:
        if method not in VECTOR_METHODS:
            raise UserError(f"unknown attribute-vector method '{method}'; choose one of {', '.join(VECTOR_METHODS)}")
    faces = open_faces_for_run(run, data)
    faces.require_labels()
    mu, rows = encode_split(run, faces, split, cache_dir=cache_dir, progress=progress)
    names = faces.attribute_names
    labels = rows[names].to_numpy()
    means, n_pos, n_neg = attribute_vectors(mu, labels)
    meta = {"run": str(Path(run.path).resolve()), "step": int(run.step), "data": faces.identity,
            "data_description": faces.description, "synthetic": faces.synthetic is not None, "split": split,
            "images": int(len(rows)), "vgg_weights": run.meta.get("vgg_weights", ""), "latent_dim": int(mu.shape[1])}
    return {method: AttributeVectors(names, regression_vectors(mu, labels) if method == "regression" else means,
                                     n_pos, n_neg, {**meta, "method": method}) for method in methods}


def folder_attribute_vector(run, positive, negative, name: str, cache_dir=None, progress: bool = True) -> AttributeVectors:
    """One vector from two plain folders of faces: mean(mu | positive) - mean(mu | negative) (the
    official code's method, on the user's own faces), every image of each folder, in the run's size
    and crop."""
    if not name or not name.strip():
        raise UserError("--name is empty; give the attribute's name, e.g. --name Smiling")
    a, b = (Path(p).expanduser() for p in (positive, negative))
    for flag, folder in (("--positive", a), ("--negative", b)):
        if not folder.is_dir():
            raise UserError(f"{flag} {folder} is not a folder; give a folder of face images")
    if a.resolve() == b.resolve():
        raise UserError(f"--positive and --negative are the same folder ({a}); give one folder of faces with the "
                        "attribute and another without it")

    opened = []
    for flag, folder in (("--positive", a), ("--negative", b)):  # both checked before anything is decoded
        if not folder_source.scan_images(folder):
            raise UserError(f"{flag} {folder} holds no images (JPEG, PNG or WebP); put face images there")
        opened.append(folder_source.open_source(folder, labels=None))  # all its (labelled, if it has labels) images
    sides = []
    for faces in opened:
        every = FaceSplit.of_run(run, faces, "all", cache_dir, progress)
        mu, _ = every.encode(batch_size=512, progress=progress, desc=f"encoding {faces.root.name}")
        sides.append((faces, mu))
    (fa, mu_a), (fb, mu_b) = sides
    vector = (mu_a.mean(0) - mu_b.mean(0)).unsqueeze(0)
    meta = {"run": str(Path(run.path).resolve()), "step": int(run.step), "data": f"{a.resolve()} vs {b.resolve()}",
            "data_description": f"face folders {a} (with {name}) and {b} (without)",
            "synthetic": bool(fa.synthetic or fb.synthetic), "split": "folders", "images": len(fa) + len(fb),
            "vgg_weights": run.meta.get("vgg_weights", ""), "latent_dim": int(vector.shape[1])}
    return AttributeVectors([name.strip()], vector, np.array([len(fa)]), np.array([len(fb)]), meta)


def merge_attribute_vectors(*files_or_vectors) -> AttributeVectors:
    """One AttributeVectors holding the vectors of several (files or objects) of the same latent size;
    a name present in several is taken from the last. The provenance of each part is kept under
    meta['merged']."""
    parts = [v if isinstance(v, AttributeVectors) else load_attribute_vectors(v) for v in files_or_vectors]
    if not parts:
        raise UserError("nothing to merge; give at least one attribute-vector file")
    dims = {p.latent_dim for p in parts}
    if len(dims) > 1:
        raise UserError(f"cannot merge attribute vectors of different latent sizes ({', '.join(map(str, sorted(dims)))}); "
                        "compute them all with the same run")
    rows: dict[str, tuple] = {}
    for p in parts:
        for i, n in enumerate(p.names):
            rows[n] = (p.vectors[i], int(p.n_pos[i]), int(p.n_neg[i]))
    names = list(rows)
    meta = dict(parts[0].meta)
    meta["merged"] = [{"names": p.names, **p.meta} for p in parts] if len(parts) > 1 else parts[0].meta.get("merged", [])
    if len(parts) > 1:
        meta["synthetic"] = any(p.meta.get("synthetic") for p in parts)
    return AttributeVectors(names, torch.stack([rows[n][0] for n in names]), np.array([rows[n][1] for n in names]),
                            np.array([rows[n][2] for n in names]), meta)


def stale_vectors_note(vectors: AttributeVectors, run) -> str | None:
    """One line when `vectors` were computed from another step of the model than `run`'s (a LoadedRun): an edit
    then adds directions of a latent space the model has since moved away from. None when the steps agree or
    the file does not record its step."""
    step = vectors.meta.get("step")
    if step is None or int(step) == int(run.step):
        return None
    source = Path(str(vectors.meta.get("run", "?"))).name
    return (f"the attribute vectors were computed at step {step} of {source}, the model is at step {run.step}; "
            f"recompute them with `dfc-vae attributes --run {'RUN' if run.source else run.path}`")


def attribute_notes(vectors: AttributeVectors, scored: list[str] | None) -> dict[str, str]:
    """The usable attributes in the order to offer them, each with a note: those the run's classifier
    scores first (note ""), then the rest marked "few examples" (fewer than FEW_EXAMPLES labelled faces
    on one side) or "not measured" (no classifier, or one that cannot judge it). Constant ones are left out."""
    scored_set = set(scored or ())
    first = [n for n in vectors.usable if n in scored_set]
    rest = [n for n in vectors.usable if n not in scored_set]
    notes = {n: "" for n in first}
    for n in rest:
        notes[n] = "few examples" if vectors.examples(n) < FEW_EXAMPLES else "not measured"
    return notes


__all__ = ["ATTRIBUTE_NAMES", "encode_split", "attribute_vectors", "AttributeVectors", "load_attribute_vectors",
           "compute_attribute_vectors", "folder_attribute_vector", "merge_attribute_vectors"]
