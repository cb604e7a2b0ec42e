"""The decode-once uint8 image cache: every face of a collection (a FaceSet) decoded once, in
parallel worker processes, into a raw (N, S, S, 3) array on disk, found again by a fingerprint of
the files and settings.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

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
    """Identifies the files and settings a cache was made from: the source, names, paths, sizes and mtimes."""
    h = hashlib.sha256(_bytes(f"v{CACHE_FORMAT_VERSION}|{size}|{crop}|{faces.kind}|{faces.root.resolve()}"))
    for name, path in zip(faces.ids, faces.paths):
        try:
            st = os.stat(path)
        except OSError:
            raise UserError(f"image {name} is missing from {path.parent}; restore it, or remove it from the labels") from None
        h.update(_bytes(f"{name}:{path}:{st.st_size}:{st.st_mtime_ns};"))
    return h.hexdigest()[:16]


def _bytes(text: str) -> bytes:
    """UTF-8, with a file name's undecodable bytes (surrogates from os.walk) given back as themselves."""
    return text.encode("utf-8", "surrogateescape")


_worker_array: np.ndarray | None = None


def _worker_init(array_path: str, worker_process: bool = True):
    global _worker_array
    if worker_process:  # one thread per decoding process; never change the main process's setting
        torch.set_num_threads(1)
    _worker_array = np.load(array_path, mmap_mode="r+")


def _decode_chunk(task):
    start, paths, size, crop = task
    errors = []
    faces = load_faces(paths, size, crop, on_error=lambda p, e: errors.append(f"{p} ({type(e).__name__}: {e})"))
    _worker_array[start:start + len(paths)] = faces  # every unreadable image is reported, not just the first
    return len(paths), errors  # no msync per chunk: one fsync of the whole file at the end


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
        return open_cache(target) or _make_cache(faces, ids, key, target, folder, image_size, crop, workers, progress)


def _make_cache(faces, ids, key, target, folder, image_size, crop, workers, progress) -> ImageCache:
    if target.exists():  # an interrupted earlier preparation
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
        _decode_all([str(p) for p in faces.paths], array_path, image_size, crop, workers, progress)
        with open(array_path, "rb+") as f:  # the pixels reach the disk before meta.json says "complete"
            os.fsync(f.fileno())
        meta = {"format_version": CACHE_FORMAT_VERSION, "count": len(ids), "image_size": image_size, "crop": crop,
                "source": faces.kind, "images_dir": str(faces.root.resolve()), "fingerprint": key,
                "synthetic": faces.synthetic is not None}
        # JSON escapes what a text file of lines cannot hold: newlines, \x85 and \u2028 in names
        # (splitlines() breaks at all three), and the surrogates of bytes that are not UTF-8
        write_json(partial / "ids.json", ids)
        write_json(partial / "meta.json", meta)  # last: marks the cache complete
        os.replace(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return open_cache(target)


def _decode_all(paths, array_path, size, crop, workers, progress):
    from tqdm.auto import tqdm

    workers = workers or os.cpu_count() or 1
    chunk = 256
    tasks = [(s, paths[s:s + chunk], size, crop) for s in range(0, len(paths), chunk)]
    errors: list[str] = []
    bar = tqdm(total=len(paths), desc=f"decoding faces to {size}x{size}", unit="img", disable=not progress, smoothing=0.1)
    if workers == 1 or len(tasks) == 1:
        _worker_init(str(array_path), worker_process=False)
        results = map(_decode_chunk, tasks)
    else:
        pool = mp.get_context("fork").Pool(workers, initializer=_worker_init, initargs=(str(array_path),))
        results = pool.imap_unordered(_decode_chunk, tasks)
    try:
        for n, errs in results:
            errors += errs
            bar.update(n)
    finally:
        bar.close()
        if workers > 1 and len(tasks) > 1:
            pool.terminate()
    if errors:
        raise UserError(f"{len(errors)} images could not be read: {'; '.join(sorted(errors))}; replace the damaged "
                        "files (CelebA: from a fresh download) or remove them (and their label rows)")


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
