"""CelebA as people have it: the official, torchvision and Kaggle layouts, the PNG release (files
000001.png while the annotations name 000001.jpg), without list_eval_partition (the official split
by image number), and partial downloads (refused unless allow_missing)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dfc_vae.data.celeba import (ATTRIBUTE_NAMES, LAST_IMAGE, LAST_TRAIN, LAST_VALID, find_celeba, has_partition, load_annotations, partition_by_number, read_attributes)
from dfc_vae.util.errors import UserError
from dfc_vae.data.faces import FaceSet

KIND = "celeba"


def recognises(root: Path) -> bool:
    """CelebA when its attribute or partition file is there (without the attribute file, find_celeba
    says what is missing)."""
    return any((folder / f"{stem}{ext}").is_file() for folder in (root, root / "celeba")
               for stem in ("list_attr_celeba", "list_eval_partition") for ext in (".txt", ".csv"))


def open(root: Path, labels=None, allow_missing: bool = False, split_seed: int = 0) -> FaceSet:
    if labels:
        raise UserError(f"--labels is for a folder of face images; {root} is CelebA, whose labels are its "
                        "list_attr_celeba file (drop --labels)")
    celeba = find_celeba(root)
    notes = []
    if has_partition(celeba):
        annotations = load_annotations(celeba)
        partition = annotations["partition"].to_numpy()
        split_source = "list_eval_partition"
    else:
        annotations = read_attributes(celeba).sort_index()
        partition = partition_by_number(annotations.index)
        split_source = "official split by image number (no list_eval_partition file)"
        counts = np.bincount(partition, minlength=3)
        notes.append(f"{celeba.annotations} has no list_eval_partition file: using CelebA's official split by image "
                     f"number (000001-{LAST_TRAIN:06d} train, {LAST_TRAIN + 1:06d}-{LAST_VALID:06d} valid, "
                     f"{LAST_VALID + 1:06d}-{LAST_IMAGE:06d} test), here {counts[0]} train, {counts[1]} valid, "
                     f"{counts[2]} test images")
    ids = annotations.index.tolist()
    paths, present = _image_files(celeba.images, ids)
    missing = int((~present).sum())
    if missing:
        example = ids[int(np.flatnonzero(~present)[0])]
        if not allow_missing:
            raise UserError(f"{missing} of the {len(ids)} images listed in list_attr_celeba are missing from "
                            f"{celeba.images} (e.g. {example}); restore them, or pass --allow-missing to use the "
                            f"{len(ids) - missing} present")
        notes.append(f"--allow-missing: {missing} of the {len(ids)} listed images are not in {celeba.images} "
                     f"(e.g. {example}) and are left out; using {len(ids) - missing}")
        annotations, partition = annotations[present], partition[present]
        ids = annotations.index.tolist()
        paths = [p for p, ok in zip(paths, present) if ok]
        if not ids:
            raise UserError(f"none of the images listed in list_attr_celeba is in {celeba.images}; unzip them there")
    return FaceSet(root=celeba.annotations, ids=ids, paths=paths, labels=annotations[list(ATTRIBUTE_NAMES)],
                   split=partition.astype(np.int8), kind=KIND, layout=celeba.layout, default_crop="official",
                   split_source=split_source, missing=missing, synthetic=celeba.synthetic, notes=notes)


def _image_files(folder: Path, ids: list[str]) -> tuple[list[Path], np.ndarray]:
    """The file of each annotated image (its own name, or the same number as .png in the PNG
    release) and whether it is there; one listing of the folder, no per-file system calls."""
    try:
        names = set(os.listdir(folder))
    except OSError as e:
        raise UserError(f"cannot list {folder} ({e.strerror}); check its permissions") from e
    paths, present = [], np.zeros(len(ids), dtype=bool)
    for i, name in enumerate(ids):
        if name not in names:
            png = Path(name).stem + ".png"
            if png in names:
                name = png
            else:
                paths.append(folder / name)
                continue
        present[i] = True
        paths.append(folder / name)
    return paths, present

