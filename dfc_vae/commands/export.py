import argparse

HELP = "export a run's model as safetensors + JSON config (loads with DFCVAE.from_pretrained; runs no code)"
ORDER = 45


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run directory made by `dfc-vae train`")
    parser.add_argument("--out", required=True, help="folder to write model.safetensors and config.json into")
    parser.add_argument("--checkpoint", help="a checkpoint file of the run (default: checkpoints/latest.pt)")


def run(args: argparse.Namespace) -> None:
    from dfc_vae.runs.run import export_run
    from dfc_vae.util.runlock import run_lock

    with run_lock(args.run, "export", create=False):  # not while a training replaces the checkpoint
        out = export_run(args.run, args.out, args.checkpoint)
    print(f"exported to {out} (load with dfc_vae.DFCVAE.from_pretrained('{out}'))")
