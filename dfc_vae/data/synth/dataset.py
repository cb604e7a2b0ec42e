"""Synthetic faces in CelebA's exact on-disk format: an offline stand-in for CelebA.

CelebA cannot be downloaded everywhere (tests, CI, an offline demo), so this module draws simple
cartoon faces with PIL and writes them, with all five annotation files, the way CelebA ships them.

* `sample_attributes(rng)` draws one face's 40 labels at CelebA's rates.
* `render_face(labels, rng)` draws a 178x218 aligned face showing the VISIBLE_ATTRIBUTES;
  `render_face_annotated` also returns its landmarks and bounding box; both draw everything
  random about the face up front with `face_params(labels, rng)` (a `FaceParams` record), then
  draw it part by part, back to front.
* `render_celeba(out_dir, n, seed, layout)` writes a whole dataset (official, torchvision or
  Kaggle layout, or a plain folder of JPEGs with a labels.csv), in parallel, deterministically per seed.
* `contact_sheet(path)` draws the labelled grid in assets/synthetic_faces.png.

Only 14 attributes are drawn (VISIBLE_ATTRIBUTES). The other 26 are labels only: drawn at
CelebA's rates, independently of everything, with no effect on the pixels, so anything trained
on them must stay at chance (an honesty check for classifiers and attribute vectors).

Image k (1-based, file 00000k.jpg) is seeded with numpy's SeedSequence([seed, k]), so a dataset
is the same whatever the number of worker processes. All random numbers a face needs are drawn
up front in a fixed order, whatever its labels: rendering the same rng state with one label
flipped changes only the pixels that label controls.
"""

from __future__ import annotations

import colorsys
import io
import json
import multiprocessing
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dfc_vae.util.choices import SYNTH_LAYOUTS as LAYOUTS, SYNTHETIC_MARKER as MARKER_NAME
from dfc_vae.data.celeba import ALIGNED_SIZE, ATTRIBUTE_NAMES, CELEBA_RATES
from dfc_vae.util.errors import UserError
from dfc_vae.util.fileio import write_bytes, write_json, write_text

__all__ = [
    "VISIBLE_ATTRIBUTES", "LAYOUTS", "MARKER_NAME", "RenderedFace",
    "sample_attributes", "render_face", "render_face_annotated", "render_celeba", "contact_sheet",
    "FaceParams", "face_params",
]

# Attributes that change the pixels. Everything else in ATTRIBUTE_NAMES is a label only.
VISIBLE_ATTRIBUTES: tuple[str, ...] = (
    "Smiling", "Mouth_Slightly_Open", "Eyeglasses", "Male", "Black_Hair", "Blond_Hair",
    "Brown_Hair", "Gray_Hair", "Bangs", "Wearing_Hat", "Pale_Skin", "Mustache", "No_Beard",
    "Wearing_Lipstick",
)
# Drawn independently of every other attribute: attribute-vector edits along these are checked
# for leaking into other attributes, so they must not be correlated with anything.
INDEPENDENT_VISIBLE: tuple[str, ...] = (
    "Smiling", "Eyeglasses", "Mouth_Slightly_Open", "Bangs", "Wearing_Hat", "Pale_Skin",
)
LABEL_ONLY: tuple[str, ...] = tuple(a for a in ATTRIBUTE_NAMES if a not in VISIBLE_ATTRIBUTES)

PARTIAL_NAME = ".dfc_vae_synthetic.partial"  # present while a dataset is being written
FORMAT_VERSION = 3  # 2: Smiling and Mouth_Slightly_Open drawn independently (no teeth);
#                    3: a smile also blushes round cheeks, eyeglasses get tinted lenses, only an open
#                       mouth is dark, painted lips are fuller (see docs/synthetic_faces.md, "Format versions")
JPEG_QUALITY = 92

# CelebA's official partition sizes (list_eval_partition.txt).
_CELEBA_TRAIN, _CELEBA_VALID, _CELEBA_TOTAL = 162770, 19867, 202599

# ---------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------

_HAIR = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")
# Among males: P(mustache) = 0.1 gives CelebA's overall 0.042; a beard (independent of the
# mustache) with P = 0.329 makes P(beard or mustache | male) = 0.396, so No_Beard is 0.835.
_P_MUSTACHE_MALE = CELEBA_RATES["Mustache"] / CELEBA_RATES["Male"]
_P_BEARD_MALE = 1 - (1 - (1 - CELEBA_RATES["No_Beard"]) / CELEBA_RATES["Male"]) / (1 - _P_MUSTACHE_MALE)
# Lipstick on females only (as good as true in CelebA): 0.472 / 0.583 = 0.81 of females.
_P_LIPSTICK_FEMALE = CELEBA_RATES["Wearing_Lipstick"] / (1 - CELEBA_RATES["Male"])


def sample_attributes(rng: np.random.Generator) -> dict[str, int]:
    """Draw one face's 40 labels (values -1/1, keys in official order) at CelebA's rates.

    Always consumes exactly 40 uniform numbers from `rng`, one per attribute slot. Male drives
    hair length (in the renderer), facial hair and lipstick; the four hair colours are exclusive
    (a face with none of them gets red/auburn hair); everything else is independent.
    """
    u = dict(zip(ATTRIBUTE_NAMES, rng.random(len(ATTRIBUTE_NAMES))))
    on = {a: bool(u[a] < CELEBA_RATES[a]) for a in ATTRIBUTE_NAMES}  # independent Bernoulli draws
    male = on["Male"]
    # One categorical draw for the exclusive hair colours (uses the Black_Hair slot).
    edge, colour = 0.0, None
    for a in _HAIR:
        edge += CELEBA_RATES[a]
        if u["Black_Hair"] < edge:
            colour = a
            break
    for a in _HAIR:
        on[a] = a == colour
    on["Mustache"] = male and u["Mustache"] < _P_MUSTACHE_MALE
    beard = male and u["No_Beard"] < _P_BEARD_MALE
    on["No_Beard"] = not (beard or on["Mustache"])
    on["Wearing_Lipstick"] = (not male) and u["Wearing_Lipstick"] < _P_LIPSTICK_FEMALE
    return {a: 1 if on[a] else -1 for a in ATTRIBUTE_NAMES}


