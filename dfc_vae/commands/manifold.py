"""`dfc-vae manifold`: faces decoded from a grid over two latent dimensions (dfc_vae.evaluation.manifold)."""

import argparse

from dfc_vae.commands._common import add_device_argument, add_run_argument, default_output, open_model
from dfc_vae.util.argtypes import nonnegative_int, number

# The library modules that do the work are imported in the functions that use them: cli.py imports every
# command to build the parser, and `dfc-vae --help` should not load them (commands/__init__.py).

HELP = ("the learned manifold: faces decoded from an n x n grid over two latent dimensions (the whole latent of a "
        "2-d model), as Kingma and Welling drew it")
ORDER = 42
# dfc_vae.evaluation.manifold.MAX_GRID, repeated so that building the command line imports no torch (a test checks they agree)
MAX_GRID = 64


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_argument(parser, model=True)
    parser.add_argument("--out", help="PNG to write (default: RUN/manifold.png; with --model: manifold.png here)")
    parser.add_argument("--n", type=number("int", min=2, max=MAX_GRID), default=15, help="grid points per side (default 15)")
    parser.add_argument("--limit", type=number("float", above=0), default=2.0,
                        help="the grid spans [-LIMIT, LIMIT] in each dimension (default 2)")
    parser.add_argument("--dims", type=nonnegative_int, nargs=2, default=(0, 1), metavar=("A", "B"),
                        help="the two latent dimensions varied, the others held at 0 (default 0 1)")
    add_device_argument(parser)


def run(args: argparse.Namespace) -> None:
    from dfc_vae.evaluation.manifold import save_manifold

    loaded = open_model(args)
    out = save_manifold(loaded, args.out or default_output(args, "manifold.png"), args.n, args.limit, tuple(args.dims))
    print(f"wrote {out}")
