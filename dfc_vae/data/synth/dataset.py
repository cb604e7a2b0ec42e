"""A whole synthetic dataset on disk: `render_celeba` renders faces 1..n in parallel and writes
them with CelebA's annotation files in one of the layouts, plus `partition`, the per-image
seeding, the marker file (written last: "complete") and the handling of earlier or interrupted
outputs in the same folder.

Image k (1-based, file 00000k.jpg) is seeded with numpy's SeedSequence([seed, k]), so a dataset
is the same whatever the number of worker processes.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dfc_vae.data.celeba import ATTRIBUTE_NAMES, LAST_IMAGE, LAST_TRAIN, LAST_VALID
from dfc_vae.data.synth.face import render_face_annotated
from dfc_vae.data.synth.labels import VISIBLE_ATTRIBUTES, sample_attributes
from dfc_vae.util.argtypes import require
from dfc_vae.data.faces import SYNTHETIC_MARKER as MARKER_NAME
from dfc_vae.util.errors import UserError
from dfc_vae.util.fileio import output_folder, write_json, write_text

LAYOUTS = ("official", "torchvision", "kaggle", "folder")  # folder: the JPEGs and a labels.csv, nothing else
GENERATOR = "dfc_vae.synth"  # the marker's "generator": names the renderer in every dataset's marker
PARTIAL_NAME = ".dfc_vae_synthetic.partial"  # present while a dataset is being written
# Raised whenever the same seed would draw different pixels, so that a dataset of an older format
# is rendered again rather than reused (docs/synthetic_faces.md, "Format versions").
FORMAT_VERSION = 3
JPEG_QUALITY = 92

_LANDMARK_NAMES = ("lefteye_x", "lefteye_y", "righteye_x", "righteye_y", "nose_x", "nose_y",
                   "leftmouth_x", "leftmouth_y", "rightmouth_x", "rightmouth_y")
_BBOX_NAMES = ("x_1", "y_1", "width", "height")
_CHUNK = 50  # images per task handed to a worker process


def paths(out: Path, layout: str) -> tuple[Path, Path]:
    """(folder of the annotation files and the marker, folder of the JPEGs) for a layout."""
    if layout == "official":
        return out, out / "img_align_celeba"
    if layout == "folder":
        return out, out
    if layout == "torchvision":
        return out / "celeba", out / "celeba" / "img_align_celeba"
    return out, out / "img_align_celeba" / "img_align_celeba"  # kaggle


def image_name(k: int) -> str:
    return f"{k:06d}.jpg"


def face_rng(seed: int, k: int) -> np.random.Generator:
    """The generator of image k (1-based): depends only on (seed, k), never on the workers."""
    return np.random.default_rng(np.random.SeedSequence([seed, k]))


def partition(n: int) -> np.ndarray:
    """Split numbers (0 train, 1 valid, 2 test) by id order in CelebA's proportions; with n >= 3
    every split gets at least one image (with n < 3 all images are train)."""
    if n < 3:
        return np.zeros(n, dtype=np.int64)
    n_valid = max(1, round(n * (LAST_VALID - LAST_TRAIN) / LAST_IMAGE))
    n_train = min(round(n * LAST_TRAIN / LAST_IMAGE), n - n_valid - 1)
    n_test = n - n_train - n_valid
    return np.repeat([0, 1, 2], [n_train, n_valid, n_test])


def _render_range(task: tuple[int, int, int, int, str]):
    """Worker: render and save images start..stop-1 (1-based ids); return their annotations."""
    seed, start, stop, n_identities, img_dir = task
    count = stop - start
    attrs = np.empty((count, len(ATTRIBUTE_NAMES)), dtype=np.int8)
    landmarks = np.empty((count, 10), dtype=np.int32)
    bboxes = np.empty((count, 4), dtype=np.int32)
    identities = np.empty(count, dtype=np.int32)
    for j, k in enumerate(range(start, stop)):
        rng = face_rng(seed, k)
        labels = sample_attributes(rng)
        face = render_face_annotated(labels, rng)
        identities[j] = rng.integers(1, n_identities + 1)
        face.image.save(os.path.join(img_dir, image_name(k)), "JPEG", quality=JPEG_QUALITY)
        attrs[j] = [labels[a] for a in ATTRIBUTE_NAMES]
        landmarks[j] = face.landmarks
        bboxes[j] = face.bbox
    return start, attrs, landmarks, bboxes, identities


def _render_all(img_dir: Path, n: int, seed: int, workers: int, progress: bool):
    """Render and save images 1..n into `img_dir`, in chunks over `workers` processes; return their
    (attributes, landmarks, boxes, identities), rows in id order whatever order the chunks finish in."""
    n_identities = max(1, n // 20)
    tasks = [(seed, a, min(a + _CHUNK, n + 1), n_identities, str(img_dir)) for a in range(1, n + 1, _CHUNK)]
    attrs = np.empty((n, len(ATTRIBUTE_NAMES)), dtype=np.int8)
    landmarks = np.empty((n, 10), dtype=np.int32)
    bboxes = np.empty((n, 4), dtype=np.int32)
    identities = np.empty(n, dtype=np.int32)

    with tqdm(total=n, disable=not progress, unit="img", desc="rendering synthetic faces") as bar:
        def collect(result):
            start, a, lm, bb, ids = result
            rows = slice(start - 1, start - 1 + len(ids))
            attrs[rows], landmarks[rows], bboxes[rows], identities[rows] = a, lm, bb, ids
            bar.update(len(ids))

        workers = min(workers, len(tasks))
        if workers == 1:
            for task in tasks:
                collect(_render_range(task))
        else:
            with multiprocessing.get_context().Pool(workers) as pool:
                for result in pool.imap_unordered(_render_range, tasks):
                    collect(result)
    return attrs, landmarks, bboxes, identities


def _write_annotations(ann: Path, layout: str, names: list[str], attrs: np.ndarray, part: np.ndarray,
                       identities: np.ndarray, bboxes: np.ndarray, landmarks: np.ndarray) -> None:
    """The five annotation files, formatted as CelebA's own (official/torchvision) or Kaggle's copy."""
    n = len(names)
    if layout == "folder":  # a plain folder of faces: one labels.csv (dfc_vae.data.folder), 0/1 values
        write_text(ann / "labels.csv", ",".join(("image",) + ATTRIBUTE_NAMES) + "\n"
                   + "".join(f"{m}," + ",".join("1" if v > 0 else "0" for v in r) + "\n" for m, r in zip(names, attrs.tolist())))
        return
    # identity_CelebA.txt in every CelebA layout (Kaggle's copy lacks it; loaders may still want it).
    write_text(ann / "identity_CelebA.txt", "".join(f"{m} {i}\n" for m, i in zip(names, identities.tolist())))
    if layout == "kaggle":
        def csv(header, rows):
            return ",".join(header) + "\n" + "".join(f"{m}," + ",".join(map(str, r)) + "\n" for m, r in zip(names, rows))
        write_text(ann / "list_attr_celeba.csv", csv(("image_id",) + ATTRIBUTE_NAMES, attrs.tolist()))
        write_text(ann / "list_eval_partition.csv", csv(("image_id", "partition"), [[p] for p in part.tolist()]))
        write_text(ann / "list_bbox_celeba.csv", csv(("image_id",) + _BBOX_NAMES, bboxes.tolist()))
        write_text(ann / "list_landmarks_align_celeba.csv", csv(("image_id",) + _LANDMARK_NAMES, landmarks.tolist()))
        return
    # The real files: a count line, a header line (the attribute header ends with a space), then
    # right-aligned columns. The leading space in each format keeps columns apart even for
    # numbers wider than the real data's.
    write_text(ann / "list_attr_celeba.txt",
               f"{n}\n" + " ".join(ATTRIBUTE_NAMES) + " \n"
               + "".join(f"{m} " + " ".join(f"{v:2d}" for v in r) + "\n" for m, r in zip(names, attrs.tolist())))
    write_text(ann / "list_eval_partition.txt", "".join(f"{m} {p}\n" for m, p in zip(names, part.tolist())))
    write_text(ann / "list_bbox_celeba.txt",
               f"{n}\n" + " ".join(("image_id",) + _BBOX_NAMES) + "\n"
               + "".join(f"{m} {x:5d} {y:4d} {w:4d} {h:4d}\n" for m, (x, y, w, h) in zip(names, bboxes.tolist())))
    write_text(ann / "list_landmarks_align_celeba.txt",
               f"{n}\n" + " ".join(_LANDMARK_NAMES) + "\n"
               + "".join(f"{m} {r[0]:2d}" + "".join(f" {v:4d}" for v in r[1:]) + "\n" for m, r in zip(names, landmarks.tolist())))


def _annotation_names(layout: str) -> list[str]:
    if layout == "folder":
        return ["labels.csv"]
    stems = ("list_attr_celeba", "list_eval_partition", "list_bbox_celeba", "list_landmarks_align_celeba")
    ext = ".csv" if layout == "kaggle" else ".txt"
    return [s + ext for s in stems] + ["identity_CelebA.txt"]


def _settings(n: int, seed: int, layout: str) -> dict:
    """What the marker (and the partial-output file) records about a dataset."""
    return {"generator": GENERATOR, "format_version": FORMAT_VERSION, "n": n, "seed": seed, "layout": layout}


def _read_json(path: Path) -> dict | None:
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def _previous_output(out: Path) -> tuple[str, Path] | None:
    """If `out` holds a (complete or interrupted) dataset of ours: (its layout, the file saying so)."""
    for path in (out / MARKER_NAME, out / "celeba" / MARKER_NAME, out / PARTIAL_NAME):
        if path.is_file():
            info = _read_json(path)
            if not info or info.get("generator") != GENERATOR or info.get("layout") not in LAYOUTS:
                raise UserError(f"{path} is damaged; delete {out} (or choose another --out) and render again")
            return info["layout"], path
    return None


def _is_complete(out: Path, n: int, seed: int, layout: str) -> bool:
    """True when `out` already holds exactly the dataset asked for (checked cheaply)."""
    ann, img_dir = paths(out, layout)
    info = _read_json(ann / MARKER_NAME)
    if not info or any(info.get(k) != v for k, v in _settings(n, seed, layout).items()):
        return False
    if not all((ann / f).is_file() for f in _annotation_names(layout)):
        return False
    return (img_dir / image_name(1)).is_file() and (img_dir / image_name(n)).is_file() \
        and not (img_dir / image_name(n + 1)).exists()


def _remove_previous(out: Path, layout: str) -> None:
    """Delete what an earlier render_celeba wrote into `out` (only our files), marker first so an
    interruption never leaves a stale 'complete' marker."""
    ann, img_dir = paths(out, layout)
    (ann / MARKER_NAME).unlink(missing_ok=True)
    for twins in ("twins", "twins.partial", "twins.old"):  # twinset.py's folders: the twins of the faces removed
        shutil.rmtree(ann / twins, ignore_errors=True)
    for name in _annotation_names(layout):
        (ann / name).unlink(missing_ok=True)
    if layout == "folder":  # the images share the folder: remove only ours
        for path in img_dir.glob("[0-9][0-9][0-9][0-9][0-9][0-9].jpg"):
            path.unlink()
        return
    if img_dir.is_dir():
        shutil.rmtree(img_dir)
    for folder in (out / "img_align_celeba", out / "celeba"):  # now-empty parents of kaggle/torchvision
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _clear_for(out: Path, n: int, seed: int, layout: str) -> bool:
    """Make `out` ready for this dataset: True if it already holds it; otherwise remove an earlier
    synthetic dataset there (complete or interrupted) and refuse a file or any other non-empty folder."""
    output_folder(out, purpose=" (new or empty) for the synthetic faces")
    if not out.is_dir():
        return False
    if _is_complete(out, n, seed, layout):
        return True
    previous = _previous_output(out)
    if previous is not None:
        _remove_previous(out, previous[0])
        previous[1].unlink(missing_ok=True)
    elif any(out.iterdir()):
        raise UserError(f"--out {out} is not empty and holds no synthetic faces; choose a new or empty folder")
    return False


def render_celeba(out_dir: str | os.PathLike, n: int = 2000, seed: int = 0, layout: str = "official",
                  workers: int | None = None, progress: bool = True) -> Path:
    """Write `n` synthetic faces with CelebA's five annotation files into `out_dir`; return the
    dataset root to hand to a loader (`out_dir` itself, for every layout).

    layout: 'official' (OUT/img_align_celeba/, OUT/list_*.txt), 'torchvision' (the same under
    OUT/celeba/), 'kaggle' (OUT/img_align_celeba/img_align_celeba/, OUT/list_*.csv, plus
    identity_CelebA.txt) or 'folder' (OUT/000001.jpg ... and OUT/labels.csv with 0/1 values: the
    same faces and labels, read as a plain folder of images, whose split is the folder's hashed
    one). The marker file dfc_vae_synthetic.json is written last, beside the annotation files.
    Deterministic per (n, seed, layout) whatever `workers` (default: one
    process per CPU). Returns at once if `out_dir` already holds that very dataset; an earlier
    synthetic dataset with other settings is replaced; any other non-empty folder is refused.
    """
    n = int(require(n, "--n", "int", min=1))
    seed = int(require(seed, "--seed", "int", min=0))
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    workers = (os.cpu_count() or 1) if workers is None else int(require(workers, "--workers", "int", min=1))
    out = Path(out_dir).expanduser()
    if _clear_for(out, n, seed, layout):
        return out
    ann, img_dir = paths(out, layout)
    try:
        img_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create {img_dir}: {e.strerror or e}; choose a writable --out folder") from e
    settings = _settings(n, seed, layout)
    write_json(out / PARTIAL_NAME, settings)  # says "ours, unfinished" should we be interrupted

    attrs, landmarks, bboxes, identities = _render_all(img_dir, n, seed, workers, progress)
    names = [image_name(k) for k in range(1, n + 1)]
    _write_annotations(ann, layout, names, attrs, partition(n), identities, bboxes, landmarks)
    write_json(ann / MARKER_NAME, {**settings, "visible_attributes": list(VISIBLE_ATTRIBUTES)})  # last: complete
    (out / PARTIAL_NAME).unlink(missing_ok=True)
    return out
