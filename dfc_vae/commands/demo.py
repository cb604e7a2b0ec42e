"""`dfc-vae demo`: its flags (the demo's settings among them) and the call into app/demo.py."""

import argparse

from dfc_vae.app.demo import DemoSettings, run_demo
from dfc_vae.runs.config import add_setting_flags, given_settings
from dfc_vae.training.interrupt import TrainingInterrupted

HELP = "the whole job offline: synthetic faces -> train -> attribute vectors -> Figs. 5 and 6 -> report"
ORDER = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="dfc_vae_demo", help="folder for everything the demo makes (default: dfc_vae_demo)")
    parser.add_argument("--cache-dir", help="folder of the decoded-image cache (default: OUT/cache)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (step lines only)")
    add_setting_flags(parser, DemoSettings)


def run(args: argparse.Namespace) -> None:
    settings = DemoSettings(**given_settings(DemoSettings, args))
    try:
        report = run_demo(args.out, settings, args.cache_dir, progress=not args.no_progress)
    except TrainingInterrupted:  # the demo starts over when run again: no `train --resume` to offer
        raise KeyboardInterrupt from None
    print(f"report written to {report}")
