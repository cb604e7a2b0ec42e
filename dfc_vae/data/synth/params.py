"""Everything random about one face, drawn up front: the canonical frame the face is laid out in,
the `FaceParams` record and `face_params`, which draws its numbers in one fixed order.

The order of the draws is part of the dataset format: the k-th number of a face's block always
feeds the same feature, whatever the labels, so flipping a label changes only what that label
draws, and every seed keeps its faces.
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from dfc_vae.data.celeba import ALIGNED_SIZE
from dfc_vae.data.synth.colours import (FRAME_RGB, HAIR_RGB, HAT_RGB, IRIS_RGB, LENS_RGB, SKIN_DARK, SKIN_LIGHT,
                                        SKIN_MID, SKIN_PALE, luma, mix, rgb, shade)
from dfc_vae.data.synth.labels import HAIR_COLOURS, P_BEARD_MALE, flags

W, H = ALIGNED_SIZE
# Canonical geometry, in aligned-image pixels, before the per-face shift and scale: where CelebA's
# alignment puts eyes (69,112)/(108,112), nose (89,134) and mouth corners (72,152)/(106,152).
PIVOT = (89.0, 125.0)  # the per-face scale is about this point
CX = PIVOT[0]  # the face's vertical centre line
FACE_CY = 120.0  # centre of the head outline (widest line of the cheeks)
NOISE_PAD = 24  # the noise image is this much bigger than a face; each face takes a window of it


class Draws:
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
        """Pass over `count` numbers, so the features drawn after them keep their place in the block."""
        self._i += count


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
    top_h: float  # forehead top = FACE_CY - top_h
    bot_h: float  # chin = FACE_CY + bot_h
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
    # light and noise, then the smile's cheeks and the lenses
    light_a: float
    light_b: float
    light_g: float
    noise_x: int
    noise_y: int
    blush_t: float  # how far a smile's cheeks move towards BLUSH_RGB
    lens: tuple[int, int, int]  # eyeglasses: tint colour and opacity
    lens_a: float

    @property
    def eye_x(self) -> tuple[float, float]:
        return (CX - 0.5 - self.eye_dx, CX - 0.5 + self.eye_dx)

    @property
    def corner_y(self) -> float:  # the mouth corners
        return self.mouth_y - self.raise_

    @property
    def lower_lip_y(self) -> float:  # just below the lower lip, where a beard starts
        return self.mouth_y + (self.opening * 0.6 if self.mouth_open else 0) + self.lip_lo + 2

    @property
    def hair_top(self) -> float:  # the top of the hair behind the head
        return FACE_CY - self.top_h - self.hair_volume - (6 if self.male else 4)


def face_params(labels: Mapping[str, int] | Sequence[int], rng: np.random.Generator) -> FaceParams:
    """Draw everything random about one face, for `labels` (as `render_face_annotated` takes them).

    Consumes the same fixed block of `rng` whatever the labels. The calls below run in the order
    of the draws: the k-th number of the block always feeds the same feature, so reordering them
    (or the draws inside them) would change every seed's faces.
    """
    f = flags(labels)
    d = Draws(rng)
    pose = _pose_draws(d, f["Male"])
    colours = _colour_draws(d, f)
    shapes = _shape_draws(d, f)
    finish = _finishing_draws(d, f)
    return FaceParams(male=f["Male"], smiling=f["Smiling"], mouth_open=f["Mouth_Slightly_Open"],
                      eyeglasses=f["Eyeglasses"], bangs=f["Bangs"], wearing_hat=f["Wearing_Hat"],
                      mustache=f["Mustache"], **pose, **colours, **shapes, **finish)


# Each *_draws function consumes the next numbers of the block; keyword arguments are evaluated
# left to right, so each dict(...) draws in the order written.
def _pose_draws(d: Draws, male: bool) -> dict:
    return dict(
        scale=d.u(0.94, 1.06), dx=d.u(-3, 3), dy=d.u(-2, 2),
        hw=d.u(44, 49) if male else d.u(40, 45), top_h=d.u(50, 55), bot_h=d.u(49, 53),
        jaw_p=d.u(2.5, 3.1) if male else d.u(1.75, 2.1),
        eye_dx=d.u(18.5, 20.5), eye_y=d.u(110.5, 113.5),
        nose_y=d.u(132, 136), mouth_y=d.u(150.5, 153.5), mouth_x=d.u(88, 90),
    )


def _colour_draws(d: Draws, f: dict[str, bool]) -> dict:
    hair_key = next((a for a in HAIR_COLOURS if f[a]), None)  # the first hair colour on wins
    t = d.u(0, 1)
    skin_normal = (SKIN_LIGHT + (SKIN_MID - SKIN_LIGHT) * (t / 0.6) if t < 0.6
                   else SKIN_MID + (SKIN_DARK - SKIN_MID) * ((t - 0.6) / 0.4))
    jitter = np.array([d.u(-6, 6), d.u(-6, 6), d.u(-6, 6)])
    skin = rgb((SKIN_PALE + jitter * 0.5) if f["Pale_Skin"] else (skin_normal + jitter))
    base, spread = HAIR_RGB[hair_key]
    hair = rgb(np.array(base) + d.u(-spread, spread))
    bg = rgb(np.array(colorsys.hsv_to_rgb(d.u(0, 1), d.u(0.05, 0.45), d.u(0.35, 0.95))) * 255)
    clothes = rgb(np.array(colorsys.hsv_to_rgb(d.u(0, 1), d.u(0.1, 0.8), d.u(0.2, 0.9))) * 255)
    iris = d.pick(IRIS_RGB)
    frame = d.pick(FRAME_RGB)
    hat = rgb(np.array(d.pick(HAT_RGB)) + d.u(-15, 15))
    hat_band = shade(hat, d.u(0.35, 0.55))
    lipstick = rgb((d.u(185, 215), d.u(15, 40), d.u(35, 60)))
    # Natural lips: darker and a little redder than the skin; lipstick is a saturated red.
    natural_lip = mix(shade(skin, 0.85), (150, 60, 62) if not f["Pale_Skin"] else (215, 140, 140), 0.4)
    return dict(skin=skin, hair=hair, brow=shade(hair, 0.62 if hair_key in ("Blond_Hair", "Gray_Hair") else 0.8),
                facial_hair=_facial_hair_colour(hair, hair_key, skin), bg=bg, clothes=clothes, iris=iris,
                frame=frame, hat=hat, hat_band=hat_band, lip=lipstick if f["Wearing_Lipstick"] else natural_lip)


def _facial_hair_colour(hair, hair_key: str | None, skin) -> tuple[int, int, int]:
    """Darker than the hair (blond turns warmer, not olive), and at least 45 grey levels darker
    than the skin, so a beard or mustache shows on every skin tone."""
    fh = np.array(mix(hair, (150, 100, 45), 0.5) if hair_key == "Blond_Hair" else hair, dtype=float) * 0.65
    fh *= min(1.0, (luma(skin) - 45) / max(luma(fh), 1.0))
    return rgb(fh)


def _shape_draws(d: Draws, f: dict[str, bool]) -> dict:
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
    opening = d.u(7.0, 9.5)
    lip_up, lip_lo = d.u(2.3, 3.5), d.u(3.0, 4.5)
    if f["Wearing_Lipstick"]:  # painted lips are fuller, so the colour survives a 32x32 face
        lip_up, lip_lo = lip_up * 1.6, lip_lo * 1.6
    return dict(shapes, mw=mw, raise_=raise_, opening=opening, lip_up=lip_up, lip_lo=lip_lo)


def _finishing_draws(d: Draws, f: dict[str, bool]) -> dict:
    # Four numbers of the block feed nothing: skipping them keeps every later feature at its place,
    # so each seed draws the faces of the current format_version (docs/synthetic_faces.md).
    d.skip(4)
    light = dict(light_a=d.u(-0.07, 0.07), light_b=d.u(-0.07, 0.07), light_g=d.u(0.96, 1.04),
                 noise_x=int(d.u(0, NOISE_PAD)), noise_y=int(d.u(0, NOISE_PAD)))
    # No_Beard = -1 means a beard, a mustache or both: with a mustache, a beard comes too at the
    # rate that makes beard and mustache independent among CelebA-like males (see labels.py).
    beard_coin = d.u(0, 1)
    beard = not f["No_Beard"] and (not f["Mustache"] or beard_coin < P_BEARD_MALE)
    return dict(light, beard=beard, blush_t=d.u(0.5, 0.6), lens=d.pick(LENS_RGB), lens_a=d.u(0.45, 0.55))
