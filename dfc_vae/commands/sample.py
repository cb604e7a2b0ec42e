"""`dfc-vae sample`: a grid of faces decoded from prior samples: N(0, I), the prior fitted to the faces, or faces
drawn to order (--where)."""

import argparse

from dfc_vae.commands._common import (add_data_arguments, add_device_argument, add_run_argument, default_output,
                                      open_model)
from dfc_vae.util.argtypes import nonnegative_float, positive_int, seed
from dfc_vae.util.choices import PRIORS
from dfc_vae.util.errors import UserError

# The library modules that do the work are imported in the functions that use them: cli.py imports every
# command to build the parser, and `dfc-vae --help` should not load them (commands/__init__.py).

HELP = ("decode random latent vectors of a trained run into a grid of faces: z ~ N(0, I), the prior fitted to the "
        "faces (--prior), or faces with chosen attributes (--where Smiling=1)")
ORDER = 40


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_argument(parser, model=True)
    parser.add_argument("--out", help="PNG to write (default: RUN/samples.png; with --model: samples.png here)")
    parser.add_argument("--n", type=positive_int, default=64, help="number of samples")
    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument("--temperature", type=nonnegative_float, default=1.0,
                        help="scale of z's deviations from the prior's mean")
    parser.add_argument("--prior", choices=PRIORS, default=None,
                        help="normal: the paper's N(0, I) (default); gaussian, mixture: fitted to the training faces' "
                             "posterior means (`dfc-vae fit-prior`; fitted now where the model has none)")
    parser.add_argument("--where", action="append", default=[], metavar="NAME=0|1",
                        help="draw faces with (1) or without (0) an attribute, from a Gaussian fitted to the training "
                             "faces so labelled (repeatable; instead of --prior); the classifier's verdicts are printed")
    add_data_arguments(parser)
    parser.add_argument("--cache-dir", help="folder of the decoded-image cache (default: the run's)")
    add_device_argument(parser)


def run(args: argparse.Namespace) -> None:
    from dfc_vae.evaluation.samples import request_scores, run_classifier
    from dfc_vae.runs.prior import PRIOR_TITLES, drawn_to_order, parse_where, prior_for
    from dfc_vae.runs.run import sample_grid
    from dfc_vae.runs.split import open_faces_for_run

    where = parse_where(args.where)
    if where and args.prior:
        raise UserError("--where draws from the faces with those labels; leave out --prior")
    loaded = open_model(args)
    out = args.out or default_output(args, "samples.png")
    if not where and args.prior in (None, "normal"):
        print(f"wrote {sample_grid(loaded, out, args.n, args.seed, args.temperature)}")
        return
    faces = open_faces_for_run(loaded, args.data, args.labels) if args.data else None
    prior = prior_for(loaded, faces, args.cache_dir, say=print)
    if not where:
        drawn_from = f"z from the {PRIOR_TITLES[args.prior]} prior at temperature {args.temperature:g}"
        path = sample_grid(loaded, out, args.n, args.seed, draw=prior.draw(args.prior, args.temperature),
                           drawn_from=drawn_from)
        print(f"wrote {path}")
        return
    draw, drawn_from = drawn_to_order(prior, where, args.temperature)
    kept = []
    path = sample_grid(loaded, out, args.n, args.seed, draw=lambda n, g: kept.append(draw(n, g)) or kept[0],
                       drawn_from=drawn_from)
    print(f"wrote {path}: {drawn_from}")
    clf = run_classifier(loaded)
    if clf is None:
        print(f"no attribute classifier kept with {loaded.name}, so the faces are not scored "
              "(`dfc-vae attributes --run RUN --classifier` trains one)")
        return
    for line in request_scores(loaded, clf, kept[0], where):
        print(line)
