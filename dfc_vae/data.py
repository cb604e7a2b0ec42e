"""Face preprocessing, the decode-once uint8 image cache, and random batches from it.

The first pass decodes every image of a face collection (dfc_vae.faces.FaceSet) once (in parallel worker processes), crops and resizes it, and
writes it into a raw uint8 array (N, S, S, 3) on disk. Training then gathers random batches from
that array -- on the GPU when it fits there -- with no per-image Python and no JPEG decoding.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import simplejpeg
import torch
from PIL import Image

from .choices import CROPS
from .celeba import ALIGNED_SIZE, OFFICIAL_CROP_BOX, CelebARoot
from .errors import UserError
from .fileio import write_json
from .runlock import waiting_lock

CACHE_FORMAT_VERSION = 2  # 2: reduced-scale JPEG boxes mapped by exactly 1/scale


def crop_box(image_size: tuple[int, int], crop: str) -> tuple[float, float, float, float]:
    """The face box (x0, y0, x1, y1) in an aligned image of `image_size` (width, height).

    'official': DFC-VAE's crop_celebA.lua box (30, 40, 168, 178) on the 178x218 aligned image;
    'center148': the central 148x148 square (the crop of most PyTorch CelebA code).
    For these two, images of another size are taken as the aligned image rescaled, and the box
    scales with them. 'center': the largest centred square of the image itself (aligned square
    sets such as FFHQ and CelebA-HQ: the whole image).
    """
    w, h = image_size
    if crop == "center":
        side = min(w, h)
        x0, y0 = (w - side) / 2, (h - side) / 2
        return (x0, y0, x0 + side, y0 + side)
    if crop == "official":
        x0, y0, x1, y1 = OFFICIAL_CROP_BOX
    elif crop == "center148":
        x0, y0 = (ALIGNED_SIZE[0] - 148) / 2, (ALIGNED_SIZE[1] - 148) / 2
        x1, y1 = x0 + 148, y0 + 148
    else:
        raise UserError(f"unknown crop '{crop}'; choose one of {', '.join(CROPS)}")
    sx, sy = w / ALIGNED_SIZE[0], h / ALIGNED_SIZE[1]
    return (x0 * sx, y0 * sy, x1 * sx, y1 * sy)


def _decode_face(path: str | Path, size: int, crop: str) -> tuple[np.ndarray, bool]:
    """Decode one face photo -> (pixels, finished).

    JPEGs are decoded at a reduced DCT scale (1/2, 1/4, 1/8) when the reduced face box is still at
    least `size` pixels, which is much faster and matches a full decode to within resize error.
    Grayscale, palette and RGBA inputs are converted to RGB (alpha dropped). When the face box falls
    on whole pixels (the official crop of 178x218 photos at 64 px) this returns the box, still to be
    resized (`finished` False) -- batched, in `load_faces`; otherwise PIL resizes the fractional box.
    """
    fast = _decode_jpeg_scaled(path, size, crop)
    if fast is not None:
        return fast
    with Image.open(path) as im:
        full = im.size
        box = crop_box(full, crop)
        scale = _dct_scale(box, size)
        if scale > 1 and im.format == "JPEG":
            # libjpeg's DCT scaling: pixel (i, j) of the 1/scale image covers the full image's
            # [scale*i, scale*(i+1)) block, so the box maps by exactly 1/scale (the last row and
            # column may be partial blocks, which the box never reaches)
            im.draft("RGB", (math.ceil(full[0] / scale), math.ceil(full[1] / scale)))
            reduced_by = round(full[0] / im.size[0])  # the scale libjpeg chose (1 if it declined)
            box = tuple(v / reduced_by for v in box)
        rgb = im if im.mode == "RGB" else im.convert("RGB")
        return _face_in(np.asarray(rgb), box, size, rgb)


def _dct_scale(box, size: int) -> int:
    """The largest DCT scale (1, 2, 4 or 8) at which the face box is still at least `size` pixels."""
    box_side = min(box[2] - box[0], box[3] - box[1])
    scale = 1
    while scale < 8 and box_side / (scale * 2) >= size:
        scale *= 2
    return scale


def _face_in(pixels: np.ndarray, box, size: int, image=None) -> tuple[np.ndarray, bool]:
    """The face box of decoded pixels: as is when it falls on whole pixels (still to be resized),
    else resized here by PIL from the fractional box."""
    whole = tuple(round(v) for v in box)
    if all(abs(v - w) < 1e-9 for v, w in zip(box, whole)):
        x0, y0, x1, y1 = whole
        return pixels[y0:y1, x0:x1], False
    image = image if image is not None else Image.fromarray(pixels)
    return np.asarray(image.resize((size, size), Image.Resampling.BICUBIC, box=box)), True


def _decode_jpeg_scaled(path: str | Path, size: int, crop: str) -> tuple[np.ndarray, bool] | None:
    """The fast path of `_decode_face` for ordinary JPEGs: simplejpeg (libjpeg-turbo's TurboJPEG API,
    ~1.6x PIL's decode with draft at 1/2 scale), with the same DCT scaling, so the same pixels.
    None for anything else (other formats, CMYK, damaged files, images over PIL's decompression-bomb
    limit), which PIL then decodes -- or refuses with its own errors."""
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(b"\xff\xd8"):
        return None
    try:
        h, w, colorspace, _ = simplejpeg.decode_jpeg_header(data)
        if colorspace not in ("YCbCr", "Gray") or (Image.MAX_IMAGE_PIXELS and w * h > Image.MAX_IMAGE_PIXELS):
            return None
        box = crop_box((w, h), crop)
        scale = _dct_scale(box, size)
        # the scale PIL's draft settles on for that request (its integer division gives 1/2 where 1/4
        # was asked at 32 px), so that both paths make the same pixels and caches stay valid
        fits = min(w // math.ceil(w / scale), h // math.ceil(h / scale))
        scale = max(s for s in (1, 2, 4, 8) if s <= fits)
        want = (math.ceil(h / scale), math.ceil(w / scale))
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=want[0], min_width=want[1])
    except ValueError:  # damaged or unusual: PIL's path reports it
        return None
    if pixels.shape[:2] != want:  # TurboJPEG chose another factor: the box would not map by 1/scale
        return None
    return _face_in(pixels, tuple(v / scale for v in box), size)


def load_faces(paths, size: int, crop: str = "official", on_error=None) -> np.ndarray:
    """Read aligned face photos -> (n, size, size, 3) uint8, cropped and resized with antialiasing.

    Whole-pixel face boxes are resized together, with torch's antialiased bicubic kernel on uint8
    (4x faster than PIL image by image, and within ~1 level of it). `on_error(path, exception)`, if
    given, is called for an unreadable image (its row stays black) instead of raising.
    """
    out = np.zeros((len(paths), size, size, 3), np.uint8)
    pending: dict[tuple, tuple[list[int], list[np.ndarray]]] = {}  # box shape -> (rows, boxes)
    for i, path in enumerate(paths):
        try:
            pixels, finished = _decode_face(path, size, crop)
        except Exception as e:
            if on_error is None:
                raise
            on_error(path, e)
            continue
        if finished:
            out[i] = pixels
        else:
            rows, boxes = pending.setdefault(pixels.shape, ([], []))
            rows.append(i)
            boxes.append(pixels)
    for rows, boxes in pending.values():
        x = torch.from_numpy(np.stack(boxes)).permute(0, 3, 1, 2)  # NCHW view of NHWC: channels_last
        y = torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic", antialias=True)
        out[rows] = y.permute(0, 2, 3, 1).numpy()
    return out


def load_face(path: str | Path, size: int, crop: str = "official") -> np.ndarray:
    """Read one aligned face photo -> (size, size, 3) uint8, exactly as the cache holds it."""
    return load_faces([path], size, crop)[0]


# ----------------------------------------------------------------------------- the cache


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
    h = hashlib.sha256(f"v{CACHE_FORMAT_VERSION}|{size}|{crop}|{faces.kind}|{faces.root.resolve()}".encode())
    for name, path in zip(faces.ids, faces.paths):
        try:
            st = os.stat(path)
        except OSError:
            raise UserError(f"image {name} is missing from {path.parent}; restore it, or remove it from the labels") from None
        h.update(f"{name}:{path}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


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


def prepare_cache(data, image_size: int = 64, crop: str = "official", cache_dir: str | Path | None = None,
                  workers: int | None = None, progress: bool = True) -> ImageCache:
    """The cache of `data` (a FaceSet, a CelebARoot, or a folder opened with dfc_vae.faces.open_faces)."""
    from .faces import FaceSet, open_faces

    if isinstance(data, CelebARoot):
        data = data.annotations
    faces = data if isinstance(data, FaceSet) else open_faces(data)
    return faces.cache(image_size, crop, cache_dir, workers, progress)


def build_cache(faces, image_size: int = 64, crop: str = "official", cache_dir: str | Path | None = None,
                workers: int | None = None, progress: bool = True) -> ImageCache:
    """Decode every image of a FaceSet once into the uint8 cache, or open the cache if it exists
    (FaceSet.cache calls this and keeps the result).

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
        (partial / "ids.txt").write_text("\n".join(ids) + "\n")
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
        ids = (path / "ids.txt").read_text().splitlines()  # names may hold spaces (folder sources)
        images = np.load(path / "images.npy", mmap_mode="r")
    except (OSError, ValueError):
        return None
    if meta.get("format_version") != CACHE_FORMAT_VERSION or len(ids) != meta["count"] or images.shape[0] != len(ids):
        return None
    return ImageCache(images, ids, meta, path)


# ----------------------------------------------------------------------------- batches


class BatchSource:
    """Random batches of faces from a cache, as (B, 3, S, S) float tensors in [0, 1], channels_last.

    The order of epoch e is a permutation drawn from (seed, e), so a resumed run can rebuild it and
    continue from any batch. Under data parallelism every rank draws the same permutation and
    takes its own slice of each global batch. Incomplete last batches are dropped.
    """

    def __init__(self, images: np.ndarray, indices: np.ndarray, batch_size: int, device: torch.device,
                 seed: int = 0, flip: bool = False, rank: int = 0, world_size: int = 1):
        if batch_size % world_size:
            raise UserError(f"batch size {batch_size} must be divisible by the number of processes ({world_size})")
        if len(indices) < batch_size:
            raise UserError(f"the training split has {len(indices)} images, fewer than one batch of {batch_size}; "
                            "lower --batch-size or use more data")
        self.batch_size, self.device, self.seed, self.flip = batch_size, device, seed, flip
        self.rank, self.world_size = rank, world_size
        self.num_batches = len(indices) // batch_size
        self.indices = np.sort(indices)
        self.source = images  # memory-mapped cache: pages come from the OS page cache, not our heap
        self.on_device = None
        if device.type == "cuda":  # the whole split on the GPU when it fits: batches gathered there
            need = len(indices) * int(np.prod(images.shape[1:]))
            if need < 0.5 * torch.cuda.mem_get_info(device)[0]:
                self.on_device = torch.from_numpy(np.ascontiguousarray(images[self.indices])).to(device)

    def batches(self, epoch: int, start: int = 0):
        """Yield the batches of `epoch` from batch number `start` on.

        On a GPU nothing is copied from the host per batch but the pixels of a split that does not
        fit there (pinned, asynchronous): the epoch's order and flips go to the device once and
        batches are gathered and flipped there, so the step never waits for a blocking copy."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.indices), generator=g).numpy()
        flips = (torch.rand(len(self.indices), generator=g) < 0.5).numpy()
        local = self.batch_size // self.world_size
        index_on_device = self.on_device is not None or self.device.type != "cpu"
        if index_on_device:
            order_dev = torch.from_numpy(order).to(self.device)
            flips_dev = torch.from_numpy(flips).to(self.device)
        for b in range(start, self.num_batches):
            lo = b * self.batch_size + self.rank * local
            idx = order[lo:lo + local]
            if self.on_device is not None:
                x = self.on_device[order_dev[lo:lo + local]]
            else:
                rows = self.indices[idx]
                sort = np.argsort(rows)  # read the memory map in file order, then restore batch order
                x = torch.from_numpy(self.source[rows[sort]][np.argsort(sort)])
                if self.device.type == "cuda":
                    x = x.pin_memory().to(self.device, non_blocking=True)
            if self.flip and index_on_device:
                chosen = flips_dev[order_dev[lo:lo + local]].view(-1, 1, 1, 1)  # dim 2 of NHWC is the width
                x = torch.where(chosen, x.flip(2), x)
            elif self.flip:  # only the chosen images, on the uint8 batch
                chosen = torch.from_numpy(np.flatnonzero(flips[idx])).to(self.device)
                x[chosen] = x[chosen].flip(2)
            yield to_unit_float(x)


def to_unit_float(images_u8: torch.Tensor) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> (N, 3, S, S) float in [0, 1]: an NCHW view with channels_last strides."""
    return images_u8.to(torch.float32).mul_(1 / 255).permute(0, 3, 1, 2)


def to_tensor(images_u8: np.ndarray) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> (N, 3, S, S) float in [0, 1]."""
    return to_unit_float(torch.from_numpy(np.array(images_u8, dtype=np.uint8)))  # a writable copy of a read-only cache view
