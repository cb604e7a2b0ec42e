"""`dfc-vae sample`: a grid of faces decoded from prior samples."""

import argparse

from dfc_vae.commands._common import add_device_argument, add_run_argument, default_output, open_model
from dfc_vae.util.argtypes import nonnegative_float, positive_int, seed

HELP = "decode random latent vectors z ~ N(0, I) of a trained run into a grid of faces"
ORDER = 40


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_argument(parser, model=True)
    parser.add_argument("--out", help="PNG to write (default: RUN/samples.png; with --model: samples.png here)")
    parser.add_argument("--n", type=positive_int, default=64, help="number of samples")
    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument("--temperature", type=nonnegative_float, default=1.0, help="scale of z's standard deviation")
    add_device_argument(parser)


def run(args: argparse.Namespace) -> None:
    from dfc_vae.runs.run import sample_grid

    loaded = open_model(args)
    out = sample_grid(loaded, args.out or default_output(args, "samples.png"), args.n, args.seed, args.temperature)
    print(f"wrote {out}")
