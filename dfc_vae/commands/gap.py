"""`dfc-vae gap`: the prior gap (dfc_vae.evaluation.diagnostics.prior_gap)."""

import argparse

from dfc_vae.commands._common import (add_device_argument, add_run_arguments, default_output, model_lock,
                                      open_run_and_faces)
from dfc_vae.util.fileio import write_json

# The library modules that do the work are imported in the functions that use them: cli.py imports every
# command to build the parser, and `dfc-vae --help` should not load them (commands/__init__.py).

HELP = ("the prior gap: Figure 5's fake -> fake rows, scored the same way, with their ends drawn from N(0, I) "
        "and from where the encoder puts training faces")
ORDER = 82


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    parser.add_argument("--faces", type=int, default=300, help="rows per kind of ends (default 300, as the demo's Fig. 5)")
    parser.add_argument("--fit-faces", type=int, default=4000, help="faces whose posteriors are encoded (default 4000)")
    parser.add_argument("--split", default="train", help="split the faces come from (default train)")
    parser.add_argument("--seed", type=int, default=0, help="the figure's seed: the same N(0, I) ends as its fake rows")
    parser.add_argument("--out", help="JSON file for the measures (default: RUN/figures/prior_gap.json)")
    add_device_argument(parser)
    parser.add_argument("--cache-dir")


def _print_measures(gap) -> None:
    agg = gap.aggregate_posterior
    ev, mo = agg.covariance_eigenvalues, agg.second_moment_per_dimension
    print(f"aggregate posterior of {gap.fit_faces} {gap.split} faces: covariance eigenvalues {ev.min:.2f} .. "
          f"{ev.max:.2f} (median {ev.median:.2f}); E[z_j^2] {mo.min:.2f} .. {mo.max:.2f}; N(0, I): all 1")
    print(f"{'ends of the rows':45s} {'monotone':>9s} {'rows':>5s}  most frequent failing scores")
    for name, r in gap.sources.items():
        top = ", ".join(f"{k} {v}" for k, v in list(r.failing_scores.items())[:3])
        print(f"{name:45s} {100 * r.monotone:8.1f}% {r.rows_with_changing_scores:5d}  {top}")


def run(args: argparse.Namespace) -> None:
    from dfc_vae.evaluation.classifier import classifier_for_run
    from dfc_vae.evaluation.diagnostics import prior_gap
    from dfc_vae.evaluation.figures import as_dict

    out = args.out or default_output(args, "figures/prior_gap.json")
    with model_lock(args, "gap"):  # the run's classifier may be trained, and the measures go into the run
        loaded, faces = open_run_and_faces(args)
        clf = classifier_for_run(loaded, faces, args.cache_dir)
        gap = prior_gap(loaded, faces, clf, n_faces=args.faces, fit_faces=args.fit_faces, seed=args.seed,
                        split=args.split, cache_dir=args.cache_dir)
        write_json(out, as_dict(gap))
    _print_measures(gap)
    print(f"wrote {out}")
