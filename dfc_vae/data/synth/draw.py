"""The drawing of a face, part by part: a canvas in canonical coordinates and one function per
part (clothes and back hair, head, cheeks, beard, front hair, bangs, eyes, eyeglasses, nose,
mouth, mustache, hat). Each takes the face's `FaceParams` and draws no random numbers."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

from dfc_vae.data.synth.colours import BLUSH_RGB, mix, shade
from dfc_vae.data.synth.params import CX, FACE_CY, PIVOT, FaceParams, H, W

_N_OUTLINE = 48
_ANG = np.linspace(0, 2 * np.pi, _N_OUTLINE, endpoint=False)
_COS, _SIN = np.cos(_ANG), np.sin(_ANG)
_LOWER_HALF = _SIN >= 0  # head outline points below the cheek line
_U = np.linspace(-1.0, 1.0, 13)  # parameter along the mouth, corner to corner
_ROOT = np.sqrt(np.clip(1 - _U ** 2, 0, 1))


class Canvas:
    """ImageDraw in canonical coordinates: every point goes through the face's shift and scale."""

    def __init__(self, image: Image.Image, scale: float, dx: float, dy: float):
        self.draw = ImageDraw.Draw(image)
        self.s, self.ox, self.oy = scale, PIVOT[0] + dx, PIVOT[1] + dy

    def x(self, x):  # a number or a numpy array
        return self.ox + self.s * (x - PIVOT[0])

    def y(self, y):
        return self.oy + self.s * (y - PIVOT[1])

    def pts(self, xs, ys) -> list[tuple[float, float]]:
        s, ox, oy, px, py = self.s, self.ox, self.oy, PIVOT[0], PIVOT[1]
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


def head_outline(p: FaceParams) -> tuple[np.ndarray, np.ndarray]:
    """An ellipse on top; below the cheek line a superellipse (square male jaw, narrower rounded
    female chin). Returns the outline's x and y."""
    ox = p.hw * _COS
    oy = np.where(_SIN < 0, p.top_h * _SIN, 0.0)
    e = 2.0 / p.jaw_p
    ox = np.where(_LOWER_HALF, p.hw * np.sign(_COS) * np.abs(_COS) ** e, ox)
    oy = np.where(_LOWER_HALF, p.bot_h * np.abs(_SIN) ** e, oy)
    return CX + ox, FACE_CY + oy


def draw_clothes(c: Canvas, p: FaceParams) -> None:
    c.ellipse(CX, 250, 88, 54, fill=p.clothes)


def draw_back_hair(c: Canvas, p: FaceParams) -> None:
    cx, cy, hw, hv = CX, FACE_CY, p.hw, p.hair_volume
    if p.male:  # short hair: a cap a little larger than the skull, down to ear level
        c.ellipse(cx, cy - 20, hw + hv, p.top_h - 20 + hv + 6, fill=p.hair)
    else:  # long hair: the skull plus curtains down the sides, onto the shoulders
        c.ellipse(cx, cy - 15, hw + hv, p.top_h - 15 + hv + 4, fill=p.hair)
        xs = [cx - hw - hv, cx + hw + hv, cx + hw + hv + p.hair_flare, cx - hw - hv - p.hair_flare]
        ys = [cy - 20, cy - 20, p.hair_len, p.hair_len]
        c.poly(xs, ys, fill=p.hair)


def draw_neck_ears_and_face(c: Canvas, p: FaceParams, head_x: np.ndarray, head_y: np.ndarray) -> None:
    cx, cy, hw = CX, FACE_CY, p.hw
    c.poly([cx - hw * 0.5, cx + hw * 0.5, cx + hw * 0.55, cx - hw * 0.55], [cy + 20, cy + 20, 230, 230],
           fill=shade(p.skin, 0.85))
    if p.male:  # long hair covers the ears
        for side in (-1, 1):
            c.ellipse(cx + side * hw * 0.98, 117, 5.5, 10, fill=shade(p.skin, 0.93))
    c.poly(head_x, head_y, fill=p.skin)


