"""`dfc-vae reconstruct`: faces of a split beside their reconstructions."""

import argparse

from dfc_vae.commands._common import add_device_argument, add_run_arguments, default_output, open_model
from dfc_vae.util.argtypes import positive_int
from dfc_vae.util.choices import SPLIT_NAMES

# The library modules that do the work are imported in the functions that use them: cli.py imports every
# command to build the parser, and `dfc-vae --help` should not load them (commands/__init__.py).

HELP = "reconstruct faces of a data split with a trained run (inputs beside reconstructions)"
ORDER = 41


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser, data_help="the faces: CelebA, a folder of images or synthetic faces (default: the run's data)",
                      labels_help="labels file of a folder of images (its split column, if any, is used)", model=True)
    parser.add_argument("--split", default="test", choices=SPLIT_NAMES)
    parser.add_argument("--n", type=positive_int, default=32, help="number of faces")
    parser.add_argument("--out", help="PNG to write (default: RUN/reconstructions.png; with --model: "
                                      "reconstructions.png here)")
    add_device_argument(parser)
    parser.add_argument("--cache-dir", help="image cache folder (default: the run's)")


def run(args: argparse.Namespace) -> None:
    from dfc_vae.runs.split import open_faces_for_run
    from dfc_vae.runs.run import reconstruct_grid

    loaded = open_model(args)
    faces = open_faces_for_run(loaded, args.data, args.labels)
    out = reconstruct_grid(loaded, faces, args.out or default_output(args, "reconstructions.png"), args.split, args.n,
                           args.cache_dir)
    print(f"wrote {out}")
