"""One whole face: `render_face` and `render_face_annotated` draw a face's parts back to front,
then its light and film noise, and report where its landmarks and face box were drawn."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
from PIL import Image

from dfc_vae.data.synth import draw
from dfc_vae.data.synth.draw import Canvas
from dfc_vae.data.synth.params import CX, FACE_CY, NOISE_PAD, FaceParams, H, W, face_params

_noise_cache: list[np.ndarray] = []
_light_grid: list[np.ndarray] = []


class RenderedFace(NamedTuple):
    image: Image.Image  # 178x218 RGB
    landmarks: tuple[int, ...]  # lefteye_x, lefteye_y, righteye_x, righteye_y, nose_x, nose_y,
    #                              leftmouth_x, leftmouth_y, rightmouth_x, rightmouth_y (image px)
    bbox: tuple[int, int, int, int]  # x_1, y_1, width, height of the face (forehead to chin)


def render_face(labels: Mapping[str, int] | Sequence[int], rng: np.random.Generator) -> Image.Image:
    """Draw one aligned 178x218 RGB face showing `labels`' visible attributes (see the package doc)."""
    return render_face_annotated(labels, rng).image


def render_face_annotated(labels: Mapping[str, int] | Sequence[int], rng: np.random.Generator) -> RenderedFace:
    """`render_face` plus the drawn landmark positions and face box, in image pixels.

    `labels`: name -> -1/1 (or 0/1, bool; missing names are off), or 40 values in official order.
    If several hair colours are on, the first of Black, Blond, Brown, Gray wins.
    Consumes a fixed amount of `rng` whatever the labels.
    """
    return render_params(face_params(labels, rng))


def render_params(p: FaceParams) -> RenderedFace:
    """The face that `p` describes (what `render_face_annotated` draws once the parameters are drawn)."""
    img = Image.new("RGB", (W, H), p.bg)
    c = Canvas(img, p.scale, p.dx, p.dy)
    _draw_parts(img, c, p, PART_NAMES)
    landmarks, bbox = _annotations(c, p)
    return RenderedFace(_light_and_noise(img, p), landmarks, bbox)


# The parts of a face, back to front (each covers those drawn before it): name, whether a face draws it, and how.
_PARTS = (
    ("clothes", lambda p: True, lambda img, c, p, head: draw.draw_clothes(c, p)),
    ("back_hair", lambda p: True, lambda img, c, p, head: draw.draw_back_hair(c, p)),
    ("neck_ears_face", lambda p: True, lambda img, c, p, head: draw.draw_neck_ears_and_face(c, p, *head)),
    ("cheeks", lambda p: p.smiling, lambda img, c, p, head: draw.draw_blushed_cheeks(c, p)),
    ("beard", lambda p: p.beard, lambda img, c, p, head: draw.draw_beard(c, p, *head)),
    ("front_hair", lambda p: True, lambda img, c, p, head: draw.draw_front_hair(c, p)),
    ("bangs", lambda p: p.bangs, lambda img, c, p, head: draw.draw_bangs(c, p)),
    ("brows", lambda p: True, lambda img, c, p, head: draw.draw_brows(c, p)),
    ("eyes", lambda p: True, lambda img, c, p, head: draw.draw_eyes(c, p)),
    ("lenses", lambda p: p.eyeglasses, lambda img, c, p, head: draw.draw_lenses(img, c, p)),
    ("frames", lambda p: p.eyeglasses, lambda img, c, p, head: draw.draw_frames(c, p)),
    ("nose", lambda p: True, lambda img, c, p, head: draw.draw_nose(c, p)),
    ("smile_folds", lambda p: p.smiling, lambda img, c, p, head: draw.draw_smile_folds(c, p)),
    ("mustache", lambda p: p.mustache, lambda img, c, p, head: draw.draw_mustache(c, p)),
    ("lips", lambda p: True, lambda img, c, p, head: draw.draw_lips(c, p)),
    ("hat", lambda p: p.wearing_hat, lambda img, c, p, head: draw.draw_hat(c, p)),
)
PART_NAMES: tuple[str, ...] = tuple(name for name, _, _ in _PARTS)
TRANSLUCENT = ("lenses",)  # the face behind them shows through: they hide nothing drawn before them
# Every colour a part is filled with comes from these fields (or is a fixed non-black colour, or a shade or mix of
# them): with all of them white, a part drawn on black marks exactly the pixels it covers.
_COLOUR_FIELDS = ("skin", "hair", "brow", "facial_hair", "bg", "clothes", "iris", "frame", "hat", "hat_band", "lip",
                  "lens")


