"""One writer per run directory: an exclusive OS lock held while a command writes a run's files.

The lock is `fcntl.flock` on RUN/.lock, which the OS releases when the holder's process ends in any
way (kill -9 included), so a crashed run needs no cleanup before `--resume`. The file holds the
holder's PID and command, for the message that refuses a second writer; its presence alone means
nothing (the lock does).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from dfc_vae.util.errors import UserError

LOCK_NAME = ".lock"


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike, command: str, create: bool = True) -> Iterator[Path]:
    """Hold RUN/.lock exclusively for the `with` block, or refuse at once (UserError naming the
    holder's PID). When the block fails, a lock file made here is removed again, and so is a
    directory made here for it if nothing else was written into it (a refused start leaves nothing).
    With `create=False` a missing directory is refused instead of made."""
    run = Path(run_dir)
    made_dir = not run.exists()
    if made_dir and not create:  # a command that uses an existing run
        raise UserError(f"run directory {run} does not exist; pass --run a folder made by `dfc-vae train`")
    try:
        run.mkdir(parents=True, exist_ok=True)
        path = run / LOCK_NAME
        made_file = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise UserError(f"cannot lock {run} ({e.strerror}); choose a folder you can write to") from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise UserError(f"{run} is in use by {holder}; wait for it to finish or stop it, "
                            "or choose another folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()} (dfc-vae {command})\n".encode(), 0)
        try:
            yield path
        except BaseException:
            if made_file:  # still locked by us: no other writer is in the folder
                path.unlink(missing_ok=True)
                if made_dir and not any(run.iterdir()):
                    run.rmdir()
            raise
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


@contextlib.contextmanager
def waiting_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on the folder `folder` (made if missing) for the `with` block, waiting
    for another holder to finish first (for work that a second process can then reuse, such as a
    cache being made). The lock is on the folder itself, so no lock file is left behind."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY)
    except OSError as e:
        raise UserError(f"cannot write in {folder} ({e.strerror}); choose a writable folder") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
