"""The twins of a synthetic dataset's test split on disk: `render_twins` writes them beside the faces, in parallel
and reproducibly from the dataset's seed; `open_twins` reads them back (`TwinSet`).

Layout (docs/synthetic_faces.md, "Twins"), in the folder of the dataset's marker file:

    twins/dfc_vae_twins.json          the marker, written last: settings and count
    twins/index.csv                   one row per twin: file, face, attribute, direction, the twin's 40 labels
    twins/img/000181_Smiling_add.jpg  the twin (JPEG, the faces' quality: an unflipped twin is the face's file)
    twins/regions/000181_Smiling_add.png   where the attribute is drawn, in the face or the twin (0/255)

The folder is made complete in one step: rendered into twins.partial/ and renamed.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from dfc_vae.data.celeba import ATTRIBUTE_NAMES
from dfc_vae.data.faces import SYNTHETIC_MARKER
from dfc_vae.data.synth.dataset import (FORMAT_VERSION, GENERATOR, JPEG_QUALITY, face_rng, partition, paths)
from dfc_vae.data.synth.face import render_params
from dfc_vae.data.synth.labels import sample_attributes
from dfc_vae.data.synth.twins import DIRECTIONS, TWIN_ATTRIBUTES, attribute_region, label_row, twin_labels, twin_params
from dfc_vae.util.errors import UserError
from dfc_vae.util.fileio import write_json, write_text
from dfc_vae.util.argtypes import require

FOLDER = "twins"
MARKER = "dfc_vae_twins.json"
INDEX = "index.csv"
_WORDS = {"+": "add", "-": "remove"}
_CHUNK = 100  # twins per task handed to a worker process


def data_marker(root: str | os.PathLike) -> tuple[Path, dict]:
    """(the folder of the synthetic dataset's marker, the marker) of the dataset at `root`; a UserError where
    `root` holds no synthetic faces in a CelebA layout."""
    root = Path(root).expanduser()
    for folder in (root, root / "celeba"):
        path = folder / SYNTHETIC_MARKER
        if path.is_file():
            try:
                marker = json.loads(path.read_text())
            except (OSError, ValueError) as e:
                raise UserError(f"{path} is damaged ({e}); render the faces again with `dfc-vae synth`") from e
            if marker.get("layout") == "folder":
                raise UserError(f"{root} holds synthetic faces as a plain folder, which would read twins as faces; "
                                "render them in a CelebA layout (dfc-vae synth --layout official) for twins")
            return folder, marker
    raise UserError(f"{root} holds no synthetic faces ({SYNTHETIC_MARKER} not found); twins exist only for faces "
                    "rendered by `dfc-vae synth`")


def twins_folder(root: str | os.PathLike) -> Path:
    """Where the twins of the dataset at `root` are (or go)."""
    return data_marker(root)[0] / FOLDER


def _plan(seed: int, n: int, attributes, per_direction: int | None) -> list[tuple[int, str, int, str]]:
    """(face k, attribute, the twin's value, file stem) for the test split's faces: per attribute and direction,
    the first `per_direction` faces in id order with a twin that way (all of them when None)."""
    test = np.flatnonzero(partition(n) == 2) + 1
    labels = {int(k): sample_attributes(face_rng(seed, int(k))) for k in test}
    plan = []
    for attribute in attributes:
        taken = {"+": 0, "-": 0}
        for k in test.tolist():
            flipped = twin_labels(labels[k], attribute)
            if flipped is None:
                continue
            direction = DIRECTIONS[flipped[attribute]]
            if per_direction is not None and taken[direction] >= per_direction:
                continue
            taken[direction] += 1
            plan.append((k, attribute, flipped[attribute], f"{k:06d}_{attribute}_{_WORDS[direction]}"))
    return plan


def _render_chunk(task) -> list[list]:
    """Worker: render and save one chunk of twins and their regions; return their index rows."""
    seed, items, folder = task
    rows = []
    for k, attribute, value, stem in items:
        _, face, labels, twin = twin_params(seed, k, attribute, value)
        render_params(twin).image.save(os.path.join(folder, "img", stem + ".jpg"), "JPEG", quality=JPEG_QUALITY)
        region = Image.fromarray(attribute_region(face, twin, attribute).astype(np.uint8) * 255, "L")
        region.save(os.path.join(folder, "regions", stem + ".png"), optimize=False)
        rows.append([f"img/{stem}.jpg", f"{k:06d}.jpg", attribute, DIRECTIONS[value], f"regions/{stem}.png",
                     *label_row(labels)])
    return rows


def _settings(marker: dict, attributes, per_direction) -> dict:
    return {"generator": GENERATOR, "format_version": FORMAT_VERSION, "seed": marker.get("seed"), "n": marker.get("n"),
            "attributes": list(attributes), "faces_per_direction": per_direction}


def check_twin_attributes(attributes) -> tuple[str, ...]:
    """`attributes` (default: every one with twins) as a tuple; a UserError for an empty list or one without twins."""
    attributes = tuple(TWIN_ATTRIBUTES if attributes is None else attributes)
    bad = [a for a in attributes if a not in TWIN_ATTRIBUTES]
    if bad or not attributes:
        raise UserError(f"no twins for {bad[0] if bad else 'an empty list'!r}; choose among " + ", ".join(TWIN_ATTRIBUTES))
    return attributes


def render_twins(root: str | os.PathLike, attributes=None, faces_per_direction: int | None = None,
                 workers: int | None = None, progress: bool = True) -> Path:
    """Render the twins of the test split of the synthetic dataset at `root` (made by `render_celeba`) for
    `attributes` (default: all of TWIN_ATTRIBUTES), at most `faces_per_direction` faces per attribute and direction
    (default: every face); return their folder. Reused when it already holds these twins; `workers` processes
    (default: one per CPU)."""
    folder, marker = data_marker(root)
    attributes = check_twin_attributes(attributes)
    if faces_per_direction is not None:
        faces_per_direction = int(require(faces_per_direction, "--twin-faces", "int", min=1))
    workers = (os.cpu_count() or 1) if workers is None else int(require(workers, "--workers", "int", min=1))
    if marker.get("format_version") != FORMAT_VERSION:
        raise UserError(f"the faces at {root} are of an older format; render them again with `dfc-vae synth`")
    out = folder / FOLDER
    settings = _settings(marker, attributes, faces_per_direction)
    done = _read_marker(out)
    if done is not None and {k: done.get(k) for k in settings} == settings:
        return out
    partial = folder / (FOLDER + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    for sub in ("img", "regions"):
        (partial / sub).mkdir(parents=True)
    plan = _plan(int(marker["seed"]), int(marker["n"]), attributes, faces_per_direction)
    rows = _render_all(int(marker["seed"]), plan, partial, workers, progress)
    index = pd.DataFrame(rows, columns=["file", "face", "attribute", "direction", "region", *ATTRIBUTE_NAMES])
    write_text(partial / INDEX, index.to_csv(index=False))
    write_json(partial / MARKER, {**settings, "twins": len(index)})  # last: complete
    old = folder / (FOLDER + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    partial.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return out


def _render_all(seed: int, plan, folder: Path, workers: int, progress: bool) -> list[list]:
    tasks = [(seed, plan[i:i + _CHUNK], str(folder)) for i in range(0, len(plan), _CHUNK)]
    order = {stem: i for i, (_, _, _, stem) in enumerate(plan)}
    rows = []
    with tqdm(total=len(plan), disable=not progress, unit="twin", desc="rendering twins") as bar:
        if min(workers, len(tasks)) <= 1:
            results = map(_render_chunk, tasks)
        else:
            pool = multiprocessing.get_context().Pool(min(workers, len(tasks)))
            results = pool.imap_unordered(_render_chunk, tasks)
        try:
            for chunk in results:
                rows += chunk
                bar.update(len(chunk))
        finally:
            if min(workers, len(tasks)) > 1:
                pool.close()
                pool.join()
    return sorted(rows, key=lambda r: order[Path(r[0]).stem])  # the plan's order, whatever order chunks finish in


def _read_marker(out: Path) -> dict | None:
    try:
        obj = json.loads((out / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


@dataclass
class TwinSet:
    """The twins of a dataset, read back: `index` has one row per twin (file, face, attribute, direction, region,
    and the twin's 40 labels as -1/1); paths in it are relative to `folder`."""

    folder: Path
    index: pd.DataFrame
    settings: dict

    @property
    def attributes(self) -> list[str]:
        return list(dict.fromkeys(self.index.attribute))

    def rows(self, attribute: str, direction: str) -> pd.DataFrame:
        i = self.index
        return i[(i.attribute == attribute) & (i.direction == direction)]

    def path(self, relative: str) -> Path:
        return self.folder / relative


def open_twins(root: str | os.PathLike) -> TwinSet | None:
    """The twins of the synthetic dataset at `root`, or None where none were rendered (or the data is not ours)."""
    try:
        folder, marker = data_marker(root)
    except UserError:
        return None
    out = folder / FOLDER
    settings = _read_marker(out)
    current = _settings(marker, (), None)
    if settings is None or not (out / INDEX).is_file() or any(
            settings.get(k) != current[k] for k in ("generator", "format_version", "seed", "n")):
        return None  # none, or those of faces since rendered again with other settings
    index = pd.read_csv(out / INDEX, dtype={"face": str, "direction": str})
    return TwinSet(out, index, settings)
