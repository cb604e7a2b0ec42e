"""`dfc-vae export`: a run's model as a folder laid out as a Hugging Face Hub model repository."""

import argparse

from dfc_vae.commands._common import add_run_argument
from dfc_vae.util.hub import push_folder
from dfc_vae.util.runlock import run_lock

# The library modules that do the work are imported in the functions that use them: cli.py imports every
# command to build the parser, and `dfc-vae --help` should not load them (commands/__init__.py).

HELP = ("export a run's model as a Hub-ready folder: safetensors weights, JSON config, the run's attribute vectors, "
        "its classifier and figures, and a model card (loads with --model DIR, load_model, DFCVAE.from_pretrained)")
ORDER = 45


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_argument(parser)
    parser.add_argument("--out", required=True, help="folder to write the model repository into")
    parser.add_argument("--checkpoint", help="a checkpoint file of the run (default: checkpoints/latest.pt)")
    parser.add_argument("--push-to-hub", metavar="USER/NAME",
                        help='then upload the folder to this Hugging Face Hub repository (needs the network, '
                             '`huggingface-cli login` and pip install "dfc_vae[hub]")')


def run(args: argparse.Namespace) -> None:
    from dfc_vae.sharing.export import export_run

    with run_lock(args.run, "export", create=False):  # not while a training replaces the checkpoint
        out = export_run(args.run, args.out, args.checkpoint, model_ref=args.push_to_hub)
    print(f"exported to {out}: model, vectors and model card (use it with --model {out}, or "
          f"dfc_vae.load_model('{out}'))")
    if args.push_to_hub:
        print(f"uploaded to {push_folder(out, args.push_to_hub)}")
