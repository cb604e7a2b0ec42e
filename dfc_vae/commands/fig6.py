"""`dfc-vae fig6`: the paper's Figure 6, measured (the flags it shares with `dfc-vae fig5` are built in _common.py)."""

import argparse
import math

import torch

from dfc_vae.commands._common import (ATTRIBUTES_HELP, add_figure_arguments, check_figure_numbers, figure_output,
                                      model_lock, model_vectors, open_run_and_faces, print_summary, untrusted_lines)
from dfc_vae.util.errors import UserError
from dfc_vae.util.tables import percent

# The library modules that do the work are imported in the functions that use them: cli.py imports every
# command to build the parser, and `dfc-vae --help` should not load them (commands/__init__.py).

HELP = ("the paper's Figure 6, measured: attribute vector arithmetic z + alpha * v on faces chosen by their labels; "
        "PNG, every cell's attribute scores (CSV), flip rates and side effects (JSON)")
ORDER = 81


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_figure_arguments(parser, "fig6")
    parser.add_argument("--attributes", help=ATTRIBUTES_HELP)
    parser.add_argument("--edit", action="append", default=[], metavar="+NAME[:COND]",
                        help="a row kind such as +Smiling, +Eyeglasses:Male, +Bangs:~Male; write removals as --edit=-Eyeglasses (default: the paper's five)")
    parser.add_argument("--alpha-min", type=float, default=0.0)
    parser.add_argument("--alpha-max", type=float, default=1.0)
    parser.add_argument("--face", action="append", default=[], metavar="EDIT=ID", help="image id for an edit's first drawn row")


def _check_alpha_range(low: float, high: float) -> None:
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise UserError(f"alpha range {low}..{high} is malformed; give finite values with "
                        "--alpha-min below --alpha-max (e.g. --alpha-min 0 --alpha-max 1)")


def _row_line(r) -> str:
    """A Figure 6 row kind's measures in a few words."""
    worst = f" (most: {r.others_changed_max_attribute} {percent(r.others_changed_max)})" if r.others_changed_max_attribute else ""
    return f"{percent(r.flip_rate)} of {r.faces} faces ({percent(r.at_start)}); others changed {percent(r.others_changed)}{worst}"


def run(args: argparse.Namespace) -> None:
    from dfc_vae.evaluation.classifier import classifier_for_run
    from dfc_vae.evaluation.figure6 import FIG6_ROWS, figure6, parse_edit

    check_figure_numbers(args, few_steps="--steps must be at least 2")
    _check_alpha_range(args.alpha_min, args.alpha_max)
    faces_by_id = dict(item.split("=", 1) for item in args.face if "=" in item)
    with model_lock(args, "fig6"):  # the run's classifier may be trained and written
        loaded, faces = open_run_and_faces(args)
        edits = [parse_edit(e, faces.attribute_names) for e in args.edit] or list(FIG6_ROWS)
        faces.check_attributes([n for e in edits for n in e.labels_needed])
        vectors = model_vectors(args, loaded, required=True)
        for e in edits[:len(args.edit)]:  # an --edit with no vector (labels all one value) is refused; the default
            vectors.vector(e.attribute)     # rows leave such an attribute out, as a row without faces
        clf = classifier_for_run(loaded, faces, args.cache_dir)
        res = figure6(loaded, faces, vectors, clf, figure_output(args, "fig6"), edits=edits,
                      alphas=torch.linspace(args.alpha_min, args.alpha_max, args.steps), n_faces=args.faces,
                      n_show=args.show, seed=args.seed, faces_by_id=faces_by_id, split=args.split, cache_dir=args.cache_dir)
    first, last = res.summary.alphas[0], res.summary.alphas[-1]
    print_summary(f"Figure 6, z + alpha v for alpha = {first:g} ... {last:g}: the faces that take the edit at alpha = "
                  f"{last:g} (at {first:g}), and those whose other attributes change", res, _row_line,
                  untrusted_lines(clf, [e.attribute for e in edits], res.summary.scored_attributes))
