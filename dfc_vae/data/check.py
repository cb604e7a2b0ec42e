"""`check_data`: what a CelebA download holds, on one screen -- each published file against its size
and MD5 sum (read once at disk speed, with a progress bar), the image count against the annotations,
the split, and what training would do with it (or the one line that would stop it).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from dfc_vae.data.archive import DamagedMember, describe_head, read_head, read_member
from dfc_vae.data.celeba import (GET_CELEBA, IMAGE_SUFFIXES, LAST_TRAIN, LAST_VALID, LAST_IMAGE, PUBLISHED, ZIP_NAME,
                                 find_celeba)
from dfc_vae.data.faces import read_synthetic_marker, synthetic_description
from dfc_vae.data.sources import open_faces
from dfc_vae.util.errors import UserError

LABELS = "list_attr_celeba.txt"  # the one annotation file training cannot do without
_CHUNK = 4 << 20  # bytes per read while summing: large enough to run at disk speed
_KAGGLE = {"list_attr_celeba.txt": "list_attr_celeba.csv", "list_eval_partition.txt": "list_eval_partition.csv",
           "list_bbox_celeba.txt": "list_bbox_celeba.csv", "list_landmarks_align_celeba.txt": "list_landmarks_align_celeba.csv"}
OFFICIAL_SPLIT = (LAST_TRAIN, LAST_VALID - LAST_TRAIN, LAST_IMAGE - LAST_VALID)


@dataclass
class DataCheck:
    """The findings of `check_data`: `lines` to print, `problems` (one line each) that stop training or mean a
    file is not the published one."""

    root: Path
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def file(self, status: str, name: str, text: str) -> None:
        self.lines.append(f"  {status:<8} {name:<32} {text}")
        if status == "WRONG" or (status == "missing" and name == LABELS):
            self.problems.append(f"{name}: {text}")

    def stop(self, prefix: str, error: UserError) -> None:
        """What would stop training, as a line of the report and a problem."""
        self.lines.append(f"{prefix}: {error}")
        self.problems.append(str(error))

    @property
    def report(self) -> str:
        return "\n".join(self.lines)


def check_data(path: str | Path, progress: bool = True, published: dict | None = None) -> DataCheck:
    """Check the CelebA copy at `path` (published: file name -> (bytes, MD5), default the official files')."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise UserError(f"{root} is not a folder; pass the folder you downloaded CelebA into")
    published = PUBLISHED if published is None else published
    folder = root / "celeba" if (root / "celeba").is_dir() and not _has_any(root, published) else root
    check = DataCheck(root)
    marker = read_synthetic_marker(folder) or read_synthetic_marker(folder / "Anno")
    what = synthetic_description(marker) if marker else "CelebA"
    check.lines.append(f"{what} in {folder}")
    check.lines.append("files:")
    summed = _check_files(check, folder, published, synthetic=marker is not None, progress=progress)
    _check_images(check, folder, verify_zip=ZIP_NAME not in summed, progress=progress)
    _what_training_would_do(check, root)
    return check


def _has_any(folder: Path, published: dict) -> bool:
    return any(_where(folder, name).exists() for name in list(published) + list(_KAGGLE.values()))


def _where(folder: Path, name: str) -> Path:
    """The file `name` in `folder`, or in the Drive folder's Img/, Anno/ or Eval/ under it (`folder/name` when in none)."""
    return next((p for p in (folder / sub / name for sub in ("", "Img", "Anno", "Eval")) if p.exists()), folder / name)


def _check_files(check: DataCheck, folder: Path, published: dict, synthetic: bool, progress: bool) -> set[str]:
    """Each published file: missing, named for what it is when it is not that file, or its sum compared.
    Returns the names of the files whose sums were compared."""
    to_sum = []
    for name, (size, md5) in published.items():
        path = _where(folder, name)
        if not path.is_file() and (folder / _KAGGLE.get(name, name)).is_file():
            check.file("found", _KAGGLE[name], "Kaggle's CSV copy: no published sum; checked by reading it below")
            continue
        if not path.is_file():
            if name == ZIP_NAME and (_where(folder, "img_align_celeba").is_dir()):
                check.file("absent", name, "the unpacked img_align_celeba/ folder is used instead")
            elif name == ZIP_NAME:
                check.file("missing", name, "the aligned faces: " + GET_CELEBA)
                check.problems.append(f"{name} (or the unpacked img_align_celeba/ folder) is missing")
            else:
                why = {"list_attr_celeba.txt": "the labels; training needs it",
                       "list_eval_partition.txt": "the split; without it the official split by image number is used"}
                check.file("missing", name, why.get(name, "not needed for training"))
            continue
        actual = path.stat().st_size
        other = describe_head(read_head(path))
        if other:
            check.file("WRONG", name, f"{other} ({actual:,} bytes): download it again")
        elif synthetic:
            check.file("found", name, f"{actual:,} bytes (synthetic faces: no published sum)")
        elif actual != size:
            cut = " (cut short)" if actual < size else ""
            check.file("WRONG", name, f"{actual:,} bytes{cut}, the published file has {size:,}: download it again")
        else:
            to_sum.append((path, md5))
    for (path, md5), digest in zip(to_sum, _md5_sums([p for p, _ in to_sum], progress)):
        if digest == md5:
            check.file("ok", path.name, f"{path.stat().st_size:,} bytes, MD5 {digest} as published")
        else:
            check.file("WRONG", path.name, f"MD5 {digest}, the published file's is {md5}: damaged, download it again")
    return {path.name for path, _ in to_sum}


def _md5_sums(paths: list[Path], progress: bool) -> list[str]:
    """The MD5 of each file, read in large chunks into one buffer, with one progress bar in bytes."""
    sums, buf = [], bytearray(_CHUNK)
    view = memoryview(buf)
    total = sum(p.stat().st_size for p in paths)
    with tqdm(total=total, desc="MD5", unit="B", unit_scale=True, disable=not progress or not paths) as bar:
        for path in paths:
            h = hashlib.md5()
            with open(path, "rb", buffering=0) as f:
                while n := f.readinto(buf):
                    h.update(view[:n])
                    bar.update(n)
            sums.append(h.hexdigest())
    return sums


def _check_images(check: DataCheck, folder: Path, verify_zip: bool, progress: bool) -> None:
    """The images (in the zip, or the unpacked folder) against the annotation rows; with `verify_zip`, every
    image in the zip read back against its CRC (a zip with no published sum: Kaggle's, synthetic faces)."""
    try:
        celeba = find_celeba(folder)
    except UserError as e:
        check.stop("images", e)
        return
    if celeba.archive is not None:
        count = len(celeba.archive.images(IMAGE_SUFFIXES))
        where = f"{ZIP_NAME} ({celeba.layout} layout, read without unpacking)"
        damaged = _damaged_members(celeba.archive, progress) if verify_zip else []
        if damaged:
            check.problems.append(f"{len(damaged)} images in {ZIP_NAME} are damaged (e.g. {damaged[0]}); "
                                  "download it again")
            where += f", {len(damaged):,} of them damaged"
        elif verify_zip:
            where = where[:-1] + "; every image matches its CRC)"
    else:
        count = sum(1 for p in celeba.images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        where = f"{celeba.images} ({celeba.layout} layout)"
    rows = {}
    for stem in ("list_attr_celeba", "list_eval_partition"):
        p = next((_where(folder, stem + ext) for ext in (".txt", ".csv") if _where(folder, stem + ext).is_file()), None)
        if p is not None and describe_head(read_head(p)) is None:
            rows[p.name] = _data_rows(p)
    listed = ", ".join(f"{n:,} rows in {name}" for name, n in rows.items()) or "no annotation file"
    check.lines.append(f"images: {count:,} in {where}; {listed}")
    if any(n != count for n in rows.values()):
        check.problems.append(f"the annotation files list {', '.join(f'{n:,}' for n in rows.values())} images but "
                              f"{where.split(' (')[0]} holds {count:,}")


def _damaged_members(archive, progress: bool) -> list[str]:
    """The images of a zip whose bytes do not read back as recorded (each read once, in zip order)."""
    members = sorted(archive.images(IMAGE_SUFFIXES), key=lambda m: m.offset)
    damaged = []
    fd = os.open(archive.path, os.O_RDONLY)
    try:
        with tqdm(total=sum(m.compressed for m in members), desc="CRC", unit="B", unit_scale=True,
                  disable=not progress) as bar:
            for m in members:
                try:
                    read_member(fd, m)
                except DamagedMember as e:
                    damaged.append(f"{m.name}: {e}")
                bar.update(m.compressed)
    finally:
        os.close(fd)
    return damaged


def _data_rows(path: Path) -> int:
    """Rows of images in an annotation file: its lines less the count line and the header."""
    lines = [ln for ln in path.read_text(encoding="utf-8-sig", errors="replace").splitlines() if ln.strip()]
    skip = (1 if lines and lines[0].strip().isdigit() else 0)
    first = lines[skip].replace(",", " ").split() if len(lines) > skip else []
    if first and not first[0].lower().endswith((".jpg", ".png")):
        skip += 1  # the header line
    return len(lines) - skip


def _what_training_would_do(check: DataCheck, root: Path) -> None:
    try:
        faces = open_faces(root)
    except UserError as e:
        check.stop("training would stop", e)
        return
    sizes = faces.split_sizes()
    official = tuple(sizes.values()) == OFFICIAL_SPLIT
    check.lines.append(f"split: {sizes['train']:,} train, {sizes['valid']:,} valid, {sizes['test']:,} test "
                       f"({faces.split_source}{'; the official split' if official else ''})")
    source = f"{faces.archive.path.name} (never unpacked)" if faces.archive is not None else str(Path(faces.paths[0]).parent)
    nbytes = len(faces) * 64 * 64 * 3
    size = f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"
    check.lines.append(f"training would: decode {len(faces):,} faces from {source} once into the cache "
                       f"(64x64, {faces.default_crop} crop: {size}), then read only the cache")
    for note in faces.notes:
        check.lines.append(f"note: {note}")
