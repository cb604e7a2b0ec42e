"""The palettes a face's colours are drawn from, and the small colour arithmetic (clip, shade,
mix, luma) that the parameters and the drawing share."""

from __future__ import annotations

import numpy as np

HAIR_RGB = {  # base colour and per-face jitter range; ranges do not overlap
    "Black_Hair": ((30, 25, 22), 8), "Brown_Hair": ((105, 66, 38), 10),
    "Blond_Hair": ((224, 194, 128), 10), "Gray_Hair": ((168, 168, 171), 14),
    None: ((160, 62, 30), 10),  # red / auburn: every face with none of the four
}
HAT_RGB = ((35, 75, 195), (40, 145, 70), (115, 50, 160), (20, 135, 145), (195, 40, 135))
IRIS_RGB = ((90, 55, 30), (45, 32, 25), (70, 110, 165), (80, 120, 80), (120, 90, 45))
FRAME_RGB = ((18, 18, 20), (45, 30, 22), (25, 28, 45), (55, 55, 58))
# Lens tints: blue / teal / violet greys, away from every skin hue, so a tinted lens shows on
# light and dark skin alike.
LENS_RGB = ((110, 145, 200), (90, 160, 165), (140, 125, 195))
BLUSH_RGB = (235, 65, 110)  # a smile's cheeks move 50-60% of the way from the skin to it
# Non-pale skin runs from light tan to dark brown; pale skin is a separate, much whiter tone
# (high blue channel), so no non-pale face ever falls in the pale range.
SKIN_LIGHT, SKIN_MID, SKIN_DARK = np.array((226, 182, 150.)), np.array((196, 142, 108.)), np.array((112, 74, 52.))
SKIN_PALE = np.array((247, 229, 220.))


# Colour helpers in plain Python: numpy's per-call overhead dominates on 3-element colours.
def rgb(c) -> tuple[int, int, int]:
    return tuple(min(255, max(0, int(round(float(v))))) for v in c)


def shade(c, f) -> tuple[int, int, int]:
    return rgb([v * f for v in c])


def luma(c) -> float:
    return 0.299 * float(c[0]) + 0.587 * float(c[1]) + 0.114 * float(c[2])


def mix(a, b, t) -> tuple[int, int, int]:
    return rgb([u * (1 - t) + v * t for u, v in zip(a, b)])
