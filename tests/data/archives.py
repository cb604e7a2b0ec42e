"""CelebA as each source zips it, and a folder zipped as `zip -r` does, made from unpacked (synthetic) copies."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

# where each source keeps the annotation files and, inside the zip, the images
ZIPPED = {"official": ("", "img_align_celeba/"), "torchvision": ("celeba/", "img_align_celeba/"),
          "kaggle": ("", "img_align_celeba/img_align_celeba/")}


LAYOUTS = ("official", "torchvision", "kaggle", "folder")


def render_layouts(base: Path, n: int, seed: int) -> dict[str, Path]:
    """The same `n` synthetic faces in CelebA's three layouts and as a plain folder with labels.csv."""
    from dfc_vae.data.synth import render_celeba

    return {layout: render_celeba(base / layout, n=n, seed=seed, layout=layout, workers=1, progress=False)
            for layout in LAYOUTS}


def zip_folder(folder: Path, zip_path: Path, prefix: str, method=zipfile.ZIP_DEFLATED) -> None:
    """Zip every file under `folder` with names `prefix` + its relative path, as zip -r does."""
    with zipfile.ZipFile(zip_path, "w", method) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, prefix + p.relative_to(folder).as_posix())


def zipped_celeba(unpacked: Path, out: Path, layout: str) -> Path:
    """The CelebA copy `unpacked` as downloaded: the annotation files and img_align_celeba.zip, no image folder."""
    ann, inside = ZIPPED[layout]
    shutil.copytree(unpacked, out, ignore=shutil.ignore_patterns("img_align_celeba"))
    images = unpacked / ann / "img_align_celeba"
    if layout == "kaggle":
        images = images / "img_align_celeba"
    zip_folder(images, out / ann / "img_align_celeba.zip", inside)
    return out


def flip_byte(zip_path: Path, member) -> None:
    """Flip one byte in the middle of a member's data (a dfc_vae.data.archive.Member of `zip_path`)."""
    with open(zip_path, "r+b") as f:
        f.seek(member.offset + 30 + len(member.name.encode()) + member.compressed // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))


def drive_tree(download: Path, out: Path) -> Path:
    """A flat download (annotation files and the zip) rearranged as the official Google Drive folder: Img/, Anno/, Eval/."""
    for sub in ("Img", "Anno", "Eval"):
        (out / sub).mkdir(parents=True)
    for p in download.iterdir():
        sub = "Img" if p.suffix == ".zip" else "Eval" if p.name.startswith("list_eval_partition") else "Anno"
        shutil.copy(p, out / sub / p.name)
    return out
