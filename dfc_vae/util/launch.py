"""Starting several training processes on this machine with torchrun: the command line and the
environment its children start from (the tests and the GPU check launch `-m dfc_vae train` this way)."""

from __future__ import annotations

import os
import socket
import sys

# what torchrun sets in each child: a process started from inside one must not inherit them
TORCHRUN_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_command(nproc: int, args: list[str], port: int | None = None) -> list[str]:
    """`python -m torch.distributed.run` with `nproc` processes on this machine, meeting on 127.0.0.1 at
    `port` (default: a free one), each running `args` (e.g. ["-m", "dfc_vae", "train", ...])."""
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1",
            f"--master_port={port or free_port()}", *args]


def launch_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of `environ` (default: this process's) without torchrun's variables, so that a launched
    process starts a process group of its own."""
    return {k: v for k, v in (os.environ if environ is None else environ).items() if k not in TORCHRUN_VARIABLES}
