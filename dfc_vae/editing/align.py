"""Faces in ordinary photos -> CelebA's aligned 178x218 frame, and edited faces back into the photo.

CelebA's aligned images put the eyes, the nose tip and the mouth corners of every face near the
same five points (`CELEBA_LANDMARKS`, the means of list_landmarks_align_celeba; the synthetic
faces of dfc_vae.data.synth are drawn around them too). Aligning a photo is therefore: find each face
and those five landmarks, fit the similarity transform (rotation, uniform scale, translation)
that maps them onto the template by least squares (Umeyama 1991), and warp the photo by it. The
inverse transform takes an edited aligned face back into the photo (`paste_back`), under an
elliptical mask whose edges fade out so that no seam shows.

Detection needs the optional extra `pip install "dfc_vae[align]"`: dlib's HOG frontal face
detector and its 68-point landmark predictor, whose model file ships inside the
face_recognition_models package (nothing is downloaded at run time). The 68 points give all five
of CelebA's landmarks directly (eye centres from the eye contours, the nose tip, the mouth
corners); dlib's 5-point model has the base of the nose instead of its tip, which sits ~7 px
lower in the aligned frame and would pull the fit off the template.

Coordinates are in pixels with pixel (i, j) centred on x = j, y = i, as CelebA's landmark files
give them. A transform is a 2x3 matrix A with [x', y'] = A @ [x, y, 1], photo -> aligned frame.
"""

from __future__ import annotations

import importlib.util
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from dfc_vae.data import decode
from dfc_vae.data.celeba import ALIGNED_SIZE, OFFICIAL_CROP_BOX
from dfc_vae.util.errors import UserError
from dfc_vae.util.fileio import output_folder, write_bytes, write_json

# Mean landmarks of CelebA's aligned images (x, y) in the 178x218 frame: left eye, right eye
# ("left" = the image's left), nose tip, left and right mouth corners.
CELEBA_LANDMARKS = np.array([[69.0, 112.0], [108.0, 112.0], [89.0, 134.0], [72.0, 152.0], [106.0, 152.0]])
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth")

INSTALL_HINT = 'pip install "dfc_vae[align]"'
MIN_DETECTION_SCORE = 0.3  # dlib's HOG detector scores faces ~0.5-3; its false positives (patterns, logos) near 0
DETECT_MAX_SIDE = 1000  # photos are searched at most this large (faces >= ~40 px there), then refined at full size
MAX_PHOTO_PIXELS = 40_000_000  # larger photos are refused rather than decoded
FEATHER = 0.15  # the paste-back mask fades over this fraction of the face ellipse's radius


@dataclass
class AlignedFace:
    """One face of a photo, warped into CelebA's aligned frame.

    image: (218, 178, 3) uint8; matrix: the 2x3 photo -> aligned similarity; landmarks: (5, 2)
    detected in the photo (order of LANDMARK_NAMES); box: the detector's (x0, y0, x1, y1); score:
    its confidence.
    """

    image: np.ndarray
    matrix: np.ndarray
    landmarks: np.ndarray
    box: tuple[int, int, int, int]
    score: float

    @property
    def scale(self) -> float:
        return float(np.hypot(*self.matrix[:, 0]))

    @property
    def rotation_degrees(self) -> float:
        return float(np.degrees(np.arctan2(self.matrix[1, 0], self.matrix[0, 0])))

    def error(self) -> float:
        """Mean distance (aligned px) between the warped landmarks and the template."""
        return float(np.linalg.norm(apply(self.matrix, self.landmarks) - CELEBA_LANDMARKS, axis=1).mean())

    def to_json(self, photo: str | Path) -> dict:
        return {"photo": str(photo), "aligned_size": list(ALIGNED_SIZE),
                "matrix": self.matrix.round(6).tolist(), "scale": round(self.scale, 6),
                "rotation_degrees": round(self.rotation_degrees, 4),
                "landmarks": {n: p.round(2).tolist() for n, p in zip(LANDMARK_NAMES, self.landmarks)},
                "template": {n: p.tolist() for n, p in zip(LANDMARK_NAMES, CELEBA_LANDMARKS)},
                "template_error_px": round(self.error(), 3), "box": list(self.box), "score": round(self.score, 4),
                "convention": "[x', y'] = matrix @ [x, y, 1]: photo pixels -> aligned pixels, pixel centres at integers"}


