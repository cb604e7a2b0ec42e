"""`dfc-vae fit-prior`: fit the prior of runs/prior.py to a run's (or an exported model's) training faces and keep
it beside the model."""

import argparse

from dfc_vae.commands._common import add_device_argument, add_run_arguments, model_lock, open_run_and_faces
from dfc_vae.util.argtypes import number, seed

# The library modules that do the work are imported in the functions that use them: cli.py imports every
# command to build the parser, and `dfc-vae --help` should not load them (commands/__init__.py).

HELP = ("fit a full-covariance Gaussian and a Gaussian mixture to the posterior means of the training faces "
        "(a prior to draw random faces from; kept as RUN/prior.safetensors)")
ORDER = 42


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser, model=True)
    parser.add_argument("--max-faces", type=number("int", min=2), default=None,
                        help="training faces fitted, chosen at random (and as many valid faces to choose the mixture's "
                             "size; default 3000)")
    parser.add_argument("--seed", type=seed, default=0, help="of the faces chosen and of the mixture's EM")
    parser.add_argument("--cache-dir", help="folder of the decoded-image cache (default: the run's)")
    add_device_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> None:
    from dfc_vae.runs.prior import FILE, MAX_FIT_FACES, describe_prior, fit_prior

    with model_lock(args, "fit-prior"):
        loaded, faces = open_run_and_faces(args)
        prior = fit_prior(loaded, faces, args.cache_dir, args.max_faces or MAX_FIT_FACES, args.seed,
                          progress=not args.no_progress)
        path = prior.save(loaded.path / FILE)
    scores = prior.meta["mixture"].get("valid_log_likelihood")
    print(f"wrote {path}: {describe_prior(prior)}"
          + (f"; mean log-likelihood of the valid faces' means: " + ", ".join(f"{k} {v:.1f}" for k, v in scores.items())
             if scores else ""))