def _flags(labels: Mapping[str, int] | Sequence[int]) -> dict[str, bool]:
    """Labels as name -> bool. Accepts a mapping (-1/1, 0/1 or bools; missing names are off) or
    a sequence of 40 values in official order."""
    if not isinstance(labels, Mapping):
        values = list(labels)
        if len(values) != len(ATTRIBUTE_NAMES):
            raise ValueError(f"expected {len(ATTRIBUTE_NAMES)} attribute values, got {len(values)}")
        labels = dict(zip(ATTRIBUTE_NAMES, values))
    unknown = [k for k in labels if k not in ATTRIBUTE_NAMES]
    if unknown:
        raise ValueError(f"unknown attribute {unknown[0]!r}")
    return {a: bool(labels.get(a, -1) > 0) for a in ATTRIBUTE_NAMES}


# ---------------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------------

W, H = ALIGNED_SIZE
# Canonical geometry, in aligned-image pixels, before the per-face shift and scale: where CelebA's
# alignment puts eyes (69,112)/(108,112), nose (89,134) and mouth corners (72,152)/(106,152).
_PIVOT = (89.0, 125.0)  # the per-face scale is about this point
_CX = _PIVOT[0]  # the face's vertical centre line
_FACE_CY = 120.0  # centre of the head outline (widest line of the cheeks)

_HAIR_RGB = {  # base colour and per-face jitter range; ranges do not overlap
    "Black_Hair": ((30, 25, 22), 8), "Brown_Hair": ((105, 66, 38), 10),
    "Blond_Hair": ((224, 194, 128), 10), "Gray_Hair": ((168, 168, 171), 14),
    None: ((160, 62, 30), 10),  # red / auburn: every face with none of the four
}
_HAT_RGB = ((35, 75, 195), (40, 145, 70), (115, 50, 160), (20, 135, 145), (195, 40, 135))
_IRIS_RGB = ((90, 55, 30), (45, 32, 25), (70, 110, 165), (80, 120, 80), (120, 90, 45))
_FRAME_RGB = ((18, 18, 20), (45, 30, 22), (25, 28, 45), (55, 55, 58))
# Lens tints (format 3): blue / teal / violet greys, away from every skin hue, so a tinted lens
# shows on light and dark skin alike.
_LENS_RGB = ((110, 145, 200), (90, 160, 165), (140, 125, 195))
_BLUSH_RGB = (235, 65, 110)  # a smile's cheeks (format 3) move 50-60% of the way from the skin to it
# Non-pale skin runs from light tan to dark brown; pale skin is a separate, much whiter tone
# (high blue channel), so no non-pale face ever falls in the pale range.
_SKIN_LIGHT, _SKIN_MID, _SKIN_DARK = np.array((226, 182, 150.)), np.array((196, 142, 108.)), np.array((112, 74, 52.))
_SKIN_PALE = np.array((247, 229, 220.))

_N_OUTLINE = 48
_ANG = np.linspace(0, 2 * np.pi, _N_OUTLINE, endpoint=False)
_COS, _SIN = np.cos(_ANG), np.sin(_ANG)
_LOWER_HALF = _SIN >= 0  # head outline points below the cheek line
_U = np.linspace(-1.0, 1.0, 13)  # parameter along the mouth, corner to corner
_ROOT = np.sqrt(np.clip(1 - _U ** 2, 0, 1))

_NOISE_PAD = 24
_noise_cache: list[np.ndarray] = []
_light_grid: list[np.ndarray] = []


def _noise() -> np.ndarray:
    """Fixed sensor-like noise (int16), a little bigger than an image: each face uses a random
    window of it, which is far cheaper than drawing fresh noise per image."""
    if not _noise_cache:
        g = np.random.default_rng(20170324)
        _noise_cache.append(np.round(g.normal(0, 3.0, (H + _NOISE_PAD, W + _NOISE_PAD, 1))).astype(np.int16))
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        _light_grid.extend([(xx - W / 2) / (W / 2), (yy - H / 2) / (H / 2)])
    return _noise_cache[0]


class _Draws:
    """Uniform numbers drawn in one block; each `u`/`pick` call consumes the next one. Every face
    makes the same calls in the same order whatever its labels (branches choose ranges, never
    whether to draw), so flipping a label never shifts the other random choices."""

    def __init__(self, rng: np.random.Generator, count: int = 80):  # a face uses 65
        self._v = rng.random(count)
        self._i = 0

    def u(self, lo: float, hi: float) -> float:
        x = self._v[self._i]
        self._i += 1
        return lo + (hi - lo) * float(x)

    def pick(self, seq):
        return seq[min(int(self.u(0, len(seq))), len(seq) - 1)]

    def skip(self, count: int) -> None:
        """Pass over numbers an earlier format used, so the later features keep their values."""
        self._i += count


class _Canvas:
    """ImageDraw in canonical coordinates: every point goes through the face's shift and scale."""

    def __init__(self, image: Image.Image, scale: float, dx: float, dy: float):
        self.draw = ImageDraw.Draw(image)
        self.s, self.ox, self.oy = scale, _PIVOT[0] + dx, _PIVOT[1] + dy

    def x(self, x):  # a number or a numpy array
        return self.ox + self.s * (x - _PIVOT[0])

    def y(self, y):
        return self.oy + self.s * (y - _PIVOT[1])

    def pts(self, xs, ys) -> list[tuple[float, float]]:
        s, ox, oy, px, py = self.s, self.ox, self.oy, _PIVOT[0], _PIVOT[1]
        return [(ox + s * (float(x) - px), oy + s * (float(y) - py)) for x, y in zip(xs, ys)]

    def w(self, width: float) -> int:
        return max(1, int(round(width * self.s)))

    def ellipse(self, cx, cy, rx, ry, fill=None, outline=None, width=1):
        x0, x1 = self.x(cx - rx), self.x(cx + rx)
        y0, y1 = self.y(cy - ry), self.y(cy + ry)
        self.draw.ellipse((float(x0), float(y0), float(x1), float(y1)), fill=fill, outline=outline, width=self.w(width))

    def poly(self, xs, ys, fill):
        self.draw.polygon(self.pts(xs, ys), fill=fill)

    def line(self, xs, ys, fill, width):
        self.draw.line(self.pts(xs, ys), fill=fill, width=self.w(width), joint="curve")

    def rrect(self, x0, y0, x1, y1, radius, outline=None, fill=None, width=1):
        box = (float(self.x(x0)), float(self.y(y0)), float(self.x(x1)), float(self.y(y1)))
        self.draw.rounded_rectangle(box, radius=radius * self.s, outline=outline, fill=fill, width=self.w(width))


# Colour helpers in plain Python: numpy's per-call overhead dominates on 3-element colours.
def _rgb(c) -> tuple[int, int, int]:
    return tuple(min(255, max(0, int(round(float(v))))) for v in c)


