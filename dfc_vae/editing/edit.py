"""Edit a user's own face photo with attribute vectors: z = mu(x) + sum_i alpha_i v_i.

The photo is preprocessed exactly as the training data (dfc_vae.data.decode.load_face: the run's crop
and size); the output PNG shows the input, its reconstruction (decoded mu) and the edit. With
`align`, the photo may be any photo: its faces are found and aligned onto CelebA's frame first
(dfc_vae.editing.align), and the edited faces are pasted back into it.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dfc_vae.data.celeba import ALIGNED_SIZE
from dfc_vae.data.decode import crop_box, load_face, opened_image
from dfc_vae.util.images import to_tensor
from dfc_vae.util.errors import UserError, check_names
from dfc_vae.runs.provenance import provenance
from dfc_vae.util.images import grid, save_png, to_uint8
from dfc_vae.editing.latent import add_attributes
from dfc_vae.editing import align as face_align

ASPECT_TOLERANCE = 0.12  # width/height may differ this much (relative) from CelebA's 178/218
SHOW_SIZE = 128  # cells are enlarged (nearest neighbour) to at least this many pixels


def parse_settings(items: list[str], valid: list[str]) -> dict[str, float]:
    """['Smiling=1', 'Eyeglasses=0.8'] -> {'Smiling': 1.0, 'Eyeglasses': 0.8}, checked against `valid`."""
    if not items:
        raise UserError("nothing to edit; pass --set NAME=VALUE, e.g. --set Smiling=1")
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UserError(f"--set {item!r} should look like NAME=VALUE, e.g. --set Smiling=1")
        check_names([name], valid, where=" in --set")
        try:
            alpha = float(value)
        except ValueError:
            raise UserError(f"--set {item!r}: '{value}' is not a number; give e.g. {name}=1 or {name}=-0.5") from None
        if not math.isfinite(alpha):
            raise UserError(f"--set {item!r}: the value must be a finite number")
        out[name] = out.get(name, 0.0) + alpha
    return out


def read_photo(path: str | Path | bytes, size: int, crop: str = "official") -> np.ndarray:
    """An aligned face photo (a file, or its bytes: "the photo") -> (size, size, 3) uint8, exactly as
    the training faces were made.

    Grayscale, palette and RGBA photos are converted to RGB; other sizes than 178x218 are taken
    as the aligned image rescaled, so the width/height ratio must be CelebA's (within 12%) -- except
    for runs trained with the 'center' crop (folders of square faces), which take the largest centred
    square of a photo of any shape, as their training faces were made.
    Unreadable files and decompression bombs are UserErrors; large JPEGs are decoded at reduced
    scale, so a 4000x4000 photo does not need its full-size pixels in memory.
    """
    if not isinstance(path, bytes):
        path = Path(path)
        if not path.is_file():
            raise UserError(f"image {path} does not exist; give the path of an aligned face photo")
    what = "the photo" if isinstance(path, bytes) else f"image {path}"
    with opened_image(path, what) as im:
        w, h = im.size
    aspect = (w / h) / (ALIGNED_SIZE[0] / ALIGNED_SIZE[1])
    if crop != "center" and abs(aspect - 1) > ASPECT_TOLERANCE:
        raise UserError(f"{what} is {w}x{h}; the model expects an aligned face like CelebA's 178x218 "
                        "(width:height 0.82), so crop or pad it to that shape")
    return load_face(path, size, crop)


def aligned_input(aligned: np.ndarray, size: int, crop: str = "official") -> np.ndarray:
    """An aligned (218, 178, 3) uint8 face -> (size, size, 3) uint8, through the same decoding, crop
    and resize as the training faces (as a lossless PNG in memory)."""
    buf = io.BytesIO()
    Image.fromarray(aligned).save(buf, format="PNG")
    return load_face(buf.getvalue(), size, crop)


@torch.no_grad()
def edit_faces(run, vectors, faces: np.ndarray, settings: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """(N, S, S, 3) uint8 model-sized faces -> (reconstructions, edits), both (N, S, S, 3) uint8."""
    names = list(settings)
    x = to_tensor(np.array(faces)).to(run.device)  # (a copy: PIL arrays are read-only)
    model = run.model.eval()
    mu = model.encode(x)[0]
    v = torch.stack([vectors.vector(n) for n in names]).to(mu.device)
    edited = add_attributes(mu, v, [settings[n] for n in names])
    return to_uint8(model.decode(mu)), to_uint8(model.decode(edited))


def edit_photo(run, vectors, image: str | Path, settings: dict[str, float], out: str | Path,
               align: bool = False, largest: bool = False) -> Path:
    """Write `out` (PNG): [input | reconstruction | edit], each enlarged to >= SHOW_SIZE pixels.

    run: a LoadedRun; vectors: an AttributeVectors of that run; settings: {attribute: alpha}.
    With `align` (needs the align extra), `out` is the photo itself with every face (or the
    largest) edited and pasted back, and the strip, one row per face, goes to OUT_STEM_strip.png.
    """
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise UserError(f"--out {out} should end in .png")
    vectors_ok = vectors.latent_dim == run.config.latent_dim
    if not vectors_ok:
        raise UserError(f"the attribute vectors are {vectors.latent_dim}-d but the run's latent has "
                        f"{run.config.latent_dim}; compute them for this run with `dfc-vae attributes`")
    size, crop = run.config.image_size, run.config.crop
    if align:
        photo = face_align.open_photo(image)
        found = face_align.align_faces(photo, largest)
        if not found:
            raise UserError(face_align.no_face_message(image))
        faces = np.stack([aligned_input(f.image, size, crop) for f in found])
    else:
        faces = read_photo(image, size, crop)[None]
    recon, edited = edit_faces(run, vectors, faces, settings)
    factor = max(1, -(-SHOW_SIZE // size))
    cells = np.stack([faces, recon, edited], 1).reshape(-1, size, size, 3)
    cells = cells.repeat(factor, axis=1).repeat(factor, axis=2)
    change = ", ".join(f"{n} {w:+g}" for n, w in settings.items())
    caption = provenance(bool(vectors.meta.get("synthetic") or run.meta.get("synthetic")), run.meta.get("vgg_weights", "")) + [
        f"input {Path(image).name} ({size}px, shown x{factor}{', aligned' if align else ''}) | reconstruction | edit: {change}",
        f"model {run.name} step {run.step}; vectors of step {vectors.meta.get('step', '?')}, from the "
        f"{vectors.meta.get('split', '?')} split of {vectors.meta.get('data_description', '?')}"]
    metadata = {"settings": change, "image": str(image)}
    if not align:
        save_png(out, grid(cells, 3), caption, metadata)
        return out
    box = tuple(int(round(v)) for v in crop_box(ALIGNED_SIZE, crop))
    for face, edit in zip(found, edited):
        photo = face_align.paste_back(photo, edit, face.matrix, box)
    strip = out.with_name(f"{out.stem}_strip.png")
    save_png(strip, grid(cells, 3), caption, metadata)
    save_png(out, np.asarray(photo), None, {**metadata, "faces": str(len(found)), "strip": strip.name})
    return out
