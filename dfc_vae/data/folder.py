"""Any folder of face images: every JPEG, PNG and WebP under it, recursively, with the user's own
labels (optional) and a split that adding files never changes.

A zip of such a folder is read in place (`open_archive`): the same relative paths, labels and split.

Labels: DIR/labels.csv, DIR/CelebAMask-HQ-attribute-anno.txt, or a file given with --labels:
  * a CSV with an `image` column (the path relative to DIR) and any attribute columns holding
    0/1, -1/1, true/false or yes/no; an optional `split` column (train/valid/test or 0/1/2)
    overrides the hashed split;
  * CelebA-HQ's attribute format: a count line, a line of attribute names, then rows of an
    image name and -1/1 values (CelebAMask-HQ-attribute-anno.txt).
With a labels file, the collection is the images it lists (images without a row are left out, and
a note says how many). The split of an image without a `split` value is a seeded hash of its
relative path: sha256(f"{seed}:{path}") read as a number in [0, 1), below 0.90 train, below 0.95
valid, else test.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd

from dfc_vae.util.errors import UserError
from dfc_vae.data.archive import open_zip, top_folder
from dfc_vae.data.faces import SYNTHETIC_MARKER, FaceSet, parse_synthetic_marker, read_synthetic_marker

KIND = "folder"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
LABEL_FILES = ("labels.csv", "CelebAMask-HQ-attribute-anno.txt")
HQ_IMAGES = "CelebA-HQ-img"  # CelebAMask-HQ keeps its photos here, beside the attribute file
SPLIT_FRACTIONS = (0.90, 0.05, 0.05)  # train, valid, test
IMAGE_COLUMNS = ("image", "image_id", "file", "filename", "path")
_TRUE, _FALSE = {"1", "true", "yes"}, {"0", "-1", "false", "no"}
_SPLIT_VALUES = {"train": 0, "0": 0, "valid": 1, "val": 1, "validation": 1, "1": 1, "test": 2, "2": 2}


def recognises(root: Path) -> bool:
    return True  # the last source tried: any folder


def open_source(root: Path, labels=None, allow_missing: bool = False, split_seed: int = 0) -> FaceSet:
    labels_file = Path(labels).expanduser() if labels else next(
        (root / name for name in LABEL_FILES if (root / name).is_file()), None)
    if labels_file is not None and not labels_file.is_file():
        raise UserError(f"labels file {labels_file} does not exist; give --labels the path of a CSV with an image column")
    image_root = root
    if labels_file is not None and labels_file.name == LABEL_FILES[1] and (root / HQ_IMAGES).is_dir():
        image_root = root / HQ_IMAGES
    found = scan_images(image_root)
    if not found:
        zips = sorted(p.name for p in root.glob("*.zip"))
        hint = f"; to read the faces in {zips[0]} without unpacking it, pass --data {root / zips[0]}" if zips else ""
        raise UserError(f"{image_root} holds no images (JPEG, PNG or WebP, searched recursively) and does not look like "
                        "CelebA (no list_attr_celeba file); pass --data a folder of face images or a CelebA copy" + hint)
    table = read_labels(labels_file) if labels_file is not None else None
    return _face_set(root, image_root, found, {name: image_root / name for name in found}, table, labels_file,
                     allow_missing, split_seed, read_synthetic_marker(root))


def open_archive(path: Path, labels=None, allow_missing: bool = False, split_seed: int = 0) -> FaceSet:
    """A folder of faces given as a zip, read in place: the same images, labels and split as the
    folder it was made of (one top-level folder holding everything is taken off the names)."""
    archive = open_zip(path, "give the zip of a folder of face images (zip -r faces.zip FOLDER), or the folder itself")
    top = top_folder(archive.members)
    labels_file, text = None, None
    if labels:
        labels_file = Path(labels).expanduser()
        if not labels_file.is_file():
            raise UserError(f"labels file {labels_file} does not exist; give --labels the path of a CSV with an image column")
    else:
        inside = next((top + name for name in LABEL_FILES if top + name in archive.members), None)
        if inside is not None:  # named as the zip's member, read from the zip
            labels_file, text = path / inside, archive.read(inside).decode("utf-8-sig", errors="replace")
    prefix = top
    if labels_file is not None and labels_file.name == LABEL_FILES[1] and any(
            name.startswith(f"{top}{HQ_IMAGES}/") for name in archive.members):
        prefix = f"{top}{HQ_IMAGES}/"  # as open_source: CelebAMask-HQ's photos, beside its attribute file
    members = {m.name[len(prefix):]: m for m in archive.images(IMAGE_SUFFIXES) if m.name.startswith(prefix)}
    if not members:
        raise UserError(f"{path} holds no images (JPEG, PNG or WebP); give the zip of a folder of face images")
    table = read_labels(labels_file, text) if labels_file is not None else None
    marker = top + SYNTHETIC_MARKER
    synthetic = parse_synthetic_marker(archive.read(marker), path / marker) if marker in archive.members else None
    found = sorted(members)
    faces = _face_set(path, path, found, {name: members[name].name for name in found}, table,
                      labels_file, allow_missing, split_seed, synthetic)
    faces.archive = archive
    return faces


def _face_set(root, image_root, found, where, table, labels_file, allow_missing, split_seed, synthetic) -> FaceSet:
    """The FaceSet of the images `found` (relative paths; `where` maps each to its file or zip member)
    with the labels `table` (None: no labels) read from `labels_file`."""
    notes = []
    if table is None:
        ids = found
        attrs = pd.DataFrame(index=pd.Index(ids, name="image"))
        split = hashed_split(ids, split_seed)
        split_source = f"hash of the relative path (seed {split_seed}, 90/5/5)"
        missing = 0
    else:
        on_disk = set(found)
        absent = [name for name in table.index if name not in on_disk]
        missing = len(absent)
        if absent and not allow_missing:
            raise UserError(f"{missing} images named in {labels_file} are not under {image_root} (e.g. {absent[0]}); "
                            "fix the image paths (relative to the folder) or pass --allow-missing to use the "
                            f"{len(table) - missing} present")
        if absent:
            notes.append(f"--allow-missing: {missing} of the {len(table)} images in {labels_file} are not under "
                         f"{image_root} (e.g. {absent[0]}) and are left out")
        listed = set(table.index)
        unlabelled = len(found) - len(listed & on_disk)
        if unlabelled:
            notes.append(f"{unlabelled} images under {image_root} have no row in {labels_file} and are left out")
        ids = [name for name in found if name in listed]
        if not ids:
            raise UserError(f"none of the images named in {labels_file} is under {image_root}; "
                            "the image column holds paths relative to that folder")
        table = table.loc[ids]
        split = hashed_split(ids, split_seed)
        split_source = f"hash of the relative path (seed {split_seed}, 90/5/5)"
        if "split" in table:
            given = table.pop("split").to_numpy()
            has = given >= 0
            split = np.where(has, given, split).astype(np.int8)
            split_source = "the labels' split column" + ("" if has.all() else " (hash of the path where it is empty)")
        attrs = table
    return FaceSet(root=root, ids=ids, paths=[where[name] for name in ids], labels=attrs,
                   split=split.astype(np.int8), kind=KIND, layout="folder", default_crop="center",
                   split_source=split_source, missing=missing, synthetic=synthetic, labels_file=labels_file,
                   notes=notes)


def scan_images(folder: Path) -> list[str]:
    """Relative POSIX paths of the images under `folder`, recursively, sorted; hidden files and
    folders (names starting with '.') are skipped.

    A linked folder is followed only when it leads to a folder inside `folder` not visited yet, so
    that a link never takes the scan out of the data (a home folder, the whole disk) or round a loop.
    """
    out = []
    top = os.path.realpath(folder)
    seen = {top}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        kept = []
        for d in sorted(d for d in dirnames if not d.startswith(".")):
            real = os.path.realpath(os.path.join(dirpath, d))
            if real not in seen and (real + os.sep).startswith(top.rstrip(os.sep) + os.sep):
                seen.add(real)
                kept.append(d)
        dirnames[:] = kept
        rel = Path(dirpath).relative_to(folder).as_posix()
        prefix = "" if rel == "." else rel + "/"  # strings, not Path objects: a folder may hold 200,000 faces
        out += [prefix + name for name in filenames if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)]
    return sorted(out)


def hashed_split(ids, seed: int = 0, fractions=SPLIT_FRACTIONS) -> np.ndarray:
    """0 train / 1 valid / 2 test per relative path, from sha256(f"{seed}:{path}") alone, so adding
    or removing other files never moves an image between splits."""
    # surrogateescape: a name that is not valid UTF-8 (os.walk gives its bytes as surrogates) hashes
    # its own bytes; every other name hashes exactly as before
    u = np.array([int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode("utf-8", "surrogateescape")).digest()[:8],
                                 "big") / 2**64 for name in ids])
    edges = np.cumsum(fractions)
    return np.where(u < edges[0], 0, np.where(u < edges[1], 1, 2)).astype(np.int8)


def _normal_path(name: str) -> str:
    name = str(name).strip().replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name


def read_labels(path: Path, text: str | None = None) -> pd.DataFrame:
    """A labels file (or its `text`, read from a zip: `path` then only names it) -> DataFrame indexed by
    relative image path: bool attribute columns, and an int 'split' column (-1 where empty) when the
    file has one."""
    if text is None:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise UserError(f"labels file {path} is empty; give a CSV with an image column and attribute columns")
    if lines[0].isdigit():  # CelebA-HQ's format: count, names, rows of name and -1/1 values
        names = lines[1].split() if len(lines) > 1 else []
        rows = [ln.split() for ln in lines[2:]]
        bad = next((r for r in rows if len(r) != len(names) + 1), None)
        if bad is not None:
            raise UserError(f"{path}: row '{' '.join(bad)[:40]}' has {len(bad)} fields, expected {len(names) + 1} "
                            "(an image name and one value per attribute)")
        raw = pd.DataFrame([r[1:] for r in rows], columns=names, dtype=str)
        raw.insert(0, "image", [r[0] for r in rows])
        image_col = "image"
    else:
        try:
            raw = pd.read_csv(io.StringIO("\n".join(lines)), dtype=str, keep_default_na=False, skipinitialspace=True)
        except (pd.errors.ParserError, ValueError) as e:
            raise UserError(f"{path} is not a readable CSV ({str(e).strip().splitlines()[-1]}); "
                            "write one header line and one row per image") from e
        raw.columns = [str(c).strip() for c in raw.columns]
        image_col = next((c for c in raw.columns if c.lower() in IMAGE_COLUMNS), None)
        if image_col is None:
            raise UserError(f"{path} has no 'image' column (found {', '.join(raw.columns)}); name the column of "
                            "image paths 'image'")
    ids = [_normal_path(v) for v in raw.pop(image_col)]
    dup = pd.Index(ids)[pd.Index(ids).duplicated()]
    if len(dup):
        raise UserError(f"{path}: image {dup[0]} is listed twice; keep one row per image")
    out = {}
    for col in raw.columns:
        values = raw[col].astype(str).str.strip().str.lower()
        if col.lower() == "split":
            codes = values.map(_SPLIT_VALUES)
            bad = values[codes.isna() & (values != "")]
            if len(bad):
                raise UserError(f"{path}: split '{raw[col][bad.index[0]]}' for image {ids[bad.index[0]]} is not "
                                "train, valid, test, 0, 1 or 2")
            out["split"] = codes.fillna(-1).astype(np.int64).to_numpy()
            continue
        pos, neg = values.isin(_TRUE), values.isin(_FALSE)
        if not (pos | neg).all():
            i = int(np.flatnonzero(~(pos | neg).to_numpy())[0])
            raise UserError(f"{path}: column '{col}' holds '{raw[col].iloc[i]}' for image {ids[i]}; attribute values "
                            "must be 0/1, -1/1, true/false or yes/no")
        out[col] = pos.to_numpy()
    return pd.DataFrame(out, index=pd.Index(ids, name="image"))


__all__ = ["scan_images", "hashed_split", "read_labels", "IMAGE_SUFFIXES", "SPLIT_FRACTIONS"]
