"""`dfc-vae attributes`: attribute vectors from labelled faces or from two folders, and the run's classifier."""

import argparse
from pathlib import Path

from dfc_vae.commands._common import add_device_argument, add_run_arguments
from dfc_vae.data.faces import report_notes
from dfc_vae.util.choices import SPLIT_NAMES, VECTOR_METHODS
from dfc_vae.util.errors import UserError
from dfc_vae.util.runlock import run_lock

# The library modules that do the work are imported in the functions that use them: cli.py imports every
# command to build the parser, and `dfc-vae --help` should not load them (commands/__init__.py).

HELP = ("attribute vectors: mean posterior mean with minus without each attribute the data is labelled with, "
        "or from two folders (--positive DIR_A --negative DIR_B --name NAME)")
ORDER = 60


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser, data_help="the faces whose labels to use: CelebA, a labelled folder or synthetic faces "
                                        "(default: the run's data)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="use the images present when the labels list some that are not there")
    parser.add_argument("--split", default="train", choices=SPLIT_NAMES + ("all",),
                        help="images to average over (default: train)")
    parser.add_argument("--method", default="mean-difference", choices=VECTOR_METHODS,
                        help="mean-difference (the paper's: mean with minus mean without) or regression (each "
                             "attribute's effect with the other labels held fixed; editing/attributes.py)")
    parser.add_argument("--positive", metavar="DIR_A", help="a folder of faces WITH the attribute (with --negative, --name)")
    parser.add_argument("--negative", metavar="DIR_B", help="a folder of faces WITHOUT the attribute")
    parser.add_argument("--name", help="the attribute's name for --positive/--negative")
    parser.add_argument("--merge", action="append", default=[], metavar="FILE",
                        help="attribute-vector files to merge with the new vectors into --out (repeatable; "
                             "a name in several is taken from the new vectors)")
    parser.add_argument("--out", help="output file (default: RUN/attributes_SPLIT.safetensors, or RUN/attributes_NAME."
                                      "safetensors for two folders)")
    parser.add_argument("--classifier", action="store_true",
                        help="also train the run's attribute classifier (RUN/classifier/) that scores Figs. 5 and 6")
    parser.add_argument("--classifier-on-reconstructions", action=argparse.BooleanOptionalAction, default=True,
                        help="train the classifier on the run's reconstructions of the training faces too, with their "
                             "faces' labels, so that it judges the faces the VAE draws as well as the faces themselves "
                             "(default: yes)")
    add_device_argument(parser)
    parser.add_argument("--cache-dir", help="folder of the decoded-image cache (default: the run's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> None:
    with run_lock(args.run, "attributes", create=False):  # writes the run's attribute vectors and classifier
        _run(args)


def _run(args: argparse.Namespace) -> None:
    from dfc_vae.editing.attributes import (compute_attribute_vectors, folder_attribute_vector, load_attribute_vectors, merge_attribute_vectors)
    from dfc_vae.runs.split import open_faces_for_run
    from dfc_vae.runs.run import load_run

    two_folders = args.positive or args.negative or args.name
    if two_folders and not (args.positive and args.negative and args.name):
        raise UserError("two folders need all of --positive DIR_A, --negative DIR_B and --name NAME")
    if two_folders and (args.data or args.labels or args.classifier):
        raise UserError("--positive/--negative make one vector from two folders; drop --data, --labels and --classifier")
    loaded = load_run(args.run, args.device)
    merged = [load_attribute_vectors(f, loaded.config.latent_dim) for f in args.merge]  # checked before any work
    progress = not args.no_progress
    if two_folders:
        out = Path(args.out) if args.out else Path(args.run) / f"attributes_{args.name.strip()}.safetensors"
        vectors = folder_attribute_vector(loaded, args.positive, args.negative, args.name, args.cache_dir, progress)
        what = f"1 attribute vector ({vectors.names[0]}) from {vectors.n_pos[0]} + {vectors.n_neg[0]} images"
        faces = None
    else:
        out = Path(args.out) if args.out else Path(args.run) / f"attributes_{args.split}.safetensors"
        faces = open_faces_for_run(loaded, args.data, args.labels, args.allow_missing or None)
        report_notes(faces)
        vectors = compute_attribute_vectors(loaded, faces, args.split, args.cache_dir, progress, args.method)
        what = f"{len(vectors.names)} attribute vectors ({args.method}) from {vectors.meta['images']} {args.split} images"
    if merged:
        vectors = merge_attribute_vectors(*merged, vectors)
        what += f", merged with {len(merged)} file(s) into {len(vectors.names)} vectors,"
    vectors.save(out)
    print(f"{what} written to {out}")
    if vectors.constant:
        print(f"no vector for {len(vectors.constant)} attribute(s) whose labels are all one value (marked in the file; "
              f"edit, the figures and the studio refuse them): {', '.join(vectors.constant)}")
    if args.classifier:
        from dfc_vae.evaluation.classifier import MIN_ACCURACY, classifier_for_run

        clf = classifier_for_run(loaded, faces, args.cache_dir, retrain=True, progress=progress,
                                 on_reconstructions=args.classifier_on_reconstructions)
        scored = clf.scored()
        print(f"attribute classifier in {Path(args.run) / 'classifier'}: scores {len(scored)} attributes "
              f"(test accuracy >= {MIN_ACCURACY:.0%}): {', '.join(scored)}")
        decoded = clf.report["accuracy_reconstructed"]
        if scored:
            worst = min(scored, key=decoded.get)
            print(f"its accuracy on the run's reconstructions of the test faces: {decoded[worst]:.1%} at the lowest "
                  f"({worst}), {sum(decoded[n] for n in scored) / len(scored):.1%} on average over those attributes")
