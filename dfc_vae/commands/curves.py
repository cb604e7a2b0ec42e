"""`dfc-vae curves`: the training curves of one or more runs."""

import argparse
from pathlib import Path

from dfc_vae.commands._common import add_run_argument

# The library modules that do the work are imported in the functions that use them: cli.py imports every
# command to build the parser, and `dfc-vae --help` should not load them (commands/__init__.py).

HELP = "draw training curves (loss, reconstruction, KL, active units against the step) of one or more runs"
ORDER = 35


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_argument(parser, several=True)
    parser.add_argument("--out", help="PNG to write (default: RUN/curves.png for one run, curves.png for several)")


def run(args: argparse.Namespace) -> None:
    from dfc_vae.training.curves import plot_curves

    out = args.out or (Path(args.run[0]) / "curves.png" if len(args.run) == 1 else "curves.png")
    print(f"wrote {plot_curves(args.run, out)}")