def _draw_parts(img: Image.Image, c: Canvas, p: FaceParams, names) -> None:
    head = draw.head_outline(p)
    for name, drawn, paint in _PARTS:
        if name in names and drawn(p):
            paint(img, c, p, head)


def part_mask(p: FaceParams, names) -> np.ndarray:
    """(H, W) bool: the pixels that the parts `names` (of PART_NAMES) of the face `p` cover, where drawn at all,
    whatever covers them afterwards."""
    unknown = set(names) - set(PART_NAMES)
    if unknown:
        raise ValueError(f"unknown face part {sorted(unknown)[0]!r}; the parts are {', '.join(PART_NAMES)}")
    white = dataclasses.replace(p, **{f: (255, 255, 255) for f in _COLOUR_FIELDS})
    img = Image.new("RGB", (W, H), (0, 0, 0))
    _draw_parts(img, Canvas(img, p.scale, p.dx, p.dy), white, names)
    rgb = np.asarray(img)
    return (rgb[..., 0] | rgb[..., 1] | rgb[..., 2]) > 0  # three strided views: far quicker than a reduce over 3


def visible_mask(p: FaceParams, names) -> np.ndarray:
    """(H, W) bool: the pixels where one of the parts `names` shows in the finished face `p`: covered by it and by
    no opaque part drawn after it (every part but the lenses hides what is under it, pixel for pixel)."""
    shown = np.zeros((H, W), bool)
    for name, drawn, _ in _PARTS:
        if not drawn(p):
            continue
        if name in names:
            shown |= part_mask(p, (name,))
        elif name not in TRANSLUCENT:
            shown &= ~part_mask(p, (name,))
    return shown


def _annotations(c: Canvas, p: FaceParams) -> tuple[tuple[int, ...], tuple[int, int, int, int]]:
    """The landmarks (eyes, nose tip, mouth corners) and the face box, in image pixels."""
    def to_img(px, py):
        return int(round(float(c.x(px)))), int(round(float(c.y(py))))

    (left_x, right_x), corner_y = p.eye_x, p.corner_y
    lm = (*to_img(left_x, p.eye_y), *to_img(right_x, p.eye_y), *to_img(CX, p.nose_y),
          *to_img(p.mouth_x - p.mw, corner_y), *to_img(p.mouth_x + p.mw, corner_y))
    x1, y1 = to_img(CX - p.hw, FACE_CY - p.top_h)
    x2, y2 = to_img(CX + p.hw, FACE_CY + p.bot_h)
    return lm, (x1, y1, x2 - x1, y2 - y1)


def _noise() -> np.ndarray:
    """Fixed sensor-like noise (int16), a little bigger than an image: each face uses a random
    window of it, which is far cheaper than drawing fresh noise per image."""
    if not _noise_cache:
        g = np.random.default_rng(20170324)
        _noise_cache.append(np.round(g.normal(0, 3.0, (H + NOISE_PAD, W + NOISE_PAD, 1))).astype(np.int16))
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        _light_grid.extend([(xx - W / 2) / (W / 2), (yy - H / 2) / (H / 2)])
    return _noise_cache[0]


def _light_and_noise(img: Image.Image, p: FaceParams) -> Image.Image:
    """A linear gradient in a random direction, a global gain, and fixed film noise."""
    noise = _noise()
    gx, gy = _light_grid
    # Fixed-point arithmetic in 16 bits, cheaper than floats: gain * 128 <= 151, and times 255 it
    # still fits in uint16.
    gain = ((p.light_g + p.light_a * gx + p.light_b * gy) * 128).astype(np.uint16)
    arr = np.asarray(img).astype(np.uint16)
    arr *= gain[..., None]
    arr >>= 7
    arr = arr.astype(np.int16)
    arr += noise[p.noise_y:p.noise_y + H, p.noise_x:p.noise_x + W]
    np.clip(arr, 0, 255, out=arr)
    return Image.fromarray(arr.astype(np.uint8), "RGB")
