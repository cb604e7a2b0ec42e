"""`dfc-vae train`: the flags built from runs/config.py and the call into training/loop.py."""

import argparse

from dfc_vae.runs.config import add_config_arguments, config_from_args
from dfc_vae.util.errors import UserError
from dfc_vae.util.runlock import run_lock

# The library modules that do the work are imported in the functions that use them: cli.py imports every
# command to build the parser, and `dfc-vae --help` should not load them (commands/__init__.py).

HELP = "train a DFC-VAE (VAE-123, VAE-345 or the pixel PVAE) on CelebA or synthetic faces"
ORDER = 30


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its latest checkpoint (saved at every epoch's end, "
                             "every --checkpoint-every steps, and where Ctrl-C or SIGTERM stopped it)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--tensorboard", action="store_true",
                        help="also write TensorBoard event files into RUN/tensorboard (pip install 'dfc_vae[tensorboard]')")


def run(args: argparse.Namespace) -> None:
    from dfc_vae.training.loop import Trainer

    trainer = Trainer(config_from_args(args), resume=args.resume, progress=not args.no_progress,
                      tensorboard=args.tensorboard)
    out = trainer.fit()
    if trainer.procs.is_main:  # under torchrun, one line, from rank 0
        print(f"run written to {out}")
        _fit_prior(out, trainer.cfg.device, not args.no_progress)


def _fit_prior(run_dir, device: str, progress: bool) -> None:
    """The prior fitted to the training faces, kept with the run; a run is complete without it (a note says how to
    fit it later)."""
    from dfc_vae.runs.prior import FILE, describe_prior, fit_prior
    from dfc_vae.runs.run import load_run

    try:
        with run_lock(run_dir, "fit-prior", create=False):
            run = load_run(run_dir, device)
            prior = fit_prior(run, progress=progress)
            prior.save(run.path / FILE)
        print(f"prior {describe_prior(prior)}: {run.path / FILE}")
    except UserError as e:
        print(f"no prior fitted ({e}); fit one with `dfc-vae fit-prior --run {run_dir}`")
