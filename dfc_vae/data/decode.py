"""Decoding face photos: the one photo opener (JPEG, PNG and WebP only; decompression-bomb guard,
damaged files and non-images as one-line errors, EXIF orientation), the face box of each crop, JPEG decoding at a
reduced DCT scale, and resizing to the model's size. Every image the cache holds comes through
`load_faces`; every photo a user hands to `edit`, `align` or the studio through `open_photo`.
"""

from __future__ import annotations

import io
import math
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import simplejpeg
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from dfc_vae.data.celeba import ALIGNED_SIZE, OFFICIAL_CROP_BOX
from dfc_vae.util.choices import CROPS
from dfc_vae.util.errors import UserError

# The formats a face photo comes in, and the only decoders Pillow may use: every other plugin
# (TIFF, GIF, BMP, PCX, TGA, SGI, EPS handed to Ghostscript, ...) is attack surface for no face.
PHOTO_FORMATS = ("JPEG", "PNG", "WEBP")  # Pillow's JPEG opener also opens MPO, the multi-picture JPEGs of phones
ACCEPTED = "JPEG, PNG or WebP"
# Leading bytes of formats people do hand in, so that a refusal can name what the file is
# (read here rather than by Pillow's own plugins, which would parse the very headers refused).
_OTHER_FORMATS = ((b"GIF8", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"8BPS", "PSD"),
                  (b"%!PS", "EPS"), (b"\xc5\xd0\xd3\xc6", "EPS"), (b"\x00\x00\x01\x00", "ICO"), (b"qoif", "QOI"),
                  (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"), (b"\xff\x4f\xff\x51", "JPEG 2000"), (b"DDS ", "DDS"),
                  (b"\x01\xda", "SGI"), (b"\x59\xa6\x6a\x95", "Sun raster"), (b"\x0a", "PCX"))
_OTHER_BOXES = {b"heic": "HEIC", b"heix": "HEIC", b"mif1": "HEIF", b"avif": "AVIF"}  # ISO boxes: bytes 4-8 'ftyp'


def other_format(head: bytes) -> str | None:
    """The name of a refused image format from a file's first bytes, or None when unknown."""
    if head[4:8] == b"ftyp":
        return _OTHER_BOXES.get(head[8:12], "HEIF/MP4")
    if head[:1] == b"\x0a" and head[1:2] not in (b"\x00", b"\x02", b"\x03", b"\x04", b"\x05"):
        return None  # PCX: byte 0 is 0x0a and byte 1 a version 0-5
    if head[:1] == b"P" and head[1:2] in b"123456" and len(head) > 2 and head[2:3] in b" \t\r\n":
        return "PPM/PGM"
    return next((name for magic, name in _OTHER_FORMATS if head.startswith(magic)), None)


def _not_an_image(source: str | Path | bytes, what: str) -> UserError:
    try:
        if isinstance(source, bytes):
            head = source[:16]
        else:
            with open(source, "rb") as f:
                head = f.read(16)
    except OSError:
        head = b""
    kind = other_format(head)
    if kind:
        return UserError(f"{what} is in the {kind} format; dfc_vae reads only {ACCEPTED} photos, so convert it to one of those")
    return UserError(f"{what} is not an image dfc_vae reads ({ACCEPTED}); give a {ACCEPTED} photo")


@contextmanager
def opened_image(source: str | Path | bytes, what: str, max_pixels: int | None = None):
    """The PIL image of a file or of bytes, opened lazily (only its header read), as a context.

    `what` names it in errors ("photo face.jpg", "the photo"). Decompression bombs (PIL's limit) and
    images over `max_pixels` are refused before their pixels are decoded; non-images and damaged
    files are UserErrors too, so every entry point says one line and exits 2.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source, formats=PHOTO_FORMATS) as im:
                if max_pixels and im.width * im.height > max_pixels:
                    raise UserError(f"{what} is {im.width}x{im.height} pixels, more than {max_pixels / 1e6:g} "
                                    "megapixels; shrink it first")
                yield im
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise UserError(f"{what} is too large to decode safely ({e.__class__.__name__}); shrink it first") from None
    except UnidentifiedImageError:
        raise _not_an_image(source, what) from None
    except OSError as e:  # truncated or damaged files
        raise UserError(f"{what} could not be read ({e}); re-save it as JPEG or PNG") from None


def open_photo(source: str | Path | bytes, what: str | None = None, max_pixels: int | None = None) -> Image.Image:
    """A photo (a file or its bytes) as an RGB PIL image with its EXIF orientation applied, through
    `opened_image`'s checks; grayscale, palette and alpha are converted to RGB."""
    if not isinstance(source, bytes) and not Path(source).is_file():
        raise UserError(f"photo {source} does not exist; give the path of a JPEG or PNG photo")
    with opened_image(source, what or f"photo {source}", max_pixels) as im:
        # the decoded pixels are the result, not copied twice over (a 30-megapixel photo is 86 MiB):
        # converted only when not RGB already, then turned in place; the same pixels as
        # exif_transpose's copy followed by convert's
        rgb = im.convert("RGB") if im.mode != "RGB" else im
        rgb.load()
        ImageOps.exif_transpose(rgb, in_place=True)
        return rgb


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


def _decode_face(path: str | Path | bytes, size: int, crop: str) -> tuple[np.ndarray, bool]:
    """Decode one face photo (a file, or its bytes: an upload) -> (pixels, finished).

    JPEGs are decoded at a reduced DCT scale (1/2, 1/4, 1/8) when the reduced face box is still at
    least `size` pixels, which is much faster and matches a full decode to within resize error.
    Grayscale, palette and RGBA inputs are converted to RGB (alpha dropped). When the face box falls
    on whole pixels (the official crop of 178x218 photos at 64 px) this returns the box, still to be
    resized (`finished` False) -- batched, in `load_faces`; otherwise PIL resizes the fractional box.
    """
    fast = _decode_jpeg_scaled(path, size, crop)
    if fast is not None:
        return fast
    with opened_image(path, "the photo" if isinstance(path, bytes) else f"image {path}") as im:
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


def _decode_jpeg_scaled(path: str | Path | bytes, size: int, crop: str) -> tuple[np.ndarray, bool] | None:
    """The fast path of `_decode_face` for ordinary JPEGs: simplejpeg (libjpeg-turbo's TurboJPEG API,
    faster than PIL's decode with draft), with the same DCT scaling, so the same pixels.
    None for anything else (other formats, CMYK, damaged files, images over PIL's decompression-bomb
    limit), which PIL then decodes -- or refuses with its own errors."""
    if isinstance(path, bytes):
        data = path
    else:
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


def load_faces(paths, size: int, crop: str = "official", on_error=None, names=None) -> np.ndarray:
    """Read aligned face photos -> (n, size, size, 3) uint8, cropped and resized with antialiasing.

    Whole-pixel face boxes are resized together, with torch's antialiased bicubic kernel on uint8
    (much faster than PIL image by image, and within about one level of it). `on_error(path, exception)`, if
    given, is called for an unreadable image (its row stays black) instead of raising; with `names`, it is
    given the image's name instead of its path (the bytes of a zip's member have no path).
    """
    out = np.zeros((len(paths), size, size, 3), np.uint8)
    pending: dict[tuple, tuple[list[int], list[np.ndarray]]] = {}  # box shape -> (rows, boxes)
    for i, path in enumerate(paths):
        try:
            pixels, finished = _decode_face(path, size, crop)
        except Exception as e:
            if on_error is None:
                raise
            on_error(path if names is None else names[i], e)
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


def load_face(path: str | Path | bytes, size: int, crop: str = "official") -> np.ndarray:
    """Read one aligned face photo (a file or its bytes) -> (size, size, 3) uint8, exactly as the cache holds it."""
    return load_faces([path], size, crop)[0]
