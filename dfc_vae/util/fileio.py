"""Atomic file writes: a reader (or a resumed run) never sees a half-written file.

Everything the project writes goes through here: write to a temporary file in the same folder,
flush and fsync it, then rename it over the target (rename is atomic on POSIX filesystems).
The check that a folder to write into is not a file (output_folder) lives here too.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

from dfc_vae.util.errors import UserError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
    except OSError as e:
        raise UserError(f"cannot write to {path.parent}: {e.strerror}; choose a writable folder") from e
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, FileNotFoundError):
            raise UserError(f"writing {path} failed: {e.strerror or e}; free some space or choose another folder") from e
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def output_folder(path: str | os.PathLike, flag: str = "--out", purpose: str = "") -> Path:
    """`path` as a Path, refused (a UserError naming `flag`) when it is an existing file: a folder to write
    into may be new, empty or not, but not a file. `purpose` ends the message, e.g. " for the report"."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file; give a folder{purpose}")
    return path
