"""`dfc-vae synth`: synthetic faces in CelebA's layouts or as a folder."""

import argparse
import sys

from dfc_vae.data.faces import synthetic_faces
from dfc_vae.data.synth import render_celeba
from dfc_vae.data.synth.dataset import LAYOUTS
from dfc_vae.util.argtypes import nonnegative_int, require, seed
from dfc_vae.util.errors import UserError

# The library modules that do the work are imported in the functions that use them: cli.py imports every
# command to build the parser, and `dfc-vae --help` should not load them (commands/__init__.py).

HELP = "render synthetic faces in CelebA's formats or as a plain folder (offline stand-in for CelebA)"
ORDER = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="folder for the dataset (new, empty, or an earlier synth output, which is replaced)")
    parser.add_argument("--n", type=int, default=2000, help="number of faces (default 2000)")
    parser.add_argument("--seed", type=seed, default=0, help="random seed; the same seed gives the same files (default 0)")
    parser.add_argument("--layout", default="official", choices=LAYOUTS,
                        help="official: DIR/img_align_celeba + list_*.txt; torchvision: the same under DIR/celeba; "
                             "kaggle: DIR/img_align_celeba/img_align_celeba + list_*.csv; folder: DIR/*.jpg + "
                             "DIR/labels.csv (a plain folder of faces)")
    parser.add_argument("--workers", type=nonnegative_int, default=0, help="rendering processes (0: one per CPU core)")
    parser.add_argument("--twins", action="store_true",
                        help="also render the test split's counterfactual twins (each face with one drawn attribute "
                             "flipped) into DIR/twins, with an index and each attribute's region")
    parser.add_argument("--twin-attributes", metavar="A,B,...",
                        help="attributes to flip for --twins (default: every drawn attribute)")
    parser.add_argument("--twin-faces", type=int, metavar="N",
                        help="at most N test faces per attribute and direction for --twins (default: all)")


def run(args: argparse.Namespace) -> None:
    from dfc_vae.data.synth.twinset import check_twin_attributes, open_twins, render_twins

    if not args.twins and (args.twin_attributes or args.twin_faces is not None):
        raise UserError("--twin-attributes and --twin-faces choose which twins --twins renders; add --twins")
    if args.twins and args.layout == "folder":
        raise UserError("--twins needs a CelebA layout (a plain folder would read the twins as faces); "
                        "use --layout official")
    attributes = [a.strip() for a in args.twin_attributes.split(",")] if args.twin_attributes else None
    if args.twins:  # before any face is rendered
        check_twin_attributes(attributes)
        if args.twin_faces is not None:
            require(args.twin_faces, "--twin-faces", "int", min=1)
    workers = None if args.workers == 0 else args.workers  # a negative count is refused by render_celeba
    root = render_celeba(args.out, n=args.n, seed=args.seed, layout=args.layout, workers=workers,
                         progress=sys.stderr.isatty())
    print(f"{args.n} {synthetic_faces(args.seed)}, in the {args.layout} "
          f"layout at {root}; pass --data {root}")
    if args.twins:
        folder = render_twins(root, attributes, args.twin_faces, workers, progress=sys.stderr.isatty())
        twins = open_twins(root)
        print(f"{len(twins.index)} twins of the test split's faces ({', '.join(twins.attributes)}) at {folder}")
