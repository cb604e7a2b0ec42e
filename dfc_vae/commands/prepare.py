"""`dfc-vae prepare`: the faces decoded once into the cache training reads."""

import argparse
import time

from dfc_vae.data.cache import prepare_cache
from dfc_vae.data.faces import report_notes
from dfc_vae.data.sources import open_faces
from dfc_vae.runs.config import TrainConfig
from dfc_vae.util.argtypes import nonnegative_int
from dfc_vae.util.choices import CROPS, IMAGE_SIZES

HELP = "decode every face once into the uint8 cache that training reads"
ORDER = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    parser.add_argument("--data", required=True,
                        help="the faces: CelebA (official, torchvision, Kaggle or PNG layout; img_align_celeba.zip is read "
                             "in place of its folder, never unpacked), any folder of face images, or a zip of one")
    parser.add_argument("--labels", help="labels file of a folder of images (default: DIR/labels.csv when present)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="use the images present when the annotations or labels list some that are not there")
    parser.add_argument("--image-size", type=int, default=d.image_size, choices=IMAGE_SIZES)
    parser.add_argument("--crop", default=d.crop, choices=("auto",) + CROPS,
                        help="auto: the data's own (official for CelebA, center for folders); official: DFC-VAE's "
                             "(30, 40, 168, 178) box; center148: the central 148x148; center: the largest centred square")
    parser.add_argument("--cache-dir", help="where the cache goes (default: $DFC_VAE_CACHE or ~/.cache/dfc_vae)")
    parser.add_argument("--workers", type=nonnegative_int, default=0, help="decoding processes (0: one per CPU core)")


def run(args: argparse.Namespace) -> None:
    t = time.perf_counter()
    faces = open_faces(args.data, args.labels, args.allow_missing)
    report_notes(faces)
    crop = faces.resolve_crop(args.crop)
    cache = prepare_cache(faces, args.image_size, crop, args.cache_dir, args.workers or None)
    dt = time.perf_counter() - t
    origin = f" (decoded from {cache.meta['archive']})" if cache.meta.get("archive") else ""
    print(f"{len(cache.ids)} faces of {faces.description} at {args.image_size}x{args.image_size} ({crop} crop) "
          f"in {cache.path}{origin} ({dt:.1f} s, {len(cache.ids) / dt:.0f} images/s)")
