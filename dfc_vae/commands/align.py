"""`dfc-vae align`: its flags and the call into editing/align.py."""

import argparse

# The library modules that do the work are imported in the functions that use them: cli.py imports every
# command to build the parser, and `dfc-vae --help` should not load them (commands/__init__.py).

HELP = "align the faces of ordinary photos onto CelebA's 178x218 frame (needs the align extra)"
ORDER = 65


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("photos", nargs="+", metavar="PHOTO", help="JPEG or PNG photos")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="folder for STEM_faceK.jpg (aligned) and STEM_faceK.json (the transform)")
    parser.add_argument("--largest", action="store_true", help="only the largest face of each photo (default: all)")


def run(args: argparse.Namespace) -> None:
    from dfc_vae.editing.align import align_photos

    for path in align_photos(args.photos, args.out, args.largest):
        print(f"aligned face written to {path} (transform in {path.with_suffix('.json').name})")
