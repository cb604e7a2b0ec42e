"""`dfc-vae synth`: synthetic faces in CelebA's layouts or as a folder."""

import argparse

from dfc_vae.util.argtypes import nonnegative_int, seed
from dfc_vae.util.choices import SYNTH_LAYOUTS
from dfc_vae.util.images import synthetic_faces

HELP = "render synthetic faces in CelebA's formats or as a plain folder (offline stand-in for CelebA)"
ORDER = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="folder for the dataset (new, empty, or an earlier synth output, which is replaced)")
    parser.add_argument("--n", type=int, default=2000, help="number of faces (default 2000)")
    parser.add_argument("--seed", type=seed, default=0, help="random seed; the same seed gives the same files (default 0)")
    parser.add_argument("--layout", default="official", choices=SYNTH_LAYOUTS,
                        help="official: DIR/img_align_celeba + list_*.txt; torchvision: the same under DIR/celeba; "
                             "kaggle: DIR/img_align_celeba/img_align_celeba + list_*.csv; folder: DIR/*.jpg + "
                             "DIR/labels.csv (a plain folder of faces)")
    parser.add_argument("--workers", type=nonnegative_int, default=0, help="rendering processes (0: one per CPU core)")


def run(args: argparse.Namespace) -> None:
    import sys

    from dfc_vae.data.synth import render_celeba

    workers = None if args.workers == 0 else args.workers  # a negative count is refused by render_celeba
    root = render_celeba(args.out, n=args.n, seed=args.seed, layout=args.layout, workers=workers,
                         progress=sys.stderr.isatty())
    print(f"{args.n} {synthetic_faces(args.seed)}, in the {args.layout} "
          f"layout at {root}; pass --data {root}")
