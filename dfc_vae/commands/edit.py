"""`dfc-vae edit`: a photo edited with attribute vectors."""

import argparse

from dfc_vae.commands._common import ATTRIBUTES_HELP, add_device_argument, add_run_argument, model_vectors, open_model
from dfc_vae.util.errors import UserError

# The library modules that do the work are imported in the functions that use them: cli.py imports every
# command to build the parser, and `dfc-vae --help` should not load them (commands/__init__.py).

HELP = "edit your own face photo with attribute vectors (e.g. --set Smiling=1); --align for any photo"
ORDER = 70


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="an aligned face photo like CelebA's (178x218; other sizes are rescaled), "
                                      "or with --align any photo")
    add_run_argument(parser, model=True)
    parser.add_argument("--attributes", help=ATTRIBUTES_HELP)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="settings",
                        help="add VALUE times the attribute's vector (repeatable; negative removes it)")
    parser.add_argument("--out", required=True, help="output PNG: input, reconstruction, edit (with --align: the "
                                                     "edited photo, and the strip beside it as OUT_strip.png)")
    parser.add_argument("--align", action="store_true", help="find and align the faces first and paste the edits "
                        'back into the photo (needs pip install "dfc_vae[align]")')
    parser.add_argument("--largest", action="store_true", help="with --align: only the largest face")
    add_device_argument(parser)


def run(args: argparse.Namespace) -> None:
    from dfc_vae.editing.edit import edit_photo, parse_settings

    if args.largest and not args.align:
        raise UserError("--largest chooses among the faces --align finds; add --align")
    loaded = open_model(args)
    vectors = model_vectors(args, loaded, required=True)
    settings = parse_settings(args.settings, vectors.names)
    for name in settings:
        vectors.vector(name)  # one with no vector (its labels were all one value) is refused before any work
    out = edit_photo(loaded, vectors, args.image, settings, args.out, args.align, args.largest)
    print(f"edited face written to {out}")