def _shade(c, f) -> tuple[int, int, int]:
    return _rgb([v * f for v in c])


def _luma(c) -> float:
    return 0.299 * float(c[0]) + 0.587 * float(c[1]) + 0.114 * float(c[2])


def _mix(a, b, t) -> tuple[int, int, int]:
    return _rgb([u * (1 - t) + v * t for u, v in zip(a, b)])


@dataclass(frozen=True)
class FaceParams:
    """Everything one face's drawing needs: the visible labels that choose what is drawn, and every
    random number of the face (with the colours made from them), drawn up front by `face_params`.
    Lengths and positions are canonical aligned-image pixels, before the face's shift and scale."""

    # labels
    male: bool
    smiling: bool
    mouth_open: bool
    eyeglasses: bool
    bangs: bool
    wearing_hat: bool
    mustache: bool
    beard: bool  # No_Beard = -1, and with a mustache the beard coin said yes too
    # pose and head shape
    scale: float
    dx: float
    dy: float
    hw: float  # half-width of the head
    top_h: float  # forehead top = _FACE_CY - top_h
    bot_h: float  # chin = _FACE_CY + bot_h
    jaw_p: float  # superellipse power of the jaw: square vs pointy
    eye_dx: float
    eye_y: float
    nose_y: float
    mouth_y: float
    mouth_x: float
    # colours (RGB)
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    brow: tuple[int, int, int]
    facial_hair: tuple[int, int, int]
    bg: tuple[int, int, int]
    clothes: tuple[int, int, int]
    iris: tuple[int, int, int]
    frame: tuple[int, int, int]
    hat: tuple[int, int, int]
    hat_band: tuple[int, int, int]
    lip: tuple[int, int, int]
    # hair and hat
    hairline: float
    temple_drop: float
    hair_volume: float
    hair_len: float
    hair_flare: float
    part_x: float
    bang_y: float
    bang_teeth: int
    bang_phase: float
    brim_y: float
    # eyes and brows
    eye_rx: float
    eye_ry: float
    gaze: float
    brow_w: float
    brow_arch: float
    brow_gap: float
    # mouth
    mw: float  # half-width
    raise_: float  # how far the corners rise
    opening: float
    lip_up: float
    lip_lo: float
    # light and noise, then format 3's cheeks and lenses
    light_a: float
    light_b: float
    light_g: float
    noise_x: int
    noise_y: int
    blush_t: float  # how far a smile's cheeks move towards _BLUSH_RGB
    lens: tuple[int, int, int]  # eyeglasses: tint colour and opacity
    lens_a: float

    @property
    def eye_x(self) -> tuple[float, float]:
        return (_CX - 0.5 - self.eye_dx, _CX - 0.5 + self.eye_dx)

    @property
    def corner_y(self) -> float:  # the mouth corners
        return self.mouth_y - self.raise_

    @property
    def lower_lip_y(self) -> float:  # just below the lower lip, where a beard starts
        return self.mouth_y + (self.opening * 0.6 if self.mouth_open else 0) + self.lip_lo + 2

    @property
    def hair_top(self) -> float:  # the top of the hair behind the head
        return _FACE_CY - self.top_h - self.hair_volume - (6 if self.male else 4)


def face_params(labels: Mapping[str, int] | Sequence[int], rng: np.random.Generator) -> FaceParams:
    """Draw everything random about one face, for `labels` (as `render_face_annotated` takes them).

    Consumes the same fixed block of `rng` whatever the labels. The calls below run in the order
    of the draws: the k-th number of the block always feeds the same feature, so reordering them
    (or the draws inside them) would change every seed's faces.
    """
    f = _flags(labels)
    d = _Draws(rng)
    pose = _pose_draws(d, f["Male"])
    colours = _colour_draws(d, f)
    shapes = _shape_draws(d, f)
    finish = _finishing_draws(d, f)
    return FaceParams(male=f["Male"], smiling=f["Smiling"], mouth_open=f["Mouth_Slightly_Open"],
                      eyeglasses=f["Eyeglasses"], bangs=f["Bangs"], wearing_hat=f["Wearing_Hat"],
                      mustache=f["Mustache"], **pose, **colours, **shapes, **finish)


# Each *_draws function consumes the next numbers of the block; keyword arguments are evaluated
# left to right, so each dict(...) draws in the order written.
def _pose_draws(d: _Draws, male: bool) -> dict:
    return dict(
        scale=d.u(0.94, 1.06), dx=d.u(-3, 3), dy=d.u(-2, 2),
        hw=d.u(44, 49) if male else d.u(40, 45), top_h=d.u(50, 55), bot_h=d.u(49, 53),
        jaw_p=d.u(2.5, 3.1) if male else d.u(1.75, 2.1),
        eye_dx=d.u(18.5, 20.5), eye_y=d.u(110.5, 113.5),
        nose_y=d.u(132, 136), mouth_y=d.u(150.5, 153.5), mouth_x=d.u(88, 90),
    )


def _colour_draws(d: _Draws, f: dict[str, bool]) -> dict:
    hair_key = next((a for a in _HAIR if f[a]), None)  # the first hair colour on wins
    t = d.u(0, 1)
    skin_normal = (_SKIN_LIGHT + (_SKIN_MID - _SKIN_LIGHT) * (t / 0.6) if t < 0.6
                   else _SKIN_MID + (_SKIN_DARK - _SKIN_MID) * ((t - 0.6) / 0.4))
    jitter = np.array([d.u(-6, 6), d.u(-6, 6), d.u(-6, 6)])
    skin = _rgb((_SKIN_PALE + jitter * 0.5) if f["Pale_Skin"] else (skin_normal + jitter))
    base, spread = _HAIR_RGB[hair_key]
    hair = _rgb(np.array(base) + d.u(-spread, spread))
    bg = _rgb(np.array(colorsys.hsv_to_rgb(d.u(0, 1), d.u(0.05, 0.45), d.u(0.35, 0.95))) * 255)
    clothes = _rgb(np.array(colorsys.hsv_to_rgb(d.u(0, 1), d.u(0.1, 0.8), d.u(0.2, 0.9))) * 255)
    iris = d.pick(_IRIS_RGB)
    frame = d.pick(_FRAME_RGB)
    hat = _rgb(np.array(d.pick(_HAT_RGB)) + d.u(-15, 15))
    hat_band = _shade(hat, d.u(0.35, 0.55))
    lipstick = _rgb((d.u(185, 215), d.u(15, 40), d.u(35, 60)))
    # Natural lips: darker and a little redder than the skin; lipstick is a saturated red.
    natural_lip = _mix(_shade(skin, 0.85), (150, 60, 62) if not f["Pale_Skin"] else (215, 140, 140), 0.4)
    return dict(skin=skin, hair=hair, brow=_shade(hair, 0.62 if hair_key in ("Blond_Hair", "Gray_Hair") else 0.8),
                facial_hair=_facial_hair_colour(hair, hair_key, skin), bg=bg, clothes=clothes, iris=iris,
                frame=frame, hat=hat, hat_band=hat_band, lip=lipstick if f["Wearing_Lipstick"] else natural_lip)