def draw_blushed_cheeks(c: Canvas, p: FaceParams) -> None:
    """A smile bunches the cheeks up into round blushed apples under the eyes, outside the smile
    folds: an area large enough to survive a 32x32 face, independent of the mouth's opening and a
    little below where eyeglasses reach."""
    cheek = mix(p.skin, BLUSH_RGB, p.blush_t)
    for side, ex in zip((-1, 1), p.eye_x):
        c.ellipse(ex + side * 2.5, p.eye_y + 18, 9.5, 5.5, fill=cheek)


def draw_beard(c: Canvas, p: FaceParams, head_x: np.ndarray, head_y: np.ndarray) -> None:
    """Jaw and chin below the mouth corners, leaving the upper lip (a mustache's place) bare."""
    cx, cy, hw, mw, mouth_x = CX, FACE_CY, p.hw, p.mw, p.mouth_x
    corner_y, lower_lip_y = p.corner_y, p.lower_lip_y
    sel = (head_y > cy + 6) & _LOWER_HALF  # the jaw from one cheek round the chin to the other
    bx, by = list(head_x[sel]), list(head_y[sel])
    bx += [cx - hw + 8, mouth_x - mw - 4, mouth_x - mw * 0.5, mouth_x + mw * 0.5, mouth_x + mw + 4, cx + hw - 8]
    by += [cy + 8, corner_y, lower_lip_y + 2, lower_lip_y + 2, corner_y, cy + 8]
    c.poly(bx, by, fill=p.facial_hair)


def _hair_edge(p: FaceParams) -> tuple[int, int, int]:
    # A dark edge along the hairline keeps hair and skin apart when their colours are close
    # (brown hair on dark skin, blond on light).
    return shade(p.hair, 0.55)


def draw_front_hair(c: Canvas, p: FaceParams) -> None:
    """Hair over the forehead, down to a hairline that drops at the temples, and a few strands."""
    cx, cy = CX, FACE_CY
    hr, hh = p.hw + 1.5, p.top_h + 1.5
    edge_y = p.hairline + p.temple_drop
    half = hr * np.sqrt(max(0.0, 1 - ((cy - edge_y) / hh) ** 2))
    xs = np.linspace(-half, half, 15)
    top = cy - hh * np.sqrt(np.clip(1 - (xs / hr) ** 2, 0, 1))
    line = p.hairline + p.temple_drop * ((xs - p.part_x * 0.3) / half) ** 2
    line = np.minimum(line, edge_y + 2)
    c.poly(np.r_[cx + xs, cx + xs[::-1]], np.r_[np.minimum(top, line), line[::-1]], fill=p.hair)
    c.line(cx + xs, line, fill=_hair_edge(p), width=1.5)
    strand = shade(p.hair, 0.8)
    for k in range(4):  # a few strands from the parting, for texture
        sx = cx + p.part_x + (k - 1.5) * 9
        c.line([cx + p.part_x, sx + (k - 1.5) * 6], [cy - p.top_h + 2, p.hairline + 1], fill=strand, width=1)


def draw_bangs(c: Canvas, p: FaceParams) -> None:
    """A fringe over the forehead with a zigzag edge, above the brows."""
    cx, cy, hairline, bang_y = CX, FACE_CY, p.hairline, p.bang_y
    hr, hh = p.hw + 1.5, p.top_h + 1.5
    bw = hr * np.sqrt(max(0.0, 1 - ((cy - bang_y) / hh) ** 2)) - 1
    n = 2 * p.bang_teeth + 1
    xs = np.linspace(-bw, bw, n)
    ys = bang_y - np.where(np.arange(n) % 2 == 1, 4.0, 0.0) + 1.5 * np.sin(np.arange(n) + p.bang_phase * 6)
    # A shade darker than the hair (it hangs in its own shadow), with a dark edge and strands,
    # so it shows even where hair and skin colours are close.
    edge = _hair_edge(p)
    c.poly(np.r_[cx - bw, cx + xs, cx + bw], np.r_[hairline - 6, ys, hairline - 6], fill=shade(p.hair, 0.88))
    c.line(np.r_[cx - bw, cx + xs, cx + bw], np.r_[hairline - 2, ys, hairline - 2], fill=edge, width=1.5)
    for xk in xs[1::2]:
        c.line([cx + xk * 0.7, cx + xk], [hairline - 4, bang_y - 5], fill=edge, width=1)


