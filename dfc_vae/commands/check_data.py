"""`dfc-vae check-data`: a CelebA download checked before training: the files against their published sizes and
MD5 sums, the images against the annotations, the split, and what training would do."""

import argparse
import sys

from dfc_vae.util.errors import UserError

# The library modules that do the work are imported in the functions that use them: cli.py imports every
# command to build the parser, and `dfc-vae --help` should not load them (commands/__init__.py).

HELP = "check a CelebA download: files against the published sizes and MD5 sums, images against the annotations"
ORDER = 15


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DIR", help="the folder CelebA was downloaded into (the one --data will get)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar while the sums are read")


def run(args: argparse.Namespace) -> None:
    from dfc_vae.data.check import check_data

    check = check_data(args.data, progress=not args.no_progress and sys.stderr.isatty())
    print(check.report)
    if check.problems:
        more = f" (and {len(check.problems) - 1} more, listed above)" if len(check.problems) > 1 else ""
        raise UserError(f"{check.problems[0]}{more}")
    print(f"nothing wrong found: dfc-vae train --data {args.data}")
