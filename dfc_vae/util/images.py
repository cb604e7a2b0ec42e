"""Pictures: uint8 <-> float conversion of face batches, image grids, and PNG files with a caption
strip under them."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from dfc_vae.util.fileio import write_bytes


def to_unit_float(images_u8: torch.Tensor) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> (N, 3, S, S) float in [0, 1]: an NCHW view with channels_last strides."""
    return images_u8.to(torch.float32).mul_(1 / 255).permute(0, 3, 1, 2)


def to_tensor(images_u8: np.ndarray) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> (N, 3, S, S) float in [0, 1]."""
    return to_unit_float(torch.from_numpy(np.array(images_u8, dtype=np.uint8)))  # a writable copy of a read-only cache view


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) floats in [0, 1] (clamped) -> (B, H, W, 3) uint8."""
    x = x.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def enlarge(images: np.ndarray, min_size: int = 64) -> np.ndarray:
    """(N, H, W, 3) uint8 -> each pixel repeated k x k times, the smallest integer k that makes H at least
    `min_size`: 32-px faces become visible in a picture without inventing detail (nearest neighbour)."""
    k = max(1, -(-min_size // images.shape[1]))
    return images.repeat(k, axis=1).repeat(k, axis=2) if k > 1 else images


FIGURE_CELL = 64  # the least size a face is drawn at in a figure (32x32 faces: each pixel as 2 x 2)
FOOTER_WIDTH = 360  # the least width a figure's footer wraps to (a figure of few, small faces still reads it)


def grid(images: np.ndarray, ncol: int, pad: int = 2, fill: int = 255, min_size: int = FIGURE_CELL) -> np.ndarray:
    """(N, H, W, 3) uint8 -> one (rows*H' + pads, ncol*W' + pads, 3) image, row-major, each face enlarged to at
    least `min_size` px by nearest neighbour (`enlarge`: a 32-px face as 64 px, as the command line draws
    them); min_size=0 keeps the faces at their own size."""
    images = enlarge(images, min_size) if min_size else images
    n, h, w, _ = images.shape
    nrow = -(-n // ncol)
    out = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3), fill, np.uint8)
    for i in range(n):
        r, c = divmod(i, ncol)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = images[i]
    return out


_FONT_SIZE = 13
_LINE_H = round(_FONT_SIZE * 1.3)  # a line of text, with its leading


def _font(size: int = _FONT_SIZE):
    try:
        return ImageFont.load_default(size=size)  # a scalable font where FreeType is there
    except TypeError:  # Pillow without sized default fonts
        return ImageFont.load_default()


def _wrap(text: str, font, width: int) -> list[str]:
    """`text` in lines no wider than `width` pixels, broken at spaces (a longer word stays whole)."""
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and font.getlength(candidate) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    return lines + [line] if line else lines


def figure(rows: list[np.ndarray], row_labels: list[str] | None = None, column_labels: list[str] | None = None,
           footer: str | None = None, corner: str | None = None, min_cell: int = FIGURE_CELL, pad: int = 4,
           label_width: int = 170) -> tuple[np.ndarray, dict]:
    """A figure as a paper draws one: rows of faces (each (C, S, S, 3) uint8; every row as long as the first),
    each drawn at least `min_cell` px (nearest neighbour, util.images.enlarge), each row's label at its left
    (wrapped to `label_width` px), the columns' labels above them (`corner`: what they are, above the rows'
    labels) and `footer` under it, wrapped to the faces' width.
    Returns the image and where its cells are: {"cells": "x0,y0,size,pitch"} (cell (r, c) starts at
    x0 + c * pitch, y0 + r * pitch), for a PNG's text chunks."""
    font = _font()
    cells = [enlarge(r, min_cell) for r in rows]
    ncol, size = cells[0].shape[0], cells[0].shape[1]
    line_h = _LINE_H
    labels = [_wrap(t, font, label_width) for t in row_labels] if row_labels else []
    texts = [line for ls in labels for line in ls] + [corner] * bool(corner)
    left = (max(font.getlength(line) for line in texts) + 2 * pad) if texts else 0
    left = int(np.ceil(left))
    top = line_h + pad if column_labels else 0
    width = left + ncol * (size + pad) + pad
    # the footer wraps to the faces' width (at least FOOTER_WIDTH), so that a long caption does not set the picture's
    footer_lines = _wrap(footer, font, max(width, FOOTER_WIDTH) - 2 * pad) if footer else []
    bottom = len(footer_lines) * line_h + pad if footer_lines else 0
    height = top + len(cells) * (size + pad) + pad + bottom
    width = max([width] + [int(np.ceil(font.getlength(line))) + 2 * pad for line in footer_lines])
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    if corner and column_labels:
        draw.text((left - pad, pad + line_h / 2), corner, fill=(0, 0, 0), font=font, anchor="rm")
    for c, text in enumerate(column_labels or []):
        x = left + pad + c * (size + pad) + size / 2
        draw.text((x, pad + line_h / 2), text, fill=(0, 0, 0), font=font, anchor="mm")
    for r, row in enumerate(cells):
        y = top + pad + r * (size + pad)
        for c in range(ncol):
            img.paste(Image.fromarray(row[c]), (left + pad + c * (size + pad), y))
        if r < len(labels):
            block = labels[r]
            y0 = y + size / 2 - line_h * (len(block) - 1) / 2
            for i, line in enumerate(block):
                draw.text((left - pad, y0 + i * line_h), line, fill=(0, 0, 0), font=font, anchor="rm")
    for i, line in enumerate(footer_lines):
        draw.text((pad, height - bottom + pad / 2 + i * line_h), line, fill=(90, 90, 90), font=font)
    return np.asarray(img), {"cells": f"{left + pad},{top + pad},{size},{size + pad}"}


def figure_cell(picture: Image.Image, r: int, c: int) -> np.ndarray:
    """Cell (r, c) of a PNG drawn by `figure`, at its drawn size (H, H, 3) uint8."""
    x0, y0, size, pitch = map(int, picture.text["cells"].split(","))
    x, y = x0 + c * pitch, y0 + r * pitch
    return np.asarray(picture.convert("RGB"))[y:y + size, x:x + size]


def save_figure(path: str | Path, rows: list[np.ndarray], caption: list[str], row_labels: list[str] | None = None,
                footer: str | None = None, metadata: dict | None = None, **layout) -> None:
    """`figure` written as a PNG: under it one line (`footer`, default the caption's lines joined), and the whole
    `caption` and where the cells are in its text chunks. `layout`: figure's column_labels, corner, min_cell."""
    image, where = figure(rows, row_labels, footer=footer or "; ".join(caption), **layout)
    save_png(path, image, metadata={**(metadata or {}), "caption": " | ".join(caption), **where})


_CAPTION_PAD = 4


def _caption_lines(lines: list[str], width: int, font) -> list[str]:
    """The caption's lines wrapped to a picture `width` px wide (an empty line stays one)."""
    return [part for text in lines for part in (_wrap(text, font, width - 2 * _CAPTION_PAD) or [""])]


def caption_height(lines: list[str], width: int) -> int:
    """The height of the strip `add_caption` puts under a picture `width` px wide (0 without lines)."""
    return _LINE_H * len(_caption_lines(lines, width, _font())) + 2 * _CAPTION_PAD if lines else 0


def add_caption(image: np.ndarray, lines: list[str]) -> np.ndarray:
    """Append a white strip below `image` with `lines` of text, each wrapped to the image's width (a word
    wider than the image widens the strip to it)."""
    if not lines:
        return image
    img = Image.fromarray(image)
    font, pad = _font(), _CAPTION_PAD
    wrapped = _caption_lines(lines, img.width, font)
    width = max(img.width, *(int(np.ceil(font.getlength(t))) + 2 * pad for t in wrapped))
    out = Image.new("RGB", (width, img.height + caption_height(lines, img.width)), "white")
    out.paste(img, (0, 0))
    draw = ImageDraw.Draw(out)
    for i, text in enumerate(wrapped):
        draw.text((pad, img.height + pad + i * _LINE_H), text, fill=(0, 0, 0), font=font)
    return np.asarray(out)


def save_png(path: str | Path, image: np.ndarray, caption: list[str] | None = None, metadata: dict | None = None) -> None:
    """Write `image` (H, W, 3) uint8 as PNG, atomically; `caption` lines are drawn under it and
    every caption line and metadata item is also stored as PNG text chunks."""
    image = add_caption(image, caption or [])
    info = PngImagePlugin.PngInfo()
    for k, v in {**(metadata or {}), **({"caption": " | ".join(caption)} if caption else {})}.items():
        info.add_text(str(k), str(v))
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", pnginfo=info)
    write_bytes(path, buf.getvalue())

