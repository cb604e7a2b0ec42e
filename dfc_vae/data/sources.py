"""The kinds of face source, and `open_faces`, which recognises one and opens it as a FaceSet.

A zip of a folder of faces (`--data faces.zip`) is opened by the folder source, read in place.
Each kind is a module with `recognises(root) -> bool` and `open_source(root, labels, allow_missing,
split_seed) -> FaceSet`, tried in the order of SOURCES. A new kind of source is one new module and
one entry here; the folder source takes anything and comes last.
"""

from __future__ import annotations

from pathlib import Path

from dfc_vae.data import celeba, folder
from dfc_vae.data.faces import FaceSet
from dfc_vae.util.errors import UserError

SOURCES = (celeba, folder)


def open_faces(path, labels: str | Path | None = None, allow_missing: bool = False, split_seed: int = 0) -> FaceSet:
    """Open the face collection at `path` (a FaceSet is returned as it is).

    labels: a labels file for a folder of images (default: DIR/labels.csv when present);
    allow_missing: use the images present when annotations list some that are not there, and
    record how many were left out; split_seed: the seed of a folder's hashed split.
    """
    if isinstance(path, FaceSet):
        return path
    root = Path(path).expanduser()
    if not root.exists():
        raise UserError(f"data folder {root} does not exist; pass --data a folder of face images or CelebA "
                        "(or make synthetic faces with `dfc-vae synth --out DIR`)")
    if not root.is_dir():
        if root.name == celeba.ZIP_NAME:
            raise UserError(f"--data {root} is CelebA's zip: pass the folder that holds it and the annotation files "
                            "(list_attr_celeba, list_eval_partition); the zip is read there without unpacking")
        if root.suffix.lower() == ".zip":
            return folder.open_archive(root, labels=labels, allow_missing=allow_missing, split_seed=split_seed)
        raise UserError(f"--data {root} is a file; pass the folder that holds the face images (or a zip of it)")
    for source in SOURCES:
        if source.recognises(root):
            return source.open_source(root, labels=labels, allow_missing=allow_missing, split_seed=split_seed)
    raise UserError(f"{root} holds no face collection dfc_vae recognises")
