"""The face record: one face collection, opened once -- where its images are, their labels, the split.

`dfc_vae.data.sources.open_faces(path)` recognises the kind of source (CelebA in its layouts, or any
folder of face images) and returns a `FaceSet`. Everything that reads faces -- training, attribute
vectors, the classifier, the figures, evaluation, reconstruction grids -- takes a FaceSet (or a
path opened through it), so annotations are parsed and images fingerprinted once per process;
`dfc_vae.data.cache.prepare_cache` keeps each decoded cache of a FaceSet for later calls.

A FaceSet holds, in cache order (row i of the cache is the face of ids[i]):
  ids        image names: CelebA's annotation names (000001.jpg), a folder's relative paths
  paths      the files themselves (in a zip: the names of its members, strings; `archive` is the zip)
  labels     bool DataFrame indexed by ids, one column per attribute (possibly none)
  split      per image 0 (train), 1 (valid) or 2 (test)
and its provenance: the source kind and layout, where the split came from, how many listed
images were missing, the synthetic marker of dfc_vae's rendered faces.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from dfc_vae.util.errors import UserError, check_names
from dfc_vae.util.choices import SPLITS

AUTO_CROP = "auto"  # a setting meaning "the source's own crop" (FaceSet.default_crop)
SYNTHETIC_MARKER = "dfc_vae_synthetic.json"  # written last by the renderer: its presence means "complete dataset"
# The provenance sentence of rendered faces: every output made from them says so, in these words
# (runs/provenance.py puts it in captions and reports).
SYNTHETIC_FACES = "synthetic faces (dfc_vae.data.synth), not CelebA"


def synthetic_faces(seed) -> str:
    """The provenance sentence of one rendered dataset."""
    return f"synthetic faces rendered by dfc_vae.data.synth (seed {seed}), not CelebA"


def read_synthetic_marker(folder: Path) -> dict | None:
    """The marker dfc_vae.data.synth writes last into a dataset it renders (None where there is none);
    a damaged one is a UserError, since the provenance of every result would rest on it."""
    path = Path(folder) / SYNTHETIC_MARKER
    if not path.is_file():
        return None
    try:
        return parse_synthetic_marker(path.read_bytes(), path)
    except OSError as e:
        raise UserError(f"the synthetic-faces marker {path} cannot be read ({e.strerror}); check its permissions") from None


def parse_synthetic_marker(data: bytes, path) -> dict:
    """The marker's bytes (from a folder or a zip) as a dict; `path` names it in errors."""
    try:
        marker = json.loads(data.decode("utf-8"))
    except ValueError as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise UserError(f"the synthetic-faces marker {path} is damaged ({e}); render the faces again with "
                        "`dfc-vae synth`, or delete the file if these are not dfc_vae's rendered faces") from None
    if not isinstance(marker, dict):
        raise UserError(f"the synthetic-faces marker {path} is damaged (not a JSON object); render the faces again "
                        "with `dfc-vae synth`, or delete the file if these are not dfc_vae's rendered faces")
    return marker


def synthetic_description(marker: dict) -> str:
    """What a collection of dfc_vae's rendered faces is, in words (its synthetic marker given)."""
    return synthetic_faces(marker.get("seed"))


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
    synthetic: dict | None = None  # the marker of dfc_vae.data.synth's faces; None for real photos
    labels_file: Path | None = None
    notes: list[str] = field(default_factory=list)  # one-line facts a user should hear once
    archive: object | None = None  # the dfc_vae.data.archive.ZipArchive the images are read from, if any
    _caches: dict = field(default_factory=dict, repr=False)  # (size, crop, folder) -> ImageCache, kept by dfc_vae.data.cache

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def attribute_names(self) -> list[str]:
        return [str(c) for c in self.labels.columns]

    @property
    def description(self) -> str:
        if self.synthetic:
            return synthetic_description(self.synthetic)
        if self.kind == "celeba":
            return "CelebA"
        return f"faces in {self.root}" if self.archive is not None else f"face folder {self.root}"

    @property
    def identity(self) -> str:
        """What names this collection in provenance and in the classifier's record: its labels
        folder for CelebA (as before), the folder (and labels file) otherwise."""
        base = str(self.root.resolve())
        return base + (f" (labels {self.labels_file.resolve()})" if self.labels_file and self.kind == "folder" else "")

    def provenance(self) -> dict:
        """JSON-able facts about the collection, for a run's config.json and other outputs."""
        facts = {"data": str(self.root), "data_description": self.description, "synthetic": self.synthetic is not None,
                 "source": self.kind, "layout": self.layout, "split_source": self.split_source, "images": len(self),
                 "missing_images": self.missing, "labels": str(self.labels_file) if self.labels_file else None,
                 "attributes": len(self.attribute_names)}
        if self.archive is not None:  # the images were read from this zip, never unpacked
            facts["archive"] = str(self.archive.path)
        return facts

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
        have, names = self.attribute_names, list(names)
        if not have and names:
            raise UserError(f"unknown {what} '{names[0]}': {self.root} has no labels; put a labels.csv (an image "
                            "column and 0/1 attribute columns) beside the images or pass --labels FILE")
        check_names(names, have, what, listing=f"{self.root} has")

    def require_labels(self) -> None:
        if not self.attribute_names:
            raise UserError(f"{self.root} has no labels; put a labels.csv (an image column and 0/1 attribute columns) "
                            "beside the images or pass --labels FILE (or use --positive DIR_A --negative DIR_B)")


def report_notes(faces: FaceSet) -> None:
    """Print the collection's notes (one line each), once per FaceSet."""
    for line in faces.notes:
        print(f"note: {line}", file=sys.stderr)
    faces.notes = []