def _facial_hair_colour(hair, hair_key: str | None, skin) -> tuple[int, int, int]:
    """Darker than the hair (blond turns warmer, not olive), and at least 45 grey levels darker
    than the skin, so a beard or mustache shows on every skin tone."""
    fh = np.array(_mix(hair, (150, 100, 45), 0.5) if hair_key == "Blond_Hair" else hair, dtype=float) * 0.65
    fh *= min(1.0, (_luma(skin) - 45) / max(_luma(fh), 1.0))
    return _rgb(fh)


def _shape_draws(d: _Draws, f: dict[str, bool]) -> dict:
    male, smile, open_ = f["Male"], f["Smiling"], f["Mouth_Slightly_Open"]
    shapes = dict(
        hairline=d.u(78, 83), temple_drop=d.u(5, 10), hair_volume=d.u(4, 9) if male else d.u(8, 14),
        hair_len=d.u(178, 235), hair_flare=d.u(0, 10), part_x=d.u(-18, 18),
        bang_y=d.u(93, 97), bang_teeth=int(d.u(5, 9)), bang_phase=d.u(0, 1), brim_y=d.u(79, 84),
        eye_rx=d.u(6.8, 8.2), eye_ry=d.u(2.8, 3.8), gaze=d.u(-1.5, 1.5),
        brow_w=d.u(3.6, 4.6) if male else d.u(2.0, 2.8), brow_arch=d.u(1.0, 3.5), brow_gap=d.u(8.5, 10.5),
    )
    mw = d.u(18.5, 21.0) if smile else d.u(12.5, 15.0)
    if open_ and not smile:
        mw *= 0.85
    raise_ = d.u(5.5, 7.5) if smile else d.u(-0.5, 0.5)
    opening = d.u(7.0, 9.5)  # format 3: 1 px more than format 2
    lip_up, lip_lo = d.u(2.3, 3.5), d.u(3.0, 4.5)
    if f["Wearing_Lipstick"]:  # format 3: painted lips are fuller, so the colour survives a 32x32 face
        lip_up, lip_lo = lip_up * 1.6, lip_lo * 1.6
    return dict(shapes, mw=mw, raise_=raise_, opening=opening, lip_up=lip_up, lip_lo=lip_lo)


def _finishing_draws(d: _Draws, f: dict[str, bool]) -> dict:
    d.skip(4)  # format 1 drew teeth; their four draws stay, so every later feature keeps its values
    light = dict(light_a=d.u(-0.07, 0.07), light_b=d.u(-0.07, 0.07), light_g=d.u(0.96, 1.04),
                 noise_x=int(d.u(0, _NOISE_PAD)), noise_y=int(d.u(0, _NOISE_PAD)))
    # No_Beard = -1 means a beard, a mustache or both: with a mustache, a beard comes too at the
    # rate that makes beard and mustache independent among CelebA-like males (see sampling).
    beard_coin = d.u(0, 1)
    beard = not f["No_Beard"] and (not f["Mustache"] or beard_coin < _P_BEARD_MALE)
    # format 3's draws come last, so every earlier feature keeps its format-2 value
    return dict(light, beard=beard, blush_t=d.u(0.5, 0.6), lens=d.pick(_LENS_RGB), lens_a=d.u(0.45, 0.55))


class RenderedFace(NamedTuple):
    image: Image.Image  # 178x218 RGB
    landmarks: tuple[int, ...]  # lefteye_x, lefteye_y, righteye_x, righteye_y, nose_x, nose_y,
    #                              leftmouth_x, leftmouth_y, rightmouth_x, rightmouth_y (image px)
    bbox: tuple[int, int, int, int]  # x_1, y_1, width, height of the face (forehead to chin)


def render_face(labels: Mapping[str, int] | Sequence[int], rng: np.random.Generator) -> Image.Image:
    """Draw one aligned 178x218 RGB face showing `labels`' visible attributes (see module doc)."""
    return render_face_annotated(labels, rng).image


def render_face_annotated(labels: Mapping[str, int] | Sequence[int], rng: np.random.Generator) -> RenderedFace:
    """`render_face` plus the drawn landmark positions and face box, in image pixels.

    `labels`: name -> -1/1 (or 0/1, bool; missing names are off), or 40 values in official order.
    If several hair colours are on, the first of Black, Blond, Brown, Gray wins.
    Consumes a fixed amount of `rng` whatever the labels.
    """
    p = face_params(labels, rng)
    img = Image.new("RGB", (W, H), p.bg)
    c = _Canvas(img, p.scale, p.dx, p.dy)
    head_x, head_y = _head_outline(p)
    # Back to front: each part covers those drawn before it.
    _draw_clothes_and_back_hair(c, p)
    _draw_neck_ears_and_face(c, p, head_x, head_y)
    if p.smiling:
        _draw_blushed_cheeks(c, p)
    if p.beard:
        _draw_beard(c, p, head_x, head_y)
    _draw_front_hair(c, p)
    if p.bangs:
        _draw_bangs(c, p)
    _draw_brows_and_eyes(c, p)
    if p.eyeglasses:
        _draw_eyeglasses(img, c, p)
    _draw_nose(c, p)
    _draw_mouth(c, p)
    if p.wearing_hat:
        _draw_hat(c, p)
    landmarks, bbox = _annotations(c, p)
    return RenderedFace(_light_and_noise(img, p), landmarks, bbox)


def _head_outline(p: FaceParams) -> tuple[np.ndarray, np.ndarray]:
    """An ellipse on top; below the cheek line a superellipse (square male jaw, narrower rounded
    female chin). Returns the outline's x and y."""
    ox = p.hw * _COS
    oy = np.where(_SIN < 0, p.top_h * _SIN, 0.0)
    e = 2.0 / p.jaw_p
    ox = np.where(_LOWER_HALF, p.hw * np.sign(_COS) * np.abs(_COS) ** e, ox)
    oy = np.where(_LOWER_HALF, p.bot_h * np.abs(_SIN) ** e, oy)
    return _CX + ox, _FACE_CY + oy


