"""`dfc-vae edits`: the run's attribute edits measured against the counterfactual twins of its synthetic test faces."""

import argparse
from pathlib import Path

from dfc_vae.commands._common import add_device_argument, add_run_arguments, model_lock, open_run_and_faces
from dfc_vae.util.argtypes import require
from dfc_vae.util.fileio import output_folder

# The library modules that do the work are imported in the functions that use them: cli.py imports every
# command to build the parser, and `dfc-vae --help` should not load them (commands/__init__.py).

HELP = ("measure attribute edits against ground truth: each synthetic test face edited (z +/- alpha v, both vector "
        "methods) and compared with its twin, the same face drawn with the attribute flipped (render twins with "
        "`dfc-vae synth --twins`); PNG, CSV and JSON")
ORDER = 83
FACES = 50  # dfc_vae.evaluation.edits.FACES, repeated so that building the command line imports no torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    parser.add_argument("--out", help="folder for edits.png, edits.csv, edits.json (default: RUN/edits)")
    parser.add_argument("--attribute", action="append", default=[], metavar="NAME",
                        help="an attribute to measure (repeatable; default: every attribute with twins)")
    parser.add_argument("--faces", type=int, default=FACES,
                        help=f"test faces per attribute and direction (default {FACES})")
    parser.add_argument("--no-judge", action="store_true",
                        help="leave out the attribute classifier's check (which trains it first where the run has none)")
    parser.add_argument("--vgg-weights", help="VGG19 weights for the feature distance: imagenet, random or PATH "
                                              "(default: the run's)")
    parser.add_argument("--cache-dir", help="folder of the decoded-image cache (default: the run's)")
    add_device_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> None:
    from dfc_vae.evaluation.edits import edit_benchmark, require_twins
    from dfc_vae.evaluation.edits_report import edits_section, write_edit_benchmark

    require(args.faces, "--faces", "int", min=1)
    out = output_folder(args.out or Path(args.run) / "edits", purpose=" for the edit benchmark")
    with model_lock(args, "edits"):  # the run's classifier may be trained and written
        loaded, faces = open_run_and_faces(args)
        require_twins(faces, args.attribute)  # before the classifier is trained
        classifier = None
        if not args.no_judge:
            from dfc_vae.evaluation.classifier import classifier_for_run

            classifier = classifier_for_run(loaded, faces, args.cache_dir, progress=not args.no_progress)
        bench = edit_benchmark(loaded, faces, classifier=classifier, attributes=args.attribute or None,
                               faces_per_direction=args.faces, vgg_weights=args.vgg_weights,
                               cache_dir=args.cache_dir, progress=not args.no_progress)
    paths = write_edit_benchmark(bench, out)
    print("\n".join(edits_section(bench, heading="#")[-len(bench.results) - 2:]))
    print(f"wrote {paths['edits.png']}, {paths['edits.csv']} and {paths['edits.json']}")
