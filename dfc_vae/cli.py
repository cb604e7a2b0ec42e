"""`dfc-vae`: one command with subcommands.

Each subcommand lives in dfc_vae/commands/NAME.py and defines HELP, ORDER, add_arguments(parser)
and run(args) (commands/_common.py holds what several share); this file finds them, parses, and runs
the one asked for through errors.exit_status (a UserError: one line and exit 2).
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from typing import NoReturn

from dfc_vae import __version__
from dfc_vae import commands
from dfc_vae.training.distributed import world_size
from dfc_vae.util.errors import exit_status


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with usage errors as one line and exit status 2 (no usage dump)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="dfc-vae", description="Deep Feature Consistent VAE (Hou et al., WACV 2017): "
                     "train, sample, edit faces and reproduce the paper's figures.")
    parser.add_argument("--version", action="version", version=f"dfc_vae {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    modules = [importlib.import_module(f"{commands.__name__}.{m.name}") for m in pkgutil.iter_modules(commands.__path__)
               if not m.name.startswith("_")]
    for mod in sorted(modules, key=lambda m: (getattr(m, "ORDER", 100), m.__name__)):
        name = mod.__name__.rsplit(".", 1)[-1].replace("_", "-")  # fit_prior.py: `dfc-vae fit-prior`
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def script_main(command, prog: str, doc: str, argv=None) -> None:
    """Run a figure command as the experiment script `prog` (experiments/PROG.py, described by the first
    line of `doc`): its flags, its output, and its errors as one line and exit status 2."""
    parser = ArgumentParser(description=doc.splitlines()[0])
    command.add_arguments(parser)
    args = parser.parse_args(argv)
    status = exit_status(prog, lambda: command.run(args))
    if status:
        sys.exit(status)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error (already printed, status 2)
        return e.code if isinstance(e.code, int) else 2
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    return exit_status(f"dfc-vae {args.command}", lambda: args._run(args))


def run() -> NoReturn:
    """The process's entry point (the `dfc-vae` script, `python -m dfc_vae`): main's status as its exit status."""
    status = main()
    if world_size() > 1:
        # A torchrun worker leaves without finalizing the interpreter: Gloo's worker threads may still be
        # releasing the tensors of the last collective, which takes the GIL, and a thread that asks for the
        # GIL while the interpreter finalizes aborts the process (SIGABRT, after a finished run). Every
        # file is written and closed by now; only the terminal's buffers are left to flush.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


if __name__ == "__main__":
    run()