def _draw_clothes_and_back_hair(c: _Canvas, p: FaceParams) -> None:
    cx, cy, hw, hv = _CX, _FACE_CY, p.hw, p.hair_volume
    c.ellipse(cx, 250, 88, 54, fill=p.clothes)
    if p.male:  # short hair: a cap a little larger than the skull, down to ear level
        c.ellipse(cx, cy - 20, hw + hv, p.top_h - 20 + hv + 6, fill=p.hair)
    else:  # long hair: the skull plus curtains down the sides, onto the shoulders
        c.ellipse(cx, cy - 15, hw + hv, p.top_h - 15 + hv + 4, fill=p.hair)
        xs = [cx - hw - hv, cx + hw + hv, cx + hw + hv + p.hair_flare, cx - hw - hv - p.hair_flare]
        ys = [cy - 20, cy - 20, p.hair_len, p.hair_len]
        c.poly(xs, ys, fill=p.hair)


def _draw_neck_ears_and_face(c: _Canvas, p: FaceParams, head_x: np.ndarray, head_y: np.ndarray) -> None:
    cx, cy, hw = _CX, _FACE_CY, p.hw
    c.poly([cx - hw * 0.5, cx + hw * 0.5, cx + hw * 0.55, cx - hw * 0.55], [cy + 20, cy + 20, 230, 230],
           fill=_shade(p.skin, 0.85))
    if p.male:  # long hair covers the ears
        for side in (-1, 1):
            c.ellipse(cx + side * hw * 0.98, 117, 5.5, 10, fill=_shade(p.skin, 0.93))
    c.poly(head_x, head_y, fill=p.skin)


def _draw_blushed_cheeks(c: _Canvas, p: FaceParams) -> None:
    """A smile (format 3) bunches the cheeks up into round blushed apples under the eyes, outside
    the smile folds: an area large enough to survive a 32x32 face, independent of the mouth's
    opening and a little below where eyeglasses reach."""
    cheek = _mix(p.skin, _BLUSH_RGB, p.blush_t)
    for side, ex in zip((-1, 1), p.eye_x):
        c.ellipse(ex + side * 2.5, p.eye_y + 18, 9.5, 5.5, fill=cheek)


def _draw_beard(c: _Canvas, p: FaceParams, head_x: np.ndarray, head_y: np.ndarray) -> None:
    """Jaw and chin below the mouth corners, leaving the upper lip (a mustache's place) bare."""
    cx, cy, hw, mw, mouth_x = _CX, _FACE_CY, p.hw, p.mw, p.mouth_x
    corner_y, lower_lip_y = p.corner_y, p.lower_lip_y
    sel = (head_y > cy + 6) & _LOWER_HALF  # the jaw from one cheek round the chin to the other
    bx, by = list(head_x[sel]), list(head_y[sel])
    bx += [cx - hw + 8, mouth_x - mw - 4, mouth_x - mw * 0.5, mouth_x + mw * 0.5, mouth_x + mw + 4, cx + hw - 8]
    by += [cy + 8, corner_y, lower_lip_y + 2, lower_lip_y + 2, corner_y, cy + 8]
    c.poly(bx, by, fill=p.facial_hair)


def _hair_edge(p: FaceParams) -> tuple[int, int, int]:
    # A dark edge along the hairline keeps hair and skin apart when their colours are close
    # (brown hair on dark skin, blond on light).
    return _shade(p.hair, 0.55)


def _draw_front_hair(c: _Canvas, p: FaceParams) -> None:
    """Hair over the forehead, down to a hairline that drops at the temples, and a few strands."""
    cx, cy = _CX, _FACE_CY
    hr, hh = p.hw + 1.5, p.top_h + 1.5
    edge_y = p.hairline + p.temple_drop
    half = hr * np.sqrt(max(0.0, 1 - ((cy - edge_y) / hh) ** 2))
    xs = np.linspace(-half, half, 15)
    top = cy - hh * np.sqrt(np.clip(1 - (xs / hr) ** 2, 0, 1))
    line = p.hairline + p.temple_drop * ((xs - p.part_x * 0.3) / half) ** 2
    line = np.minimum(line, edge_y + 2)
    c.poly(np.r_[cx + xs, cx + xs[::-1]], np.r_[np.minimum(top, line), line[::-1]], fill=p.hair)
    c.line(cx + xs, line, fill=_hair_edge(p), width=1.5)
    strand = _shade(p.hair, 0.8)
    for k in range(4):  # a few strands from the parting, for texture
        sx = cx + p.part_x + (k - 1.5) * 9
        c.line([cx + p.part_x, sx + (k - 1.5) * 6], [cy - p.top_h + 2, p.hairline + 1], fill=strand, width=1)


def _draw_bangs(c: _Canvas, p: FaceParams) -> None:
    """A fringe over the forehead with a zigzag edge, above the brows."""
    cx, cy, hairline, bang_y = _CX, _FACE_CY, p.hairline, p.bang_y
    hr, hh = p.hw + 1.5, p.top_h + 1.5
    bw = hr * np.sqrt(max(0.0, 1 - ((cy - bang_y) / hh) ** 2)) - 1
    n = 2 * p.bang_teeth + 1
    xs = np.linspace(-bw, bw, n)
    ys = bang_y - np.where(np.arange(n) % 2 == 1, 4.0, 0.0) + 1.5 * np.sin(np.arange(n) + p.bang_phase * 6)
    # A shade darker than the hair (it hangs in its own shadow), with a dark edge and strands,
    # so it shows even where hair and skin colours are close.
    edge = _hair_edge(p)
    c.poly(np.r_[cx - bw, cx + xs, cx + bw], np.r_[hairline - 6, ys, hairline - 6], fill=_shade(p.hair, 0.88))
    c.line(np.r_[cx - bw, cx + xs, cx + bw], np.r_[hairline - 2, ys, hairline - 2], fill=edge, width=1.5)
    for xk in xs[1::2]:
        c.line([cx + xk * 0.7, cx + xk], [hairline - 4, bang_y - 5], fill=edge, width=1)


