"""What several commands share: the flags naming a trained run, its faces and the device, and their opening."""

import argparse
import contextlib
import sys
from pathlib import Path

from dfc_vae.app.demo import DemoSettings
from dfc_vae.data.faces import report_notes
from dfc_vae.util.argtypes import require
from dfc_vae.util.choices import DEVICES
from dfc_vae.util.errors import UserError
from dfc_vae.util.runlock import run_lock

# The library modules that do the work are imported in the functions that use them: cli.py imports every
# command to build the parser, and `dfc-vae --help` should not load them (commands/__init__.py).

RUN_HELP = "run directory made by `dfc-vae train`"
RUNS_HELP = "run directories made by `dfc-vae train`"
DATA_HELP = "the faces: CelebA, a labelled folder or synthetic faces (default: the run's data)"
LABELS_HELP = "labels file of a folder of images (default: DIR/labels.csv, or the run's)"
DEVICE_HELP = "auto (CUDA when available), cpu or cuda (default: auto)"
MODEL_HELP = ("an exported model instead of a run: a folder made by `dfc-vae export`, or a Hugging Face Hub id "
              'user/name (pip install "dfc_vae[hub]"); its attribute vectors are used unless --attributes is given')


def add_run_argument(parser: argparse.ArgumentParser, help: str | None = None, several: bool = False,
                     model: bool = False) -> None:
    """--run RUN (required); `several`: one or more runs, a list; `model`: --run RUN or --model DIR_OR_ID, one
    of them (commands that only use a model, never write into its run)."""
    if several:
        parser.add_argument("--run", required=True, nargs="+", metavar="RUN", help=help or RUNS_HELP)
    elif model:
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--run", help=help or RUN_HELP)
        group.add_argument("--model", metavar="DIR_OR_ID", help=MODEL_HELP)
    else:
        parser.add_argument("--run", required=True, help=help or RUN_HELP)


def add_data_arguments(parser: argparse.ArgumentParser, data_help: str = DATA_HELP, labels_help: str = LABELS_HELP) -> None:
    """--data, --labels: the faces a run is measured on (default: the run's own)."""
    parser.add_argument("--data", help=data_help)
    parser.add_argument("--labels", help=labels_help)


def add_run_arguments(parser: argparse.ArgumentParser, data_help: str = DATA_HELP, labels_help: str = LABELS_HELP,
                      model: bool = False) -> None:
    """--run (or with `model`, --model), --data, --labels: the model and the faces it is measured on."""
    add_run_argument(parser, model=model)
    add_data_arguments(parser, data_help, labels_help)


def add_device_argument(parser: argparse.ArgumentParser, help: str = DEVICE_HELP) -> None:
    """--device, one of choices.DEVICES (default auto); util/device.py resolves it."""
    parser.add_argument("--device", default="auto", choices=DEVICES, help=help)


def open_model(args: argparse.Namespace):
    """The model of --run or --model, on --device (a LoadedRun)."""
    from dfc_vae.runs.run import load_model_or_run

    return load_model_or_run(args.run, getattr(args, "model", None), args.device)


ATTRIBUTES_HELP = ("attribute-vector file from `dfc-vae attributes` (default: the run's RUN/attributes_train.safetensors, "
                   "or the exported model's)")


def model_vectors(args: argparse.Namespace, loaded, required: bool = False):
    """The attribute vectors: --attributes, else the model's own (RUN/attributes_train.safetensors of a run, the
    default file of an export); the file used is printed, and one line warns when they were computed at another
    step of the model. None where there are none, or with `required`, a UserError saying what to pass."""
    from dfc_vae.sharing.export import DEFAULT_VECTORS, default_vectors_file
    from dfc_vae.editing.attributes import load_attribute_vectors, stale_vectors_note

    path = args.attributes or default_vectors_file(loaded)
    if path is None:
        if not required:
            return None
        if getattr(args, "model", None):
            raise UserError(f"no attribute vectors: the model {args.model} has none; pass --attributes FILE "
                            "(made by `dfc-vae attributes`)")
        raise UserError(f"no attribute vectors: {args.run} has no {DEFAULT_VECTORS}; make it with `dfc-vae attributes "
                        f"--run {args.run}` or pass --attributes FILE")
    vectors = load_attribute_vectors(path, loaded.config.latent_dim)
    print(f"attribute vectors: {path}")
    note = stale_vectors_note(vectors, loaded)
    if note:
        print(f"warning: {note}", file=sys.stderr)
    return vectors


def default_output(args: argparse.Namespace, name: str, here: str | None = None):
    """Where an output goes without --out: into the run (--run), or the current folder (--model: an exported
    model's folder, perhaps the Hub's cache, is not written into), as `here` when given, else as `name`."""
    return Path(args.run) / name if args.run else Path(here or name)


def model_lock(args: argparse.Namespace, command: str):
    """The run's lock for a command that may write into it (its classifier). An exported model takes none: the
    one thing written into it, a classifier trained for other data, is written atomically."""
    return run_lock(args.run, command, create=False) if args.run else contextlib.nullcontext()


def open_run_and_faces(args: argparse.Namespace):
    """The model (--run or --model, on --device) and the faces it is measured on (--data, --labels); their notes
    are printed."""
    from dfc_vae.runs.split import open_faces_for_run

    loaded = open_model(args)
    faces = open_faces_for_run(loaded, args.data, args.labels)
    report_notes(faces)
    return loaded, faces


# ----------------------------------------------------------------------------- the figure commands (fig5, fig6)


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


def check_figure_numbers(args: argparse.Namespace, few_steps: str | None = None) -> None:
    """--faces, --show, --steps and --seed in range, else a UserError; `few_steps`: the message for
    --steps below 2, where a command words that one itself."""
    require(args.faces, "--faces", "int", min=1)
    require(args.show, "--show", "int", min=1, max=args.faces)
    if few_steps and args.steps < 2:
        raise UserError(few_steps)
    require(args.steps, "--steps", "int", min=2, max=101)
    require(args.seed, "--seed", "int", min=0, max=2**32 - 1)


def figure_output(args: argparse.Namespace, name: str) -> str:
    """--out, else RUN/figures/NAME.png (where `dfc-vae export` finds the figures), or NAME.png here with --model."""
    return args.out or str(default_output(args, f"figures/{name}.png", f"{name}.png"))


def untrusted_lines(classifier, attributes, trusted: list[str]) -> list[str]:
    """One line for each of `attributes` the classifier is not trusted on: why the figure does not measure it."""
    from dfc_vae.evaluation.figures import untrusted_note

    advice = f"train longer, e.g. the demo's {DemoSettings().epochs} epochs"
    return [untrusted_note(classifier, a, advice) for a in dict.fromkeys(attributes) if a not in trusted]


def wrote_line(png) -> str:
    """The line naming every file a figure wrote: the PNG, its CSV and its JSON."""
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