# ----------------------------------------------------------------------------- geometry


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 similarity A minimising sum_i |A [src_i, 1] - dst_i|^2 (Umeyama 1991, eqs. 40-42).

    src, dst: (n, 2) corresponding points, n >= 2. With the covariance Sigma = dst_c^T src_c / n
    = U D V^T: R = U S V^T with S = diag(1, det(U) det(V)) (no reflection), c = tr(D S) / var(src),
    t = mean(dst) - c R mean(src).
    """
    src, dst = np.asarray(src, float), np.asarray(dst, float)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    sc, dc = src - mu_s, dst - mu_d
    var = (sc ** 2).sum() / len(src)
    if var <= 0:
        raise ValueError("the source points coincide")
    u, d, vt = np.linalg.svd(dc.T @ sc / len(src))
    s = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ s @ vt
    c = float(np.trace(np.diag(d) @ s) / var)
    return np.hstack([c * rot, (mu_d - c * rot @ mu_s)[:, None]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(n, 2) points through a 2x3 matrix."""
    points = np.asarray(points, float)
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a 2x3 affine matrix."""
    lin = np.linalg.inv(matrix[:, :2])
    return np.hstack([lin, -lin @ matrix[:, 2:]])


def warp(image: Image.Image, matrix: np.ndarray, size: tuple[int, int],
         resample=Image.Resampling.BICUBIC) -> Image.Image:
    """`image` through the 2x3 `matrix` (input -> output pixels) onto a canvas of `size` (w, h).

    PIL samples output pixel centres (x + 0.5, y + 0.5) at the inverse map in its own continuous
    coordinates, where pixel centres are at +0.5; the shifts below convert from ours. A strong
    reduction is taken in two steps (an exact box reduction first), since the bicubic warp itself
    does not filter against aliasing.
    """
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    factor = int(1 / scale) if scale < 0.5 else 1
    if factor > 1:  # pixel i of the reduced image averages pixels [f i, f i + f): centre f i + (f - 1) / 2
        image = image.reduce(factor)
        to_reduced = np.array([[factor, 0, (factor - 1) / 2], [0, factor, (factor - 1) / 2]], float)
        matrix = matrix @ np.vstack([to_reduced, [0, 0, 1]])
    inv = invert(matrix)
    shift = inv[:, :2] @ np.array([-0.5, -0.5]) + inv[:, 2] + 0.5  # continuous out -> continuous in
    data = (inv[0, 0], inv[0, 1], shift[0], inv[1, 0], inv[1, 1], shift[1])
    return image.transform(size, Image.Transform.AFFINE, data, resample=resample)


def align_to_template(image: Image.Image, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(aligned (218, 178, 3) uint8, the 2x3 photo -> aligned matrix) for a face with the five
    `landmarks` (order of LANDMARK_NAMES, photo pixels)."""
    matrix = similarity_transform(landmarks, CELEBA_LANDMARKS)
    return np.asarray(warp(image.convert("RGB"), matrix, ALIGNED_SIZE)), matrix


def face_mask(box=OFFICIAL_CROP_BOX, feather: float = FEATHER) -> np.ndarray:
    """(218, 178) float mask in the aligned frame: 1 inside the ellipse inscribed in `box` (x0, y0,
    x1, y1), falling smoothly to 0 at the ellipse over `feather` of its radius (a smoothstep), so the
    box's corners -- background and hair more than face -- keep the photo's own pixels."""
    w, h = ALIGNED_SIZE
    x0, y0, x1, y1 = box
    ys, xs = np.mgrid[0:h, 0:w].astype(float) + 0.5
    radius = np.hypot((xs - (x0 + x1) / 2) / ((x1 - x0) / 2), (ys - (y0 + y1) / 2) / ((y1 - y0) / 2))
    t = np.clip((1 - radius) / feather, 0, 1)
    return t * t * (3 - 2 * t)


def paste_back(photo: Image.Image, face: np.ndarray, matrix: np.ndarray, box=OFFICIAL_CROP_BOX) -> Image.Image:
    """The photo with `face` (S, S, 3) uint8 -- the model's output for the aligned frame's `box` --
    warped back through the inverse of `matrix` and blended in under `face_mask`."""
    photo = photo.convert("RGB")
    x0, y0, x1, y1 = box
    canvas = Image.new("RGB", ALIGNED_SIZE)
    canvas.paste(Image.fromarray(face).resize((x1 - x0, y1 - y0), Image.Resampling.BICUBIC), (x0, y0))
    mask = Image.fromarray((face_mask(box) * 255).round().astype(np.uint8), "L")
    inverse = invert(matrix)
    back = warp(canvas, inverse, photo.size)
    soft = warp(mask, inverse, photo.size, Image.Resampling.BILINEAR).filter(ImageFilter.BoxBlur(1))
    return Image.composite(back, photo, soft)


# ----------------------------------------------------------------------------- detection


