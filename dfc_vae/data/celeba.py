"""CelebA as a source of faces: its 40 attribute names and rates, the annotation files and their
readers, and the layouts people keep it in -- the official one, torchvision's, Kaggle's, the PNG
release (files 000001.png while the annotations name 000001.jpg) -- without list_eval_partition
(the official split by image number) and as a partial download (refused unless allow_missing).
The aligned images may stay in img_align_celeba.zip as downloaded: they are then read from the zip,
never unpacked; a download that went wrong (a web page saved as the zip or as an annotation file, a
zip cut short, the zip of another data set, an annotation file of the wrong length) is named for
what it is, with where to get the right file (`GET_CELEBA`).

`recognises(root)` and `open_source(root, ...)` make it one of dfc_vae.data.sources' kinds.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dfc_vae.data.archive import ZipArchive, describe_head, open_zip, read_head
from dfc_vae.data.faces import FaceSet, read_synthetic_marker, synthetic_description
from dfc_vae.util.errors import UserError

# The 40 attributes in the official order of list_attr_celeba.txt.
ATTRIBUTE_NAMES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup",
    "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard",
    "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns",
    "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)

# Share of CelebA's 202,599 images with each attribute (rounded; from list_attr_celeba.txt).
CELEBA_RATES: dict[str, float] = {
    "5_o_Clock_Shadow": 0.111, "Arched_Eyebrows": 0.267, "Attractive": 0.513,
    "Bags_Under_Eyes": 0.205, "Bald": 0.022, "Bangs": 0.152, "Big_Lips": 0.241,
    "Big_Nose": 0.234, "Black_Hair": 0.239, "Blond_Hair": 0.148, "Blurry": 0.051,
    "Brown_Hair": 0.205, "Bushy_Eyebrows": 0.142, "Chubby": 0.058, "Double_Chin": 0.047,
    "Eyeglasses": 0.065, "Goatee": 0.063, "Gray_Hair": 0.042, "Heavy_Makeup": 0.387,
    "High_Cheekbones": 0.455, "Male": 0.417, "Mouth_Slightly_Open": 0.483, "Mustache": 0.042,
    "Narrow_Eyes": 0.115, "No_Beard": 0.835, "Oval_Face": 0.284, "Pale_Skin": 0.043,
    "Pointy_Nose": 0.277, "Receding_Hairline": 0.080, "Rosy_Cheeks": 0.066, "Sideburns": 0.057,
    "Smiling": 0.482, "Straight_Hair": 0.208, "Wavy_Hair": 0.320, "Wearing_Earrings": 0.189,
    "Wearing_Hat": 0.048, "Wearing_Lipstick": 0.472, "Wearing_Necklace": 0.123,
    "Wearing_Necktie": 0.073, "Young": 0.774,
}

# Aligned CelebA images are 178 wide, 218 high.
LAYOUTS = ("official", "torchvision", "kaggle", "png")  # png: the official PNG release, img_align_celeba_png/
ALIGNED_SIZE = (178, 218)
# The official crop box (x0, y0, x1, y1) of DFC-VAE's data/crop_celebA.lua: a 138x138 face.
OFFICIAL_CROP_BOX = (30, 40, 168, 178)



# Where CelebA comes from, said at the end of every message about a file that is missing or wrong.
GET_CELEBA = ("get CelebA from its page (mmlab.ie.cuhk.edu.hk/projects/CelebA.html, the 'Align&Cropped Images' and "
              "'Anno' folders), from Kaggle (kaggle.com/datasets/jessicali9530/celeba-dataset), or with "
              "torchvision.datasets.CelebA(root, download=True); `dfc-vae check-data DIR` checks what you have")
REDOWNLOAD = "download it again: " + GET_CELEBA
ZIP_NAME = "img_align_celeba.zip"
# The published files: size in bytes and MD5 (the sums torchvision.datasets.CelebA checks; the sizes of
# the files those sums belong to).
PUBLISHED = {
    ZIP_NAME: (1_443_490_838, "00d2c5bc6d35e252742224ab0c1e8fcb"),
    "list_attr_celeba.txt": (26_721_026, "75e246fa4810816ffd6ee81facbd244c"),
    "list_eval_partition.txt": (2_836_386, "d32c9cbf5e040fd4025c592c306e6668"),
    "identity_CelebA.txt": (3_424_458, "32bd1bd63d3c78cd57e08160ec5ed1e2"),
    "list_bbox_celeba.txt": (6_082_035, "00566efa6fedff7a56946cd1c10f1c16"),
    "list_landmarks_align_celeba.txt": (12_156_055, "cc24ecafdb5b50baae59b03474781f8c"),
}
IMAGE_SUFFIXES = (".jpg", ".png")

# The official partition by image number (what list_eval_partition.txt holds): the last number of
# the train and of the valid split.
LAST_TRAIN, LAST_VALID, LAST_IMAGE = 162770, 182637, 202599


@dataclass(frozen=True)
class CelebARoot:
    """Where one copy of CelebA keeps its files."""

    annotations: Path  # the folder holding list_attr_celeba.* and list_eval_partition.*
    images: Path  # the folder holding the aligned images (JPEG, or PNG in the PNG release)
    layout: str  # one of LAYOUTS
    synthetic: dict | None  # the marker of dfc_vae's rendered faces, None for real CelebA
    archive: ZipArchive | None = None  # img_align_celeba.zip, when the images are read from it (`images` is then the zip)
    eval_folder: Path | None = None  # where list_eval_partition is when not beside the attributes (the Drive tree's Eval/)

    @property
    def description(self) -> str:
        return synthetic_description(self.synthetic) if self.synthetic else "CelebA"


def find_celeba(path: str | Path) -> CelebARoot:
    """Recognise the official (flat, or the Drive folder's Anno/, Eval/, Img/), torchvision (ROOT/celeba/...)
    and Kaggle layouts under `path`."""
    root = Path(path).expanduser()
    if not root.exists():
        raise UserError(f"data folder {root} does not exist; pass --data the folder that holds CelebA "
                        "(or make synthetic faces with `dfc-vae synth --out DIR`)")
    if not root.is_dir():
        raise UserError(f"--data {root} is a file; pass the folder that holds img_align_celeba/ and list_attr_celeba.txt")
    # (annotations, images' folder, layout): flat; torchvision's ROOT/celeba; the official Google Drive
    # folder as downloaded, Anno/ (and Eval/ for the split) beside Img/
    candidates = [(root, root, None), (root / "celeba", root / "celeba", "torchvision"),
                  (root / "Anno", root / "Img", "official")]
    for folder, base, layout in candidates:
        txt, csv = folder / "list_attr_celeba.txt", folder / "list_attr_celeba.csv"
        if not (txt.is_file() or csv.is_file()):
            continue
        nested = base / "img_align_celeba" / "img_align_celeba"
        kaggle_nested = nested.is_dir()  # Kaggle's archive holds the images one folder deeper
        images = nested if kaggle_nested else base / "img_align_celeba"
        png = base / "img_align_celeba_png"
        if not images.is_dir() and png.is_dir():
            images, layout = png, layout or "png"
        archive, synthetic = None, read_synthetic_marker(folder)
        if not images.is_dir() and (base / ZIP_NAME).is_file():  # as downloaded: read in place
            images = base / ZIP_NAME
            archive = open_zip(images, f"{ZIP_NAME} should be the zip of CelebA's aligned JPEGs; {REDOWNLOAD}",
                               None if synthetic else PUBLISHED[ZIP_NAME][0])
            kaggle_nested = any(name.startswith("img_align_celeba/img_align_celeba/") for name in archive.members)
        if not images.is_dir() and archive is None:
            raise UserError(f"{folder} has the annotation files but no img_align_celeba/ (or img_align_celeba_png/) "
                            f"folder of images and no {ZIP_NAME}; put {ZIP_NAME} there as downloaded (it is read "
                            f"without unpacking), or {GET_CELEBA}")
        if layout is None:
            layout = "kaggle" if (csv.is_file() and not txt.is_file()) or kaggle_nested else "official"
        eval_folder = root / "Eval" if folder == root / "Anno" else None
        return CelebARoot(folder, images, layout, synthetic, archive, eval_folder)
    raise UserError(f"{root} does not look like CelebA: expected list_attr_celeba.txt (official), celeba/list_attr_celeba.txt "
                    "(torchvision) or list_attr_celeba.csv (Kaggle) with img_align_celeba/ beside it")


def _lines(path: Path) -> list[str]:
    """Non-empty lines with Windows line ends, BOMs and trailing blanks removed."""
    other = describe_head(read_head(path))
    if other:
        raise UserError(f"{path} is not an annotation file but {other}; {REDOWNLOAD}")
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def _annotation_file(root: CelebARoot, stem: str) -> Path:
    for folder in (root.annotations, root.eval_folder or root.annotations):
        for ext in (".txt", ".csv"):
            p = folder / f"{stem}{ext}"
            if p.is_file():
                return p
    raise UserError(f"{root.annotations} has no {stem}.txt or {stem}.csv; copy it from your CelebA download")


def _read_table(path: Path, lines: list[str], sep: str | None, n_fields: int) -> pd.DataFrame:
    """Parse rows of `n_fields` fields (a file name, then integers) with pandas; damaged rows are errors."""
    try:
        table = pd.read_csv(io.StringIO("\n".join(lines)), sep=sep or r"\s+", header=None, names=range(n_fields),
                            dtype={0: str}, engine="c")
    except (pd.errors.ParserError, ValueError) as e:
        raise UserError(f"{path}: a row has more than {n_fields} fields ({str(e).strip().splitlines()[-1]}); "
                        "the file is damaged; " + REDOWNLOAD) from e
    bad = table.isna().any(axis=1).to_numpy().nonzero()[0]
    if len(bad):
        raise UserError(f"{path}: row '{lines[bad[0]][:30]}' has fewer than {n_fields} fields; the file is damaged "
                        f"or cut short; {REDOWNLOAD}")
    numeric = table.iloc[:, 1:]
    if not all(pd.api.types.is_integer_dtype(t) for t in numeric.dtypes):
        raise UserError(f"{path}: non-integer values where integers belong; the file is damaged; {REDOWNLOAD}")
    return table


def read_attributes(root: CelebARoot) -> pd.DataFrame:
    """The 40 attributes as a bool DataFrame indexed by image file name, columns in official order.

    Tolerates: the count line present or absent, a trailing space after the header, CRLF line
    ends, several spaces between fields, -1/1 or 0/1 values, Kaggle's CSV with an image_id column.
    """
    path = _annotation_file(root, "list_attr_celeba")
    lines = _lines(path)
    if lines and lines[0].isdigit():
        declared, lines = int(lines[0]), lines[1:]
    else:
        declared = None
    if not lines:
        raise UserError(f"{path} holds no attribute rows; {REDOWNLOAD}")
    sep = "," if path.suffix == ".csv" else None
    header = lines[0].split(sep)
    header = [h.strip() for h in header if h.strip()]
    if header and header[0].lower() in ("image_id", "filename", "file", "image"):
        header = header[1:]
    unknown = [h for h in header if h not in ATTRIBUTE_NAMES]
    if unknown or len(header) != len(ATTRIBUTE_NAMES):
        raise UserError(f"{path}: header line should name CelebA's 40 attributes, found {len(header)} names"
                        + (f" including unknown '{unknown[0]}'" if unknown else "") + f"; {REDOWNLOAD}")
    table = _read_table(path, lines[1:], sep, len(header) + 1)
    ids = table[0].astype(str).str.strip().tolist()
    values = table.iloc[:, 1:].to_numpy()
    if not np.isin(values, (-1, 0, 1)).all():
        raise UserError(f"{path}: attribute values must be -1/1 or 0/1; the file is damaged; {REDOWNLOAD}")
    if declared is not None and declared != len(ids):
        raise UserError(f"{path}: first line says {declared} images but {len(ids)} rows follow; the file is truncated; {REDOWNLOAD}")
    df = pd.DataFrame(values > 0, index=pd.Index(ids, name="image_id"), columns=header)
    if df.index.has_duplicates:
        raise UserError(f"{path}: image {df.index[df.index.duplicated()][0]} is listed twice; {REDOWNLOAD}")
    return df[list(ATTRIBUTE_NAMES)]


def read_partition(root: CelebARoot) -> pd.Series:
    """image file name -> split number (0 train, 1 valid, 2 test)."""
    path = _annotation_file(root, "list_eval_partition")
    sep = "," if path.suffix == ".csv" else None
    lines = _lines(path)
    if lines and not lines[0].split(sep)[-1].strip().isdigit():
        lines = lines[1:]  # a header such as 'image_id,partition'
    if not lines:
        raise UserError(f"{path} is empty; copy list_eval_partition from your CelebA download")
    table = _read_table(path, lines, sep, 2)
    s = pd.Series(table[1].to_numpy(), index=pd.Index(table[0].str.strip(), name="image_id"), name="partition")
    if not s.isin((0, 1, 2)).all():
        raise UserError(f"{path}: split numbers must be 0 (train), 1 (valid) or 2 (test)")
    return s


def load_annotations(root: CelebARoot) -> pd.DataFrame:
    """Attributes (bool columns) plus a 'partition' column, rows sorted by image file name.

    The attribute and partition files must list the same images.
    """
    attrs = read_attributes(root)
    part = read_partition(root)
    only_attr = attrs.index.difference(part.index)
    only_part = part.index.difference(attrs.index)
    if len(only_attr) or len(only_part):
        which = (f"{len(only_attr)} images in the attribute file are missing from the partition file (e.g. {only_attr[0]})"
                 if len(only_attr) else
                 f"{len(only_part)} images in the partition file are missing from the attribute file (e.g. {only_part[0]})")
        raise UserError(f"list_attr_celeba and list_eval_partition disagree: {which}; use both files from the same CelebA copy")
    df = attrs.join(part).sort_index()
    return df


def has_partition(root: CelebARoot) -> bool:
    return any((folder / f"list_eval_partition{ext}").is_file() for ext in (".txt", ".csv")
               for folder in (root.annotations, root.eval_folder or root.annotations))


def partition_by_number(ids) -> np.ndarray:
    """The official split (0 train, 1 valid, 2 test) from the image numbers of names like 000123.jpg."""
    numbers = []
    for name in ids:
        stem = Path(name).stem
        if not stem.isdigit():
            raise UserError(f"image {name} has no CelebA number, so the split cannot be taken from it; "
                            "put list_eval_partition.txt beside list_attr_celeba.txt")
        numbers.append(int(stem))
    numbers = np.asarray(numbers, dtype=np.int64)
    return np.where(numbers <= LAST_TRAIN, 0, np.where(numbers <= LAST_VALID, 1, 2)).astype(np.int64)


# ----------------------------------------------------------------------------- the source

KIND = "celeba"


def recognises(root: Path) -> bool:
    """CelebA when its attribute or partition file is there (without the attribute file, find_celeba
    says what is missing)."""
    return any((folder / f"{stem}{ext}").is_file() for folder in (root, root / "celeba", root / "Anno", root / "Eval")
               for stem in ("list_attr_celeba", "list_eval_partition") for ext in (".txt", ".csv"))


def open_source(root: Path, labels=None, allow_missing: bool = False, split_seed: int = 0) -> FaceSet:
    """The FaceSet of the CelebA copy at `root` (labels: refused, CelebA brings its own)."""
    if labels:
        raise UserError(f"--labels is for a folder of face images; {root} is CelebA, whose labels are its "
                        "list_attr_celeba file (drop --labels)")
    celeba = find_celeba(root)
    notes = []
    if has_partition(celeba):
        annotations = load_annotations(celeba)
        partition = annotations["partition"].to_numpy()
        split_source = "list_eval_partition"
    else:
        annotations = read_attributes(celeba).sort_index()
        partition = partition_by_number(annotations.index)
        split_source = "official split by image number (no list_eval_partition file)"
        counts = np.bincount(partition, minlength=3)
        notes.append(f"{celeba.annotations} has no list_eval_partition file: using CelebA's official split by image "
                     f"number (000001-{LAST_TRAIN:06d} train, {LAST_TRAIN + 1:06d}-{LAST_VALID:06d} valid, "
                     f"{LAST_VALID + 1:06d}-{LAST_IMAGE:06d} test), here {counts[0]} train, {counts[1]} valid, "
                     f"{counts[2]} test images")
    ids = annotations.index.tolist()
    listing = _listing(celeba)
    paths, present = _image_files(listing, ids)
    missing = int((~present).sum())
    if celeba.archive is not None:
        _check_zip_against(celeba, listing, ids, present)
    if missing:
        example = ids[int(np.flatnonzero(~present)[0])]
        if not allow_missing:
            zipped = celeba.archive is None and any((p / ZIP_NAME).is_file() for p in celeba.images.parents[:2])
            beside = f", or delete the partly unpacked {celeba.images.name}/ to read the {ZIP_NAME} beside it" if zipped else ""
            raise UserError(f"{missing} of the {len(ids)} images listed in list_attr_celeba are missing from "
                            f"{celeba.images} (e.g. {example}); restore them{beside}, or pass --allow-missing to use "
                            f"the {len(ids) - missing} present")
        notes.append(f"--allow-missing: {missing} of the {len(ids)} listed images are not in {celeba.images} "
                     f"(e.g. {example}) and are left out; using {len(ids) - missing}")
        annotations, partition = annotations[present], partition[present]
        ids = annotations.index.tolist()
        paths = [p for p, ok in zip(paths, present) if ok]
        if not ids:
            raise UserError(f"none of the images listed in list_attr_celeba is in {celeba.images}; unzip them there")
    return FaceSet(root=celeba.annotations, ids=ids, paths=paths, labels=annotations[list(ATTRIBUTE_NAMES)],
                   split=partition.astype(np.int8), kind=KIND, layout=celeba.layout, default_crop="official",
                   split_source=split_source, missing=missing, synthetic=celeba.synthetic, notes=notes,
                   archive=celeba.archive)


def _listing(celeba: CelebARoot) -> dict:
    """File name -> where the image is: a path in the images folder, or a member's name in the zip
    (those of the zip's folder holding the most images: img_align_celeba/, Kaggle's
    img_align_celeba/img_align_celeba/, or the top)."""
    if celeba.archive is None:
        try:
            return {name: celeba.images / name for name in os.listdir(celeba.images)}
        except OSError as e:
            raise UserError(f"cannot list {celeba.images} ({e.strerror}); check its permissions") from e
    folders: dict[str, dict] = {}
    for member in celeba.archive.images(IMAGE_SUFFIXES):
        folder, _, name = member.name.rpartition("/")
        folders.setdefault(folder, {})[name] = member.name
    return max(folders.values(), key=len) if folders else {}


def _image_files(listing: dict, ids: list[str]) -> tuple[list, np.ndarray]:
    """The file of each annotated image (its own name, or the same number as .png in the PNG
    release) and whether it is there, from one listing of the images (no per-file system calls)."""
    paths, present = [], np.zeros(len(ids), dtype=bool)
    for i, name in enumerate(ids):
        found = listing.get(name) or listing.get(Path(name).stem + ".png")
        present[i] = found is not None
        paths.append(found if found is not None else name)
    return paths, present


def _check_zip_against(celeba: CelebARoot, listing: dict, ids: list[str], present: np.ndarray) -> None:
    """A zip that holds none of the annotated images is another data set's; one that holds more images
    than the annotation file lists means the annotation file is of the wrong length."""
    zip_path = celeba.archive.path
    if not present.any():
        others = sorted(celeba.archive.members)[:3]
        holds = f"its files are such as {', '.join(others)}" if others else "it holds no files"
        raise UserError(f"{zip_path} holds none of the images list_attr_celeba names (e.g. {ids[0]}; {holds}): it is "
                        f"not the zip of CelebA's aligned faces; {REDOWNLOAD}")
    if len(listing) > len(ids):
        path = _annotation_file(celeba, "list_attr_celeba")
        raise UserError(f"{path} lists {len(ids)} images but {zip_path} holds {len(listing)}: the annotation file "
                        f"is of the wrong length (cut short, or from another copy); {REDOWNLOAD}")
