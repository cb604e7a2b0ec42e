import argparse

HELP = "draw training curves (loss, reconstruction, KL, active units against the step) of one or more runs"
ORDER = 35


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, nargs="+", metavar="RUN", help="run directories made by `dfc-vae train`")
    parser.add_argument("--out", help="PNG to write (default: RUN/curves.png for one run, curves.png for several)")


def run(args: argparse.Namespace) -> None:
    from pathlib import Path

    from dfc_vae.training.curves import plot_curves

    out = args.out or (Path(args.run[0]) / "curves.png" if len(args.run) == 1 else "curves.png")
    print(f"wrote {plot_curves(args.run, out)}")
