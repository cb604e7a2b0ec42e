"""`dfc-vae fig5`. The flags that Figure 6 shares live here too."""

import argparse

from dfc_vae.commands._common import add_device_argument, add_run_arguments, model_lock, open_run_and_faces
from dfc_vae.util.choices import INTERPOLATIONS, PRIORS

HELP = ("the paper's Figure 5, measured: interpolation between latent vectors of faces (and of prior samples); "
        "PNG, every cell's attribute scores (CSV), summary (JSON)")
ORDER = 80


def add_figure_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags Figures 5 and 6 share."""
    add_run_arguments(parser, model=True)
    parser.add_argument("--out", required=True, help="PNG path; .csv and .json are written beside it")
    parser.add_argument("--faces", type=int, default=200, help="faces (rows) measured per row kind (default 200)")
    parser.add_argument("--show", type=int, default=1, help="rows drawn per row kind (default 1)")
    parser.add_argument("--steps", type=int, default=11, help="columns from the first to the last alpha (default 11)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--seed", type=int, default=0)
    add_device_argument(parser)
    parser.add_argument("--cache-dir")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_figure_arguments(parser)
    parser.add_argument("--attributes", help="(unused by Fig. 5; accepted so both figure scripts take the same flags)")
    parser.add_argument("--method", default="linear", choices=INTERPOLATIONS)
    parser.add_argument("--prior", default="normal", choices=PRIORS,
                        help="the fake -> fake rows' ends: normal, the paper's N(0, I) (default), or the gaussian or "
                             "mixture fitted to the training faces (`dfc-vae fit-prior`; fitted now where there is none)")
    parser.add_argument("--pairs", action="append", default=[], metavar="ROW=LEFT_ID,RIGHT_ID",
                        help="endpoints of a row's first drawn row; ROW is Smiling, Eyeglasses or Male")


def check_figure_numbers(args: argparse.Namespace, few_steps: str | None = None) -> None:
    """--faces, --show, --steps and --seed in range, else a UserError; `few_steps`: the message for
    --steps below 2, where a command words that one itself."""
    from dfc_vae.util.argtypes import require
    from dfc_vae.util.errors import UserError

    require(args.faces, "--faces", "int", min=1)
    require(args.show, "--show", "int", min=1, max=args.faces)
    if few_steps and args.steps < 2:
        raise UserError(few_steps)
    require(args.steps, "--steps", "int", min=2, max=101)
    require(args.seed, "--seed", "int", min=0, max=2**32 - 1)


def _endpoints(pairs: list[str]) -> dict[str, tuple[str, str]]:
    """--pairs ROW=LEFT_ID,RIGHT_ID items -> {ROW: (LEFT_ID, RIGHT_ID)}."""
    from dfc_vae.util.errors import UserError

    endpoints = {}
    for item in pairs:
        row, _, ids = item.partition("=")
        left, sep, right = ids.partition(",")
        if not sep:
            raise UserError(f"--pairs {item!r} should look like Smiling=000123.jpg,000456.jpg")
        endpoints[row] = (left, right)
    return endpoints


def run(args: argparse.Namespace) -> None:
    import json

    from dfc_vae.evaluation.classifier import classifier_for_run
    from dfc_vae.evaluation.figures import FIG5_ROWS, as_dict, figure5
    check_figure_numbers(args)
    endpoints = _endpoints(args.pairs)
    with model_lock(args, "fig5"):  # the run's classifier may be trained and written
        loaded, faces = open_run_and_faces(args)
        faces.check_attributes([n for row in FIG5_ROWS for n in row.labels_needed])
        clf = classifier_for_run(loaded, faces, args.cache_dir)
        rows = FIG5_ROWS
        if args.prior != "normal":
            from dfc_vae.evaluation.samples import fig5_rows_with_prior
            from dfc_vae.runs.prior import prior_for

            rows = fig5_rows_with_prior(prior_for(loaded, faces, args.cache_dir, say=print), args.prior)
        res = figure5(loaded, faces, clf, args.out, n_faces=args.faces, n_show=args.show, seed=args.seed,
                      steps=args.steps, method=args.method, endpoints=endpoints, split=args.split, cache_dir=args.cache_dir,
                      rows=rows)
    print(json.dumps({k: v for k, v in as_dict(res.summary).items() if k != "alphas"}, indent=1))
    print(f"wrote {res.png} and {res.csv}")
