"""One writer per run directory: an exclusive OS lock held while a command writes a run's files.

The lock is `fcntl.flock` on RUN/.lock, which the OS releases when the holder's process ends in any
way (kill -9 included), so a crashed run needs no cleanup before `--resume`. The file holds the
holder's PID and command, for the message that refuses a second writer; its presence alone means
nothing (the lock does).

Where the file system cannot flock (NFS, which emulates it with POSIX locks that refuse a folder
opened read-only, Lustre mounted without `-o flock`: ENOLCK, EBADF, ENOSYS, EOPNOTSUPP), the lock
is instead a file created with O_EXCL beside it (OWNER_NAME) that names its holder's host and PID,
removed when the holder is done; one whose PID is gone on this host is stale and taken over. A
note says so once per process.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

from dfc_vae.util.errors import UserError

LOCK_NAME = ".lock"
OWNER_NAME = ".owner.lock"  # the lock where flock is refused: it exists while held
NO_FLOCK = frozenset({errno.ENOLCK, errno.EBADF, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP})
POLL_S = 0.5  # how often a waiting_lock without flock looks again
_noted = False


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
    owner = None  # the O_EXCL file, where flock is refused
    try:
        try:
            if not _flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, run):
                owner = run / OWNER_NAME
                holder = _take_owner_file(owner, command)
                if holder is not None:
                    raise UserError(f"{run} is in use by {holder}; wait for it to finish or stop it, or choose "
                                    f"another folder (if that process is gone, remove {owner})")
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
                if owner is not None:
                    owner.unlink(missing_ok=True)
                    owner = None
                if made_dir and not any(run.iterdir()):
                    run.rmdir()
            raise
    finally:
        if owner is not None:
            _release_owner_file(owner)
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
    owner = None
    try:
        if not _flock(fd, fcntl.LOCK_EX, folder):
            owner = folder / OWNER_NAME
            while _take_owner_file(owner, "prepare") is not None:
                time.sleep(POLL_S)
        yield
    finally:
        if owner is not None:
            _release_owner_file(owner)
        os.close(fd)


def _flock(fd: int, flags: int, where: Path) -> bool:
    """flock(fd, flags): True when held; False where the file system cannot flock (noted once).
    BlockingIOError (held by another process, with LOCK_NB) goes to the caller."""
    global _noted
    try:
        fcntl.flock(fd, flags)
        return True
    except OSError as e:
        if e.errno not in NO_FLOCK:
            raise
        if not _noted:
            _noted = True
            print(f"note: the file system of {where} cannot lock files (flock: {e.strerror}); using lock files "
                  f"that name their host and PID instead ({OWNER_NAME}; one left by a crashed process on another "
                  "host must be removed by hand)", file=sys.stderr)
        return False


def _owner_line(command: str) -> str:
    return f"PID {os.getpid()} on {socket.gethostname()} (dfc-vae {command})"


def _take_owner_file(path: Path, command: str) -> str | None:
    """Create `path` with O_EXCL, naming this process: None when taken, else who holds it. A file
    whose PID is gone on this host is stale: it is removed and the take tried again. (Two processes
    taking over the same stale file at the same moment can both succeed; a file left by a crash is
    rare enough, and NFS offers nothing better without flock.)"""
    for _ in range(3):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            try:
                holder = path.read_text(errors="replace").strip()
            except FileNotFoundError:  # released meanwhile
                continue
            if not _stale(holder):
                return holder or "another process"
            path.unlink(missing_ok=True)
            continue
        except OSError as e:
            raise UserError(f"cannot lock {path.parent} ({e.strerror}); choose a folder you can write to") from e
        try:
            os.write(fd, (_owner_line(command) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return None
    return "another process"


def _stale(holder: str) -> bool:
    """Whether an owner file's holder ("PID N on HOST ...") is a process that no longer runs on this
    host; a holder on another host cannot be checked from here and counts as alive."""
    m = re.match(r"PID (\d+) on (\S+)", holder)
    if m is None or m.group(2) != socket.gethostname():
        return False
    try:
        os.kill(int(m.group(1)), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _release_owner_file(path: Path) -> None:
    """Remove our owner file (only ours: a stale take-over may have replaced it)."""
    try:
        if path.read_text(errors="replace").startswith(f"PID {os.getpid()} on {socket.gethostname()} "):
            path.unlink()
    except FileNotFoundError:
        pass
