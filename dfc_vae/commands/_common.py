"""What several commands share: the flags naming a trained run and its faces, and their opening."""

import argparse

DATA_HELP = "the faces: CelebA, a labelled folder or synthetic faces (default: the run's data)"
LABELS_HELP = "labels file of a folder of images (default: DIR/labels.csv, or the run's)"


def add_run_arguments(parser: argparse.ArgumentParser, data_help: str = DATA_HELP, labels_help: str = LABELS_HELP) -> None:
    """--run, --data, --labels: the run and the faces it is measured on."""
    parser.add_argument("--run", required=True, help="run directory made by `dfc-vae train`")
    parser.add_argument("--data", help=data_help)
    parser.add_argument("--labels", help=labels_help)


def open_run_and_faces(args: argparse.Namespace):
    """The run (--run on --device) and the faces it is measured on (--data, --labels); their notes are printed."""
    from dfc_vae.data.faces import report_notes
    from dfc_vae.runs.split import open_faces_for_run
    from dfc_vae.runs.run import load_run

    loaded = load_run(args.run, args.device)
    faces = open_faces_for_run(loaded, args.data, args.labels)
    report_notes(faces)
    return loaded, faces
