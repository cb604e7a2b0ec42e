"""`dfc-vae export`: a run's model as safetensors + JSON config."""

import argparse

from dfc_vae.commands._common import add_run_argument

HELP = "export a run's model as safetensors + JSON config (loads with DFCVAE.from_pretrained; runs no code)"
ORDER = 45


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_argument(parser)
    parser.add_argument("--out", required=True, help="folder to write model.safetensors and config.json into")
    parser.add_argument("--checkpoint", help="a checkpoint file of the run (default: checkpoints/latest.pt)")


def run(args: argparse.Namespace) -> None:
    from dfc_vae.runs.run import export_run
    from dfc_vae.util.runlock import run_lock

    with run_lock(args.run, "export", create=False):  # not while a training replaces the checkpoint
        out = export_run(args.run, args.out, args.checkpoint)
    print(f"exported to {out} (load with dfc_vae.DFCVAE.from_pretrained('{out}'))")
