"""The contact sheet (assets/synthetic_faces.png): faces of one seed's dataset, each captioned with
its visible attributes, picked so that every visible attribute shows."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from dfc_vae.data.synth.dataset import face_rng, image_name
from dfc_vae.data.synth.face import render_face
from dfc_vae.data.synth.labels import VISIBLE_ATTRIBUTES, sample_attributes
from dfc_vae.data.synth.params import H, W
from dfc_vae.util.fileio import write_bytes

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


def _choose(seed: int, count: int, pool: int) -> list[int]:
    """`count` ids among 1..pool, in id order: for each visible attribute, rarest first, the first
    ids showing it until it is shown twice; then the lowest ids left."""
    labels = {}
    for k in range(1, pool + 1):
        rng = face_rng(seed, k)
        labels[k] = sample_attributes(rng)
    chosen: list[int] = []
    wanted = sorted([a for a in VISIBLE_ATTRIBUTES if a != "No_Beard"] + ["beard"],
                    key=lambda a: sum(_has(lab, a) for lab in labels.values()))
    for what in wanted:
        for k in labels:
            if len(chosen) >= count or sum(_has(labels[j], what) for j in chosen) >= 2:
                break
            if _has(labels[k], what) and k not in chosen:
                chosen.append(k)
    chosen += [k for k in labels if k not in chosen][: count - len(chosen)]
    chosen.sort()
    return chosen


def contact_sheet(path: str | os.PathLike, seed: int = 0, count: int = 32, columns: int = 8, pool: int = 3000) -> Path:
    """Draw `count` faces of the dataset with this seed, each captioned with its visible
    attributes, into a PNG at `path`. Faces are picked among the first `pool` ids so that every
    visible attribute appears a few times (rare ones, such as hats, would often be missing from
    32 consecutive faces); each is exactly the image render_celeba(seed=seed) writes for that id.
    """
    chosen = _choose(seed, count, pool)
    font = ImageFont.load_default(size=13)
    title_font = ImageFont.load_default(size=22)
    cell_w, cell_h, cap_h, top = W + 8, H + 8, 62, 44
    rows = -(-len(chosen) // columns)
    sheet = Image.new("RGB", (columns * cell_w + 8, top + rows * (cell_h + cap_h)), (250, 250, 250))
    draw = ImageDraw.Draw(sheet)
    draw.text((10, 10), "synthetic faces rendered by dfc_vae.data.synth (not CelebA), captioned with their visible "
              f"attributes; seed {seed}, ids {chosen[0]}-{chosen[-1]}", fill=(20, 20, 20), font=title_font)
    for i, k in enumerate(chosen):
        rng = face_rng(seed, k)
        lab = sample_attributes(rng)
        face = render_face(lab, rng)
        x, y = 8 + (i % columns) * cell_w, top + (i // columns) * (cell_h + cap_h)
        sheet.paste(face, (x, y))
        cap = [image_name(k)] + _caption(lab)
        draw.multiline_text((x, y + H + 2), "\n".join(cap[:4]), fill=(30, 30, 30), font=font, spacing=1)
    buf = io.BytesIO()
    sheet.save(buf, "PNG", optimize=True)
    write_bytes(path, buf.getvalue())
    return Path(path)