def _draw_brows_and_eyes(c: _Canvas, p: FaceParams) -> None:
    eye_y, eye_rx, eye_ry = p.eye_y, p.eye_rx, p.eye_ry
    for side, ex in zip((-1, 1), p.eye_x):
        by = eye_y - p.brow_gap
        c.line([ex - side * 9, ex + side * 1, ex + side * 9.5], [by + 1.5, by - p.brow_arch, by + 0.5],
               fill=p.brow, width=p.brow_w)
        c.ellipse(ex, eye_y, eye_rx, eye_ry, fill=(238, 236, 232))
        c.ellipse(ex + p.gaze, eye_y, eye_ry + 0.6, eye_ry + 0.6, fill=p.iris)
        c.ellipse(ex + p.gaze, eye_y, 1.3, 1.3, fill=(12, 10, 10))
        c.line([ex - eye_rx, ex - eye_rx * 0.3, ex + eye_rx * 0.3, ex + eye_rx],
               [eye_y + 0.5, eye_y - eye_ry - 0.3, eye_y - eye_ry - 0.3, eye_y + 0.5],
               fill=_shade(p.skin, 0.45), width=1.4)


def _draw_eyeglasses(img: Image.Image, c: _Canvas, p: FaceParams) -> None:
    """Tinted lenses (format 3), thick dark frames, bridge and temple arms."""
    eyes = [(ex, p.eye_y) for ex in p.eye_x]
    mask = Image.new("L", (W, H), 0)
    lens_draw = ImageDraw.Draw(mask)
    for ex, ey in eyes:
        lens_draw.rounded_rectangle((float(c.x(ex - 12.5)), float(c.y(ey - 8)), float(c.x(ex + 12.5)),
                                     float(c.y(ey + 8))), radius=4 * c.s, fill=int(round(255 * p.lens_a)))
    img.paste(Image.new("RGB", (W, H), p.lens), mask=mask)
    for side, (ex, ey) in zip((-1, 1), eyes):
        c.rrect(ex - 12.5, ey - 8, ex + 12.5, ey + 8, 4, outline=p.frame, width=3.6)
        c.line([ex - side * 12.5, _CX + side * p.hw * 0.99], [ey - 3, ey - 5], fill=p.frame, width=2.2)
    c.line([eyes[0][0] + 12.5, _CX, eyes[1][0] - 12.5], [eyes[0][1] - 2, eyes[0][1] - 4, eyes[1][1] - 2],
           fill=p.frame, width=3)


def _draw_nose(c: _Canvas, p: FaceParams) -> None:
    """A faint ridge, the base and two nostrils; the landmark is the tip."""
    nx, nose_y, skin = _CX, p.nose_y, p.skin
    c.line([nx - 2, nx - 3.5], [p.eye_y + 4, nose_y - 3], fill=_shade(skin, 0.86), width=2)
    c.draw.arc([float(c.x(nx - 7)), float(c.y(nose_y - 4)), float(c.x(nx + 7)), float(c.y(nose_y + 4))],
               15, 165, fill=_shade(skin, 0.7), width=c.w(1.6))
    for side in (-1, 1):
        c.ellipse(nx + side * 3.6, nose_y + 2.2, 2.0, 1.3, fill=_shade(skin, 0.5))


def _draw_mouth(c: _Canvas, p: FaceParams) -> None:
    """Corners at corner_y; the middle line sags below them for a smile (upturned arc).

    The two mouth attributes are drawn independently of each other, so that each has one look and
    latent-space edits of one do not change the other: Smiling sets the shape (wide upturned arc
    vs narrow flat line), Mouth_Slightly_Open the same dark gap between the lips along it.
    """
    u, corner_y, mouth_x, mw = _U, p.corner_y, p.mouth_x, p.mw
    mid = corner_y + (p.raise_ + 2.5 if p.smiling else 0.0) * (1 - u ** 2)
    if p.mouth_open:
        upper, lower_ = mid - p.opening * 0.4 * _ROOT, mid + p.opening * 0.6 * _ROOT
    else:
        upper, lower_ = mid, mid
    mxs = mouth_x + mw * u
    lip_top, lip_bot = upper - p.lip_up * _ROOT, lower_ + p.lip_lo * _ROOT

    if p.smiling:  # smile folds from the nose wings round the raised mouth corners
        for side in (-1, 1):
            c.line([_CX + side * 9.5, mouth_x + side * (mw + 2.5), mouth_x + side * (mw + 1.5)],
                   [p.nose_y + 1, corner_y - 3, corner_y + 3], fill=_shade(p.skin, 0.7), width=2.2)
    if p.mustache:
        _draw_mustache(c, p, lip_top)
    c.poly(np.r_[mxs, mxs[::-1]], np.r_[lip_top, lip_bot[::-1]], fill=p.lip)
    if p.mouth_open:
        c.poly(np.r_[mxs, mxs[::-1]], np.r_[upper, lower_[::-1]], fill=(55, 18, 22))
    else:
        # format 3: a lighter, thinner line than format 2's, so that only an open mouth is dark
        c.line(mxs, mid, fill=_shade(p.lip, 0.62), width=2.0)


def _draw_mustache(c: _Canvas, p: FaceParams, lip_top: np.ndarray) -> None:
    """A thick bar between the nose and the upper lip (whose top edge is `lip_top`), drooping at the ends."""
    mouth_x, mw, corner_y = p.mouth_x, p.mw, p.corner_y
    top_y = min(p.nose_y + 4.0, float(lip_top[6]) - 6.0)
    mu = max(mw, 16.0) + 4  # as wide as a smile, even over a small mouth
    xs = [mouth_x - mu, mouth_x - mu * 0.55, mouth_x, mouth_x + mu * 0.55, mouth_x + mu]
    ys_top = [corner_y + 2, top_y + 1, top_y, top_y + 1, corner_y + 2]
    ys_bot = [corner_y + 5, float(lip_top[9]) + 1, float(lip_top[6]) + 1, float(lip_top[3]) + 1, corner_y + 5]
    c.poly(xs + [mouth_x + mu - 1, mouth_x + mw * 0.5, mouth_x, mouth_x - mw * 0.5, mouth_x - mu + 1],
           ys_top + ys_bot, fill=p.facial_hair)


def _draw_hat(c: _Canvas, p: FaceParams) -> None:
    """A coloured dome over the top of the head, a band and a brim."""
    cx, brim_y = _CX, p.brim_y
    dome_top = p.hair_top - 4  # covers all the hair on top
    rx = p.hw + p.hair_volume + 3
    box = [float(c.x(cx - rx)), float(c.y(dome_top)), float(c.x(cx + rx)), float(c.y(2 * brim_y - dome_top))]
    c.draw.chord(box, 180, 360, fill=p.hat)
    c.poly([cx - rx, cx + rx, cx + rx - 1, cx - rx + 1], [brim_y - 8, brim_y - 8, brim_y, brim_y], fill=p.hat_band)
    c.rrect(cx - rx - 10, brim_y - 2, cx + rx + 10, brim_y + 4, 3, fill=_shade(p.hat, 0.8))


