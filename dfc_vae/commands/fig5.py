"""`dfc-vae fig5`. The flags that Figure 6 shares live here too."""

import argparse

from dfc_vae.commands._common import add_device_argument, add_run_arguments, default_output, model_lock, open_run_and_faces
from dfc_vae.util.choices import INTERPOLATIONS, PRIORS

HELP = ("the paper's Figure 5, measured: interpolation between latent vectors of faces (and of prior samples); "
        "PNG, every cell's attribute scores (CSV), summary (JSON)")
ORDER = 80


def add_figure_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """The flags Figures 5 and 6 share; `name`: the figure's file name without .png (fig5, fig6)."""
    add_run_arguments(parser, model=True)
    parser.add_argument("--out", help="PNG path; .csv and .json (the full summary) are written beside it (default: "
                                      f"RUN/figures/{name}.png, where `dfc-vae export` finds it; with --model: {name}.png here)")
    parser.add_argument("--faces", type=int, default=200, help="faces (rows) measured per row kind (default 200)")
    parser.add_argument("--show", type=int, default=1, help="rows drawn per row kind (default 1)")
    parser.add_argument("--steps", type=int, default=11, help="columns from the first to the last alpha (default 11)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--seed", type=int, default=0)
    add_device_argument(parser)
    parser.add_argument("--cache-dir")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_figure_arguments(parser, "fig5")
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


def figure_output(args: argparse.Namespace, name: str) -> str:
    """--out, else RUN/figures/NAME.png (where `dfc-vae export` finds the figures), or NAME.png here with --model."""
    return args.out or str(default_output(args, f"figures/{name}.png", f"{name}.png"))


def pct(share: float) -> str:
    """A share as a percentage; "-" where it could not be measured (nan)."""
    return "-" if share != share else f"{100 * share:.1f}%"


def untrusted_lines(classifier, attributes, trusted: list[str]) -> list[str]:
    """One line for each of `attributes` the classifier is not trusted on: why the figure does not measure it."""
    from dfc_vae.app.demo import DemoSettings
    from dfc_vae.evaluation.figures import untrusted_note

    advice = f"train longer, e.g. the demo's {DemoSettings().epochs} epochs"
    return [untrusted_note(classifier, a, advice) for a in dict.fromkeys(attributes) if a not in trusted]


def wrote_line(png) -> str:
    """The line naming every file a figure wrote: the PNG, its CSV and its JSON."""
    from pathlib import Path

    png = Path(png)
    return f"wrote {png}, {png.with_suffix('.csv').name} and {png.with_suffix('.json').name} (the full summary)"


def print_summary(title: str, res, row_line, notes: list[str]) -> None:
    """At most about ten lines (the whole summary is in the JSON file beside the PNG): `title`, one line per row
    kind (`row_line(measures)`, where it had faces), `notes`, and the files written."""
    print(title)
    for name, r in res.summary.rows.items():
        print(f"  {name}: {row_line(r) if r.faces else 'no faces measured (none in the split, or no vector)'}")
    for line in notes:
        print(line)
    print(wrote_line(res.png))


def _row_line(r) -> str:
    """A Figure 5 row kind's measures in a few words."""
    from dfc_vae.evaluation.figures import OwnAttributeMeasures

    if not r.rows_with_changing_scores:
        return f"no score changes along its {r.faces} rows"
    own = f"; {r.own_attribute} alone {pct(r.monotone_own_attribute)}" if isinstance(r, OwnAttributeMeasures) else ""
    return f"{pct(r.monotone)} of {r.rows_with_changing_scores} rows{own}"


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
    print_summary(f"Figure 5, {s.method} interpolation: {pct(s.monotone_rows)} of the rows monotone (the scores that "
                  f"change; tolerance {s.monotone_tolerance})", res, _row_line,
                  untrusted_lines(clf, own, s.scored_attributes))