def draw_brows(c: Canvas, p: FaceParams) -> None:
    by = p.eye_y - p.brow_gap
    for side, ex in zip((-1, 1), p.eye_x):
        c.line([ex - side * 9, ex + side * 1, ex + side * 9.5], [by + 1.5, by - p.brow_arch, by + 0.5],
               fill=p.brow, width=p.brow_w)


def draw_eyes(c: Canvas, p: FaceParams) -> None:
    """Drawn after both brows: a brow never reaches the other side's eye, so the order changes no pixel."""
    eye_y, eye_rx, eye_ry = p.eye_y, p.eye_rx, p.eye_ry
    for ex in p.eye_x:
        c.ellipse(ex, eye_y, eye_rx, eye_ry, fill=(238, 236, 232))
        c.ellipse(ex + p.gaze, eye_y, eye_ry + 0.6, eye_ry + 0.6, fill=p.iris)
        c.ellipse(ex + p.gaze, eye_y, 1.3, 1.3, fill=(12, 10, 10))
        c.line([ex - eye_rx, ex - eye_rx * 0.3, ex + eye_rx * 0.3, ex + eye_rx],
               [eye_y + 0.5, eye_y - eye_ry - 0.3, eye_y - eye_ry - 0.3, eye_y + 0.5],
               fill=shade(p.skin, 0.45), width=1.4)


def draw_lenses(img: Image.Image, c: Canvas, p: FaceParams) -> None:
    """Eyeglasses' tinted lenses: the face behind them blended towards the tint (translucent)."""
    mask = Image.new("L", (W, H), 0)
    lens_draw = ImageDraw.Draw(mask)
    for ex in p.eye_x:
        ey = p.eye_y
        lens_draw.rounded_rectangle((float(c.x(ex - 12.5)), float(c.y(ey - 8)), float(c.x(ex + 12.5)),
                                     float(c.y(ey + 8))), radius=4 * c.s, fill=int(round(255 * p.lens_a)))
    img.paste(Image.new("RGB", (W, H), p.lens), mask=mask)


def draw_frames(c: Canvas, p: FaceParams) -> None:
    """Eyeglasses' thick dark frames round the lenses, the bridge and the temple arms."""
    eyes = [(ex, p.eye_y) for ex in p.eye_x]
    for side, (ex, ey) in zip((-1, 1), eyes):
        c.rrect(ex - 12.5, ey - 8, ex + 12.5, ey + 8, 4, outline=p.frame, width=3.6)
        c.line([ex - side * 12.5, CX + side * p.hw * 0.99], [ey - 3, ey - 5], fill=p.frame, width=2.2)
    c.line([eyes[0][0] + 12.5, CX, eyes[1][0] - 12.5], [eyes[0][1] - 2, eyes[0][1] - 4, eyes[1][1] - 2],
           fill=p.frame, width=3)


def draw_nose(c: Canvas, p: FaceParams) -> None:
    """A faint ridge, the base and two nostrils; the landmark is the tip."""
    nx, nose_y, skin = CX, p.nose_y, p.skin
    c.line([nx - 2, nx - 3.5], [p.eye_y + 4, nose_y - 3], fill=shade(skin, 0.86), width=2)
    c.draw.arc([float(c.x(nx - 7)), float(c.y(nose_y - 4)), float(c.x(nx + 7)), float(c.y(nose_y + 4))],
               15, 165, fill=shade(skin, 0.7), width=c.w(1.6))
    for side in (-1, 1):
        c.ellipse(nx + side * 3.6, nose_y + 2.2, 2.0, 1.3, fill=shade(skin, 0.5))


class MouthCurves(NamedTuple):
    """The mouth's curves, corner to corner (13 points each): where the lips meet or part, and the lips' edges."""

    xs: np.ndarray
    mid: np.ndarray  # the line where closed lips meet
    upper: np.ndarray  # the opening's top and bottom (equal to mid when closed)
    lower: np.ndarray
    lip_top: np.ndarray
    lip_bot: np.ndarray