def _predictor_path() -> Path | None:
    """The 68-point landmark model inside face_recognition_models, found without importing the
    package (its __init__ needs pkg_resources, which recent setuptools no longer ships)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    return path if path.is_file() else None


def available() -> bool:
    """Whether the align extra (dlib + face_recognition_models) is installed."""
    return importlib.util.find_spec("dlib") is not None and _predictor_path() is not None


_models = None


def _load_models():
    global _models
    if _models is None:
        if not available():
            raise UserError(f"face alignment needs dlib and face_recognition_models; install them with {INSTALL_HINT}")
        import dlib  # the optional extra `align`: imported only where a face is searched for

        _models = dlib.get_frontal_face_detector(), dlib.shape_predictor(str(_predictor_path()))
    return _models


def detect_landmarks(image: Image.Image) -> list[tuple[np.ndarray, tuple[int, int, int, int], float]]:
    """Every face dlib finds: (five landmarks (5, 2) in photo pixels, box, score), best score first.

    The search runs on a copy of at most DETECT_MAX_SIDE pixels, upsampled once (so faces down to
    ~40 px there are found); the 68 landmarks are then placed on the full-size photo.
    """
    import dlib  # the optional extra `align`, as in _load_models

    detector, predictor = _load_models()
    rgb = np.asarray(image.convert("RGB"))
    shrink = max(1.0, max(image.size) / DETECT_MAX_SIDE)
    small = rgb if shrink == 1 else np.asarray(image.convert("RGB").resize(
        (round(image.width / shrink), round(image.height / shrink)), Image.Resampling.BILINEAR))
    rects, scores, _ = detector.run(small, 1, 0.0)
    faces = []
    for rect, score in zip(rects, scores):
        if score < MIN_DETECTION_SCORE:
            continue
        box = tuple(int(round(v * shrink)) for v in (rect.left(), rect.top(), rect.right(), rect.bottom()))
        shape = predictor(rgb, dlib.rectangle(*box))
        p = np.array([(shape.part(i).x, shape.part(i).y) for i in range(68)], float)
        # iBUG-68 indices: 36-41 the image-left eye, 42-47 the image-right eye, 30 the nose tip, 48/54 mouth corners
        five = np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])
        faces.append((five, box, float(score)))
    return sorted(faces, key=lambda f: -f[2])


def open_photo(path: str | Path) -> Image.Image:
    """A photo as an RGB PIL image, with its EXIF orientation applied; damaged files, non-images
    and images over MAX_PHOTO_PIXELS are UserErrors."""
    return decode.open_photo(path, max_pixels=MAX_PHOTO_PIXELS)


def align_faces(image: Image.Image, largest: bool = False) -> list[AlignedFace]:
    """Every face of `image` (or only the one with the largest box), aligned; [] when none is found."""
    found = detect_landmarks(image)
    if largest and found:
        found = [max(found, key=lambda f: ((f[1][2] - f[1][0]) * (f[1][3] - f[1][1]), f[2]))]
    out = []
    for landmarks, box, score in found:
        aligned, matrix = align_to_template(image, landmarks)
        out.append(AlignedFace(aligned, matrix, landmarks, box, score))
    return out


def no_face_message(path: str | Path) -> str:
    return (f"no face found in {path}; give a photo with a frontal, upright face at least ~80 px wide "
            "(or an already aligned CelebA-style crop without aligning)")


def align_photos(photos: list[str | Path], out: str | Path, largest: bool = False) -> list[Path]:
    """Write OUT/STEM_faceK.jpg (178x218, CelebA's frame) and OUT/STEM_faceK.json (the transform)
    for each face of each photo. Every photo is searched before anything is written, so a photo
    without a face leaves nothing behind."""
    out = output_folder(out)
    results = []
    for photo in photos:
        faces = align_faces(open_photo(photo), largest)
        if not faces:
            raise UserError(no_face_message(photo))
        results.append((Path(photo), faces))
    stems = [p.stem for p, _ in results]
    written = []
    for path, faces in results:
        stem = path.stem if stems.count(path.stem) == 1 else f"{path.parent.name}_{path.stem}"
        for k, face in enumerate(faces, 1):
            buf = io.BytesIO()
            Image.fromarray(face.image).save(buf, format="JPEG", quality=95)
            target = out / f"{stem}_face{k}.jpg"
            write_bytes(target, buf.getvalue())
            write_json(target.with_suffix(".json"), face.to_json(path))
            written.append(target)
    return written


def read_transform(path: str | Path) -> np.ndarray:
    """The 2x3 matrix of a JSON written by `align_photos`."""
    return np.array(json.loads(Path(path).read_text())["matrix"], float)


__all__ = ["CELEBA_LANDMARKS", "LANDMARK_NAMES", "AlignedFace", "similarity_transform", "apply", "invert", "warp",
           "align_to_template", "face_mask", "paste_back", "available", "detect_landmarks", "open_photo",
           "align_faces", "align_photos", "read_transform"]
