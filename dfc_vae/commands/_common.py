"""What several commands share: the flags naming a trained run, its faces and the device, and their opening."""

import argparse

from dfc_vae.util.choices import DEVICES

RUN_HELP = "run directory made by `dfc-vae train`"
RUNS_HELP = "run directories made by `dfc-vae train`"
DATA_HELP = "the faces: CelebA, a labelled folder or synthetic faces (default: the run's data)"
LABELS_HELP = "labels file of a folder of images (default: DIR/labels.csv, or the run's)"
DEVICE_HELP = "auto (CUDA when available), cpu or cuda (default: auto)"


def add_run_argument(parser: argparse.ArgumentParser, help: str | None = None, several: bool = False) -> None:
    """--run RUN (required); `several`: one or more runs, a list."""
    if several:
        parser.add_argument("--run", required=True, nargs="+", metavar="RUN", help=help or RUNS_HELP)
    else:
        parser.add_argument("--run", required=True, help=help or RUN_HELP)


def add_data_arguments(parser: argparse.ArgumentParser, data_help: str = DATA_HELP, labels_help: str = LABELS_HELP) -> None:
    """--data, --labels: the faces a run is measured on (default: the run's own)."""
    parser.add_argument("--data", help=data_help)
    parser.add_argument("--labels", help=labels_help)


def add_run_arguments(parser: argparse.ArgumentParser, data_help: str = DATA_HELP, labels_help: str = LABELS_HELP) -> None:
    """--run, --data, --labels: the run and the faces it is measured on."""
    add_run_argument(parser)
    add_data_arguments(parser, data_help, labels_help)


def add_device_argument(parser: argparse.ArgumentParser, help: str = DEVICE_HELP) -> None:
    """--device, one of choices.DEVICES (default auto); util/device.py resolves it."""
    parser.add_argument("--device", default="auto", choices=DEVICES, help=help)


def open_run_and_faces(args: argparse.Namespace):
    """The run (--run on --device) and the faces it is measured on (--data, --labels); their notes are printed."""
    from dfc_vae.data.faces import report_notes
    from dfc_vae.runs.split import open_faces_for_run
    from dfc_vae.runs.run import load_run

    loaded = load_run(args.run, args.device)
    faces = open_faces_for_run(loaded, args.data, args.labels)
    report_notes(faces)
    return loaded, faces
