"""The decode-once uint8 image cache: every face of a collection (a FaceSet) decoded once, in
parallel worker processes, into a raw (N, S, S, 3) array on disk, found again by a fingerprint of
the files and settings.

Images in a zip are read from it in the workers, never unpacked; such a cache's fingerprint is of the
contents (each member's name, size and CRC, from the zip's table of contents), and it records the zip
it was made from. A later run on the unpacked folder of the same images finds it: the folder's files
are checked against those contents (one read at disk speed, no decoding) and the cache is used, or a
note says why not.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from dfc_vae.data.archive import DamagedMember, open_zip, read_member
from dfc_vae.data.celeba import CelebARoot
from dfc_vae.data.faces import FaceSet
from dfc_vae.data.sources import open_faces
from dfc_vae.data.decode import crop_box, load_faces
from dfc_vae.util.errors import UserError
from dfc_vae.util.fileio import write_json
from dfc_vae.util.runlock import waiting_lock

# 2: reduced-scale JPEG boxes mapped by exactly 1/scale; 3: the names in ids.json, so that any name a
# filesystem allows (newlines, \u2028, bytes that are not UTF-8) comes back as it went in
CACHE_FORMAT_VERSION = 3


@dataclass
class ImageCache:
    """The decoded faces of one collection: images[i] is the face of ids[i] (the FaceSet's order)."""

    images: np.ndarray  # (N, S, S, 3) uint8, memory-mapped
    ids: list[str]
    meta: dict
    path: Path


def default_cache_dir() -> Path:
    base = os.environ.get("DFC_VAE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dfc_vae"
    return Path(base)


def _fingerprint(faces, size: int, crop: str) -> str:
    """Identifies the files and settings a cache was made from: the source, names, paths, sizes and
    mtimes; for images in a zip, their contents (`_content_key`)."""
    if faces.archive is not None:
        members = faces.archive.members
        return _content_key(size, crop, faces.ids, ((members[p].size, members[p].crc) for p in faces.paths))
    h = hashlib.sha256(_bytes(f"v{CACHE_FORMAT_VERSION}|{size}|{crop}|{faces.kind}|{faces.root.resolve()}"))
    for name, path in zip(faces.ids, faces.paths):
        try:
            st = os.stat(path)
        except OSError:
            raise UserError(f"image {name} is missing from {path.parent}; restore it, or remove it from the labels") from None
        h.update(_bytes(f"{name}:{path}:{st.st_size}:{st.st_mtime_ns};"))
    return h.hexdigest()[:16]


def _content_key(size: int, crop: str, ids, sizes_and_crcs) -> str:
    """The fingerprint of the images' contents at these settings: each name with its byte count and
    CRC-32 (what a zip records for every member), so the same images in a zip or a folder agree."""
    h = hashlib.sha256(_bytes(f"v{CACHE_FORMAT_VERSION}|{size}|{crop}|contents"))
    for name, (nbytes, crc) in zip(ids, sizes_and_crcs):
        h.update(_bytes(f"{name}:{nbytes}:{crc:08x};"))
    return "z" + h.hexdigest()[:15]


def _bytes(text: str) -> bytes:
    """UTF-8, with a file name's undecodable bytes (surrogates from os.walk) given back as themselves."""
    return text.encode("utf-8", "surrogateescape")


_worker_array: np.ndarray | None = None
_worker_zip: int | None = None  # a descriptor of the zip the images are read from


def _worker_init(array_path: str, zip_path: str | None = None, worker_process: bool = True):
    global _worker_array, _worker_zip
    if worker_process:  # one thread per decoding process; never change the main process's setting
        torch.set_num_threads(1)
    _worker_array = np.load(array_path, mmap_mode="r+")
    if _worker_zip is not None:
        os.close(_worker_zip)
    _worker_zip = os.open(zip_path, os.O_RDONLY) if zip_path else None


def _decode_chunk(task):
    start, items, size, crop = task
    errors = []
    rows = np.arange(len(items))
    if _worker_zip is not None:  # members of the zip: their bytes, each checked against its CRC
        sources = []
        for m in items:
            try:
                sources.append(read_member(_worker_zip, m))
            except DamagedMember as e:
                errors.append(f"{m.name} ({e})")
                sources.append(None)
        rows = np.array([i for i, src in enumerate(sources) if src is not None], dtype=np.int64)
        names, items = [items[i].name for i in rows], [sources[i] for i in rows]
    else:
        names = items
    faces = load_faces(items, size, crop, names=names,
                       on_error=lambda p, e: errors.append(f"{p} ({type(e).__name__}: {e})"))
    if len(rows) == len(faces) == len(task[1]):
        _worker_array[start:start + len(faces)] = faces  # every unreadable image is reported, not just the first
    else:
        _worker_array[start + rows] = faces
    return len(task[1]), errors  # no msync per chunk: one fsync of the whole file at the end


def prepare_cache(data, image_size: int = 64, crop: str | None = None, cache_dir: str | Path | None = None,
                  workers: int | None = None, progress: bool = True) -> ImageCache:
    """The decoded uint8 cache of `data` (a FaceSet, a CelebARoot, or a folder opened with
    dfc_vae.data.sources.open_faces) at this size and crop ('auto' or None: the source's own), made
    on first use and kept on the FaceSet for later calls."""
    if isinstance(data, CelebARoot):
        data = data.annotations
    faces = data if isinstance(data, FaceSet) else open_faces(data)
    crop = faces.resolve_crop(crop)
    key = (image_size, crop, str(cache_dir))
    if key not in faces._caches:
        faces._caches[key] = build_cache(faces, image_size, crop, cache_dir, workers, progress)
    return faces._caches[key]


def build_cache(faces, image_size: int = 64, crop: str = "official", cache_dir: str | Path | None = None,
                workers: int | None = None, progress: bool = True) -> ImageCache:
    """Decode every image of a FaceSet once into the uint8 cache, or open the cache if it exists
    (prepare_cache calls this and keeps the result).

    The cache folder's name carries a fingerprint of the files and settings, so a cache made for
    other files or settings is never used. An interrupted preparation leaves no 'meta.json' (it is
    written last) and is rebuilt.
    """
    crop_box((178, 218), crop)  # validates the name
    ids = list(faces.ids)
    key = _fingerprint(faces, image_size, crop)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = folder / f"{crop}-{image_size}px-{key}"
    cache = open_cache(target)
    if cache is not None:
        return cache
    # a second preparation in the same cache folder waits here for the first, then opens the cache it
    # made (or makes its own, of other files or settings)
    with waiting_lock(folder):
        return (open_cache(target) or _reuse_zip_cache(faces, target, folder, image_size, crop, progress)
                or _make_cache(faces, ids, key, target, folder, image_size, crop, workers, progress))


def _make_cache(faces, ids, key, target, folder, image_size, crop, workers, progress) -> ImageCache:
    if target.is_symlink():  # a link to a cache made from a zip that is gone
        target.unlink()
    elif target.exists():  # an interrupted earlier preparation
        shutil.rmtree(target)
    partial = folder / f".{target.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir(parents=True)
        array_path = partial / "images.npy"
        np.lib.format.open_memmap(array_path, mode="w+", dtype=np.uint8, shape=(len(ids), image_size, image_size, 3)).flush()
    except OSError as e:
        shutil.rmtree(partial, ignore_errors=True)
        raise UserError(f"cannot write the image cache in {folder} ({e.strerror}); pass --cache-dir a writable folder with "
                        f"{len(ids) * image_size * image_size * 3 / 2**30:.2f} GiB free") from e
    try:
        if faces.archive is not None:
            items, zip_path = [faces.archive.members[p] for p in faces.paths], str(faces.archive.path)
        else:
            items, zip_path = [str(p) for p in faces.paths], None
        _decode_all(items, zip_path, array_path, image_size, crop, workers, progress)
        with open(array_path, "rb+") as f:  # the pixels reach the disk before meta.json says "complete"
            os.fsync(f.fileno())
        meta = {"format_version": CACHE_FORMAT_VERSION, "count": len(ids), "image_size": image_size, "crop": crop,
                "source": faces.kind, "images_dir": str(faces.root.resolve()), "fingerprint": key,
                "synthetic": faces.synthetic is not None}
        if faces.archive is not None:  # what a later run on the unpacked folder checks its files against
            meta.update(archive=str(faces.archive.path.resolve()), content_key=key)
        # JSON escapes what a text file of lines cannot hold: newlines, \x85 and \u2028 in names
        # (splitlines() breaks at all three), and the surrogates of bytes that are not UTF-8
        write_json(partial / "ids.json", ids)
        write_json(partial / "meta.json", meta)  # last: marks the cache complete
        os.replace(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return open_cache(target)


def _decode_all(paths, zip_path, array_path, size, crop, workers, progress):
    """Decode `paths` (files, or with `zip_path` the zip's members) into the array at `array_path`."""
    workers = workers or os.cpu_count() or 1
    chunk = 256
    tasks = [(s, paths[s:s + chunk], size, crop) for s in range(0, len(paths), chunk)]
    errors: list[str] = []
    bar = tqdm(total=len(paths), desc=f"decoding faces to {size}x{size}", unit="img", disable=not progress, smoothing=0.1)
    if workers == 1 or len(tasks) == 1:
        _worker_init(str(array_path), zip_path, worker_process=False)
        results = map(_decode_chunk, tasks)
    else:
        pool = mp.get_context("fork").Pool(workers, initializer=_worker_init, initargs=(str(array_path), zip_path))
        results = pool.imap_unordered(_decode_chunk, tasks)
    try:
        for n, errs in results:
            errors += errs
            bar.update(n)
    finally:
        bar.close()
        if workers > 1 and len(tasks) > 1:
            pool.terminate()
        else:
            _worker_init_close()
    if errors:
        raise UserError(f"{len(errors)} images could not be read: {'; '.join(sorted(errors))}; replace the damaged "
                        "files (CelebA: from a fresh download) or remove them (and their label rows)")


def _worker_init_close() -> None:
    """Close the zip the main process decoded from itself (workers=1)."""
    global _worker_zip, _worker_array
    if _worker_zip is not None:
        os.close(_worker_zip)
    _worker_zip, _worker_array = None, None


def _reuse_zip_cache(faces, target: Path, folder: Path, size: int, crop: str, progress: bool) -> ImageCache | None:
    """For a folder's images: the cache made from a zip of the same images, if the cache folder holds
    one (the same names, settings and contents: each file's size and CRC-32 against the zip's), linked
    under the folder's fingerprint so later runs open it at once; None (and a note saying why, when
    such a cache is there but the files differ) otherwise."""
    if faces.archive is not None:
        return None
    candidates = [c for c in (open_cache(p) for p in sorted(folder.glob(f"{crop}-{size}px-z*")) if not p.is_symlink())
                  if c is not None and c.meta.get("content_key") and c.ids == list(faces.ids)]
    if not candidates:
        return None
    made = candidates[0]
    key, differs = _folder_content_key(faces, size, crop, made.meta["archive"], progress)
    match = next((c for c in candidates if c.meta["content_key"] == key), None)
    if match is None:
        print(f"note: the cache {made.path.name}, made from {made.meta['archive']} with the same {len(faces)} names, is "
              f"not used: {differs or 'the files differ from those it was made from'}; decoding the folder", file=sys.stderr)
        return None
    try:  # a relative link: the cache folder may move as a whole
        os.symlink(match.path.name, target, target_is_directory=True)
    except OSError:
        return match  # no links on this file system: the next run checks the files again
    return open_cache(target) or match


def _folder_content_key(faces, size: int, crop: str, archive: str, progress: bool) -> tuple[str, str | None]:
    """`_content_key` of a folder's files, read once (at disk speed, with a progress bar), and the first
    file whose size or CRC differs from the member of the same name in the zip `archive`, in words (None
    when the zip is gone or no file differs)."""
    members = {}
    if Path(archive).is_file():
        try:
            members = {Path(n).name: m for n, m in open_zip(archive, "").members.items()}
        except UserError:
            members = {}
    contents, first = [], None
    with tqdm(total=len(faces), desc="checking the files against the zip's cache", unit="img", disable=not progress) as bar:
        for name, path in zip(faces.ids, faces.paths):
            data = Path(path).read_bytes()
            contents.append((len(data), zlib.crc32(data)))
            m = members.get(Path(path).name)
            if first is None and m is not None and (m.size, m.crc) != contents[-1]:
                first = f"{name} differs from the zip's copy ({len(data)} bytes and CRC-32 {contents[-1][1]:08x} against {m.size} and {m.crc:08x})"
            bar.update()
    return _content_key(size, crop, faces.ids, contents), first


def open_cache(path: str | Path) -> ImageCache | None:
    """Open a complete cache folder, or None if it is missing or incomplete."""
    path = Path(path)
    try:
        meta = json.loads((path / "meta.json").read_text())
        ids = json.loads((path / "ids.json").read_text(encoding="utf-8"))
        images = np.load(path / "images.npy", mmap_mode="r")
    except (OSError, ValueError):
        return None
    if (meta.get("format_version") != CACHE_FORMAT_VERSION or not isinstance(ids, list) or len(ids) != meta["count"]
            or images.shape[0] != len(ids)):
        return None
    return ImageCache(images, ids, meta, path)