def _light_and_noise(img: Image.Image, p: FaceParams) -> Image.Image:
    """A linear gradient in a random direction, a global gain, and fixed film noise."""
    noise = _noise()
    gx, gy = _light_grid
    # Fixed-point arithmetic in 16 bits (gain * 128 <= 151, times 255 fits in uint16): ~3x faster
    # than floats.
    gain = ((p.light_g + p.light_a * gx + p.light_b * gy) * 128).astype(np.uint16)
    arr = np.asarray(img).astype(np.uint16)
    arr *= gain[..., None]
    arr >>= 7
    arr = arr.astype(np.int16)
    arr += noise[p.noise_y:p.noise_y + H, p.noise_x:p.noise_x + W]
    np.clip(arr, 0, 255, out=arr)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def _annotations(c: _Canvas, p: FaceParams) -> tuple[tuple[int, ...], tuple[int, int, int, int]]:
    """The landmarks (eyes, nose tip, mouth corners) and the face box, in image pixels."""
    def to_img(px, py):
        return int(round(float(c.x(px)))), int(round(float(c.y(py))))

    (left_x, right_x), corner_y = p.eye_x, p.corner_y
    lm = (*to_img(left_x, p.eye_y), *to_img(right_x, p.eye_y), *to_img(_CX, p.nose_y),
          *to_img(p.mouth_x - p.mw, corner_y), *to_img(p.mouth_x + p.mw, corner_y))
    x1, y1 = to_img(_CX - p.hw, _FACE_CY - p.top_h)
    x2, y2 = to_img(_CX + p.hw, _FACE_CY + p.bot_h)
    return lm, (x1, y1, x2 - x1, y2 - y1)


# ---------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------

_LANDMARK_NAMES = ("lefteye_x", "lefteye_y", "righteye_x", "righteye_y", "nose_x", "nose_y",
                   "leftmouth_x", "leftmouth_y", "rightmouth_x", "rightmouth_y")
_BBOX_NAMES = ("x_1", "y_1", "width", "height")
_CHUNK = 50  # images per task handed to a worker process


def _paths(out: Path, layout: str) -> tuple[Path, Path]:
    """(folder of the annotation files and the marker, folder of the JPEGs) for a layout."""
    if layout == "official":
        return out, out / "img_align_celeba"
    if layout == "folder":
        return out, out
    if layout == "torchvision":
        return out / "celeba", out / "celeba" / "img_align_celeba"
    return out, out / "img_align_celeba" / "img_align_celeba"  # kaggle


def _image_name(k: int) -> str:
    return f"{k:06d}.jpg"


def _face_rng(seed: int, k: int) -> np.random.Generator:
    """The generator of image k (1-based): depends only on (seed, k), never on the workers."""
    return np.random.default_rng(np.random.SeedSequence([seed, k]))


def _render_range(task: tuple[int, int, int, int, str]):
    """Worker: render and save images start..stop-1 (1-based ids); return their annotations."""
    seed, start, stop, n_identities, img_dir = task
    count = stop - start
    attrs = np.empty((count, len(ATTRIBUTE_NAMES)), dtype=np.int8)
    landmarks = np.empty((count, 10), dtype=np.int32)
    bboxes = np.empty((count, 4), dtype=np.int32)
    identities = np.empty(count, dtype=np.int32)
    for j, k in enumerate(range(start, stop)):
        rng = _face_rng(seed, k)
        labels = sample_attributes(rng)
        face = render_face_annotated(labels, rng)
        identities[j] = rng.integers(1, n_identities + 1)
        face.image.save(os.path.join(img_dir, _image_name(k)), "JPEG", quality=JPEG_QUALITY)
        attrs[j] = [labels[a] for a in ATTRIBUTE_NAMES]
        landmarks[j] = face.landmarks
        bboxes[j] = face.bbox
    return start, attrs, landmarks, bboxes, identities


def partition(n: int) -> np.ndarray:
    """Split numbers (0 train, 1 valid, 2 test) by id order in CelebA's proportions; with n >= 3
    every split gets at least one image (with n < 3 all images are train)."""
    if n < 3:
        return np.zeros(n, dtype=np.int64)
    n_valid = max(1, round(n * _CELEBA_VALID / _CELEBA_TOTAL))
    n_train = min(round(n * _CELEBA_TRAIN / _CELEBA_TOTAL), n - n_valid - 1)
    n_test = n - n_train - n_valid
    return np.repeat([0, 1, 2], [n_train, n_valid, n_test])


def _write_annotations(ann: Path, layout: str, names: list[str], attrs: np.ndarray, part: np.ndarray,
                       identities: np.ndarray, bboxes: np.ndarray, landmarks: np.ndarray) -> None:
    """The five annotation files, formatted as CelebA's own (official/torchvision) or Kaggle's copy."""
    n = len(names)
    if layout == "folder":  # a plain folder of faces: one labels.csv (dfc_vae.sources.folder), 0/1 values
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
            if not info or info.get("generator") != "dfc_vae.synth" or info.get("layout") not in LAYOUTS:
                raise UserError(f"{path} is damaged; delete {out} (or choose another --out) and render again")
            return info["layout"], path
    return None


def _is_complete(out: Path, n: int, seed: int, layout: str) -> bool:
    """True when `out` already holds exactly the dataset asked for (checked cheaply)."""
    ann, img_dir = _paths(out, layout)
    info = _read_json(ann / MARKER_NAME)
    wanted = {"generator": "dfc_vae.synth", "format_version": FORMAT_VERSION, "n": n, "seed": seed, "layout": layout}
    if not info or any(info.get(k) != v for k, v in wanted.items()):
        return False
    if not all((ann / f).is_file() for f in _annotation_names(layout)):
        return False
    return (img_dir / _image_name(1)).is_file() and (img_dir / _image_name(n)).is_file() \
        and not (img_dir / _image_name(n + 1)).exists()


