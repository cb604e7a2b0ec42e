"""`dfc-vae fig5`: the paper's Figure 5, measured (the flags it shares with `dfc-vae fig6` are built in _common.py)."""

import argparse

from dfc_vae.commands._common import (add_figure_arguments, check_figure_numbers, figure_output, model_lock,
                                      open_run_and_faces, print_summary, untrusted_lines)
from dfc_vae.util.choices import INTERPOLATIONS, PRIORS
from dfc_vae.util.errors import UserError
from dfc_vae.util.tables import percent

# The library modules that do the work are imported in the functions that use them: cli.py imports every
# command to build the parser, and `dfc-vae --help` should not load them (commands/__init__.py).

HELP = ("the paper's Figure 5, measured: interpolation between latent vectors of faces (and of prior samples); "
        "PNG, every cell's attribute scores (CSV), summary (JSON)")
ORDER = 80


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_figure_arguments(parser, "fig5")
    parser.add_argument("--attributes", help="(unused by Fig. 5; accepted so both figure scripts take the same flags)")
    parser.add_argument("--method", default="linear", choices=INTERPOLATIONS)
    parser.add_argument("--prior", default="normal", choices=PRIORS,
                        help="the fake -> fake rows' ends: normal, the paper's N(0, I) (default), or the gaussian or "
                             "mixture fitted to the training faces (`dfc-vae fit-prior`; fitted now where there is none)")
    parser.add_argument("--pairs", action="append", default=[], metavar="ROW=LEFT_ID,RIGHT_ID",
                        help="endpoints of a row's first drawn row; ROW is Smiling, Eyeglasses or Male")


def _endpoints(pairs: list[str]) -> dict[str, tuple[str, str]]:
    """--pairs ROW=LEFT_ID,RIGHT_ID items -> {ROW: (LEFT_ID, RIGHT_ID)}."""
    endpoints = {}
    for item in pairs:
        row, _, ids = item.partition("=")
        left, sep, right = ids.partition(",")
        if not sep:
            raise UserError(f"--pairs {item!r} should look like Smiling=000123.jpg,000456.jpg")
        endpoints[row] = (left, right)
    return endpoints


def _row_line(r) -> str:
    """A Figure 5 row kind's measures in a few words."""
    from dfc_vae.evaluation.figures import OwnAttributeMeasures

    if not r.rows_with_changing_scores:
        return f"no score changes along its {r.faces} rows"
    own = f"; {r.own_attribute} alone {percent(r.monotone_own_attribute)}" if isinstance(r, OwnAttributeMeasures) else ""
    return f"{percent(r.monotone)} of {r.rows_with_changing_scores} rows{own}"


def run(args: argparse.Namespace) -> None:
    from dfc_vae.evaluation.classifier import classifier_for_run
    from dfc_vae.evaluation.figure5 import FIG5_ROWS, figure5
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
        res = figure5(loaded, faces, clf, figure_output(args, "fig5"), n_faces=args.faces, n_show=args.show,
                      seed=args.seed, steps=args.steps, method=args.method, endpoints=endpoints, split=args.split,
                      cache_dir=args.cache_dir, rows=rows)
    own = [row.attribute for row in FIG5_ROWS if row.attribute]
    s = res.summary
    print_summary(f"Figure 5, {s.method} interpolation: {percent(s.monotone_rows)} of the rows monotone (the scores that "
                  f"change; tolerance {s.monotone_tolerance})", res, _row_line,
                  untrusted_lines(clf, own, s.scored_attributes))
