"""`dfc-vae demo`: its flags (the demo's settings among them) and the call into app/demo.py."""

import argparse

HELP = "the whole job offline: synthetic faces -> train -> attribute vectors -> Figs. 5 and 6 -> report"
ORDER = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from dataclasses import fields

    from dfc_vae.app.demo import DemoSettings

    parser.add_argument("--out", default="dfc_vae_demo", help="folder for everything the demo makes (default: dfc_vae_demo)")
    parser.add_argument("--cache-dir", help="folder of the decoded-image cache (default: OUT/cache)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (step lines only)")
    for f in fields(DemoSettings):
        flag = "--" + f.name.replace("_", "-")
        parser.add_argument(flag, type=type(f.default), default=f.default, metavar=f.name.upper(),
                            help=f"{f.metadata['help']} (default: {f.default})".replace("%", "%%"))


def run(args: argparse.Namespace) -> None:
    from dataclasses import fields

    from dfc_vae.app.demo import DemoSettings, run_demo

    settings = DemoSettings(**{f.name: getattr(args, f.name) for f in fields(DemoSettings)})
    report = run_demo(args.out, settings, args.cache_dir, progress=not args.no_progress)
    print(f"report written to {report}")