def _remove_previous(out: Path, layout: str) -> None:
    """Delete what an earlier render_celeba wrote into `out` (only our files), marker first so an
    interruption never leaves a stale 'complete' marker."""
    ann, img_dir = _paths(out, layout)
    (ann / MARKER_NAME).unlink(missing_ok=True)
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


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise UserError(f"{name} must be a whole number >= {minimum}, got {value!r}; pass e.g. {name} {max(minimum, 1)}")
    return int(value)


def _clear_for(out: Path, n: int, seed: int, layout: str) -> bool:
    """Make `out` ready for this dataset: True if it already holds it; otherwise remove an earlier
    synthetic dataset there (complete or interrupted) and refuse a file or any other non-empty folder."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; pass a folder (new or empty) for the synthetic faces")
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


def _render_all(img_dir: Path, n: int, seed: int, workers: int, progress: bool):
    """Render and save images 1..n into `img_dir`, in chunks over `workers` processes; return their
    (attributes, landmarks, boxes, identities), rows in id order whatever order the chunks finish in."""
    n_identities = max(1, n // 20)
    tasks = [(seed, a, min(a + _CHUNK, n + 1), n_identities, str(img_dir)) for a in range(1, n + 1, _CHUNK)]
    attrs = np.empty((n, len(ATTRIBUTE_NAMES)), dtype=np.int8)
    landmarks = np.empty((n, 10), dtype=np.int32)
    bboxes = np.empty((n, 4), dtype=np.int32)
    identities = np.empty(n, dtype=np.int32)

    from tqdm import tqdm

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
    n = _check_int("--n", n, 1)
    seed = _check_int("--seed", seed, 0)
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    workers = os.cpu_count() or 1 if workers is None else _check_int("--workers", workers, 1)
    out = Path(out_dir).expanduser()
    if _clear_for(out, n, seed, layout):
        return out
    ann, img_dir = _paths(out, layout)
    try:
        img_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create {img_dir}: {e.strerror or e}; choose a writable --out folder") from e
    settings = {"generator": "dfc_vae.synth", "format_version": FORMAT_VERSION, "n": n, "seed": seed, "layout": layout}
    write_json(out / PARTIAL_NAME, settings)  # says "ours, unfinished" should we be interrupted

    attrs, landmarks, bboxes, identities = _render_all(img_dir, n, seed, workers, progress)
    names = [_image_name(k) for k in range(1, n + 1)]
    _write_annotations(ann, layout, names, attrs, partition(n), identities, bboxes, landmarks)
    write_json(ann / MARKER_NAME, {**settings, "visible_attributes": list(VISIBLE_ATTRIBUTES)})  # last: complete
    (out / PARTIAL_NAME).unlink(missing_ok=True)
    return out


# ---------------------------------------------------------------------------------------------
# The picture in assets/
# ---------------------------------------------------------------------------------------------

_SHORT = {"Male": "male", "Smiling": "smiling", "Mouth_Slightly_Open": "mouth open", "Eyeglasses": "glasses",
          "Black_Hair": "black hair", "Blond_Hair": "blond hair", "Brown_Hair": "brown hair", "Gray_Hair": "gray hair",
          "Bangs": "bangs", "Wearing_Hat": "hat", "Pale_Skin": "pale skin", "Mustache": "mustache",
          "Wearing_Lipstick": "lipstick"}


def _caption(labels: Mapping[str, int]) -> list[str]:
    """The visible attributes that are on, as short words, wrapped into short lines. 'beard' is
    No_Beard = -1 without a mustache (with one, the face may or may not also have a beard)."""
    words = [_SHORT[a] for a in VISIBLE_ATTRIBUTES if a in _SHORT and labels[a] > 0]
    if labels["No_Beard"] < 0 and labels["Mustache"] < 0:
        words.append("beard")
    lines, line = [], ""
    for w in words:
        if line and len(line) + len(w) + 2 > 27:
            lines.append(line + ",")
            line = w
        else:
            line = f"{line}, {w}" if line else w
    return lines + [line]


def _has(labels: Mapping[str, int], what: str) -> bool:
    if what == "beard":
        return labels["No_Beard"] < 0 and labels["Mustache"] < 0
    return labels[what] > 0


def contact_sheet(path: str | os.PathLike, seed: int = 0, count: int = 32, columns: int = 8, pool: int = 3000) -> Path:
    """Draw `count` faces of the dataset with this seed, each captioned with its visible
    attributes, into a PNG at `path`. Faces are picked among the first `pool` ids so that every
    visible attribute appears a few times (rare ones, such as hats, would often be missing from
    32 consecutive faces); each is exactly the image render_celeba(seed=seed) writes for that id.
    """
    labels = {}
    for k in range(1, pool + 1):
        rng = _face_rng(seed, k)
        labels[k] = sample_attributes(rng)
    chosen: list[int] = []
    wanted = sorted([a for a in VISIBLE_ATTRIBUTES if a != "No_Beard"] + ["beard"],
                    key=lambda a: sum(_has(lab, a) for lab in labels.values()))
    for what in wanted:  # the rarest first: the first ids showing it, until it is shown twice
        for k in labels:
            if len(chosen) >= count or sum(_has(labels[j], what) for j in chosen) >= 2:
                break
            if _has(labels[k], what) and k not in chosen:
                chosen.append(k)
    chosen += [k for k in labels if k not in chosen][: count - len(chosen)]
    chosen.sort()

    font = ImageFont.load_default(size=13)
    title_font = ImageFont.load_default(size=22)
    cell_w, cell_h, cap_h, top = W + 8, H + 8, 62, 44
    rows = -(-len(chosen) // columns)
    sheet = Image.new("RGB", (columns * cell_w + 8, top + rows * (cell_h + cap_h)), (250, 250, 250))
    draw = ImageDraw.Draw(sheet)
    draw.text((10, 10), "synthetic faces rendered by dfc_vae.synth (not CelebA), captioned with their visible "
              f"attributes; seed {seed}, ids {chosen[0]}-{chosen[-1]}", fill=(20, 20, 20), font=title_font)
    for i, k in enumerate(chosen):
        rng = _face_rng(seed, k)
        lab = sample_attributes(rng)
        face = render_face(lab, rng)
        x, y = 8 + (i % columns) * cell_w, top + (i // columns) * (cell_h + cap_h)
        sheet.paste(face, (x, y))
        cap = [_image_name(k)] + _caption(lab)
        draw.multiline_text((x, y + H + 2), "\n".join(cap[:4]), fill=(30, 30, 30), font=font, spacing=1)
    buf = io.BytesIO()
    sheet.save(buf, "PNG", optimize=True)
    write_bytes(path, buf.getvalue())
    return Path(path)