def mouth_curves(p: FaceParams) -> MouthCurves:
    """Corners at corner_y; the middle line sags below them for a smile (upturned arc).

    The two mouth attributes are drawn independently of each other, so that each has one look and
    latent-space edits of one do not change the other: Smiling sets the shape (wide upturned arc
    vs narrow flat line), Mouth_Slightly_Open the same dark gap between the lips along it.
    """
    u = _U
    mid = p.corner_y + (p.raise_ + 2.5 if p.smiling else 0.0) * (1 - u ** 2)
    if p.mouth_open:
        upper, lower_ = mid - p.opening * 0.4 * _ROOT, mid + p.opening * 0.6 * _ROOT
    else:
        upper, lower_ = mid, mid
    return MouthCurves(p.mouth_x + p.mw * u, mid, upper, lower_, upper - p.lip_up * _ROOT, lower_ + p.lip_lo * _ROOT)


def draw_smile_folds(c: Canvas, p: FaceParams) -> None:
    """Smile folds from the nose wings round the raised mouth corners."""
    mouth_x, mw, corner_y = p.mouth_x, p.mw, p.corner_y
    for side in (-1, 1):
        c.line([CX + side * 9.5, mouth_x + side * (mw + 2.5), mouth_x + side * (mw + 1.5)],
               [p.nose_y + 1, corner_y - 3, corner_y + 3], fill=shade(p.skin, 0.7), width=2.2)


def draw_lips(c: Canvas, p: FaceParams) -> None:
    m = mouth_curves(p)
    c.poly(np.r_[m.xs, m.xs[::-1]], np.r_[m.lip_top, m.lip_bot[::-1]], fill=p.lip)
    if p.mouth_open:
        c.poly(np.r_[m.xs, m.xs[::-1]], np.r_[m.upper, m.lower[::-1]], fill=(55, 18, 22))
    else:
        # a light, thin line where the lips meet, so that only an open mouth is dark
        c.line(m.xs, m.mid, fill=shade(p.lip, 0.62), width=2.0)


def draw_mustache(c: Canvas, p: FaceParams) -> None:
    """A thick bar between the nose and the upper lip, drooping at the ends (drawn before the lips)."""
    lip_top = mouth_curves(p).lip_top
    mouth_x, mw, corner_y = p.mouth_x, p.mw, p.corner_y
    top_y = min(p.nose_y + 4.0, float(lip_top[6]) - 6.0)
    mu = max(mw, 16.0) + 4  # as wide as a smile, even over a small mouth
    xs = [mouth_x - mu, mouth_x - mu * 0.55, mouth_x, mouth_x + mu * 0.55, mouth_x + mu]
    ys_top = [corner_y + 2, top_y + 1, top_y, top_y + 1, corner_y + 2]
    ys_bot = [corner_y + 5, float(lip_top[9]) + 1, float(lip_top[6]) + 1, float(lip_top[3]) + 1, corner_y + 5]
    c.poly(xs + [mouth_x + mu - 1, mouth_x + mw * 0.5, mouth_x, mouth_x - mw * 0.5, mouth_x - mu + 1],
           ys_top + ys_bot, fill=p.facial_hair)


def draw_hat(c: Canvas, p: FaceParams) -> None:
    """A coloured dome over the top of the head, a band and a brim."""
    cx, brim_y = CX, p.brim_y
    dome_top = p.hair_top - 4  # covers all the hair on top
    rx = p.hw + p.hair_volume + 3
    box = [float(c.x(cx - rx)), float(c.y(dome_top)), float(c.x(cx + rx)), float(c.y(2 * brim_y - dome_top))]
    c.draw.chord(box, 180, 360, fill=p.hat)
    c.poly([cx - rx, cx + rx, cx + rx - 1, cx - rx + 1], [brim_y - 8, brim_y - 8, brim_y, brim_y], fill=p.hat_band)
    c.rrect(cx - rx - 10, brim_y - 2, cx + rx + 10, brim_y + 4, 3, fill=shade(p.hat, 0.8))
