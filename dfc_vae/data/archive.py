"""Zip archives of faces, read in place: the table of contents read once, each image's bytes read
with one positioned read (safe to share between worker processes) and checked against its CRC, and a
file that is not a zip at all -- a web page saved under the zip's name, a download cut short, another
archive format -- named for what it is.

The messages end with `fix`, the caller's sentence on where to get the right file (CelebA's sources
live in dfc_vae.data.celeba).
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from dfc_vae.util.errors import UserError

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first entry, or the end record of an empty zip
_LOCAL_HEADER = 30  # bytes of a local file header before its name and extra field
_STORED, _DEFLATED = 0, 8
_HEAD = 65536  # bytes read to tell what a file is (a web page names itself early)
# First bytes of files people end up with instead of the zip they asked for.
_OTHER_FILES = ((b"7z\xbc\xaf\x27\x1c", "a 7z archive"), (b"Rar!", "a RAR archive"), (b"\x1f\x8b", "a gzip file"),
                (b"\xff\xd8", "a JPEG image"), (b"\x89PNG", "a PNG image"), (b"%PDF", "a PDF document"))


class Member(NamedTuple):
    """One file inside a zip: where its local header starts and how its bytes are stored."""

    name: str
    offset: int
    compressed: int
    size: int
    method: int
    crc: int


class DamagedMember(Exception):
    """A member whose bytes cannot be read back as they went in (cut short, CRC mismatch, unknown compression)."""


@dataclass
class ZipArchive:
    """A zip's files (folders left out), read from its table of contents."""

    path: Path
    members: dict[str, Member]
    bytes: int  # the size of the zip file

    def images(self, suffixes) -> list[Member]:
        """The members whose names end in one of `suffixes` (any case), hidden files and macOS's
        resource forks (__MACOSX/, ._NAME) left out, in the order of their names."""
        out = [m for name, m in self.members.items()  # string tests: CelebA's zip has 202,599 members
               if name.lower().endswith(suffixes) and not name.startswith((".", "__MACOSX/")) and "/." not in name]
        return sorted(out, key=lambda m: m.name)

    def read(self, name: str) -> bytes:
        """The bytes of one member, by name (small files such as a labels file)."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            return read_member(fd, self.members[name])
        except DamagedMember as e:
            raise UserError(f"{self.path}: {name} is damaged ({e}); download the archive again") from None
        finally:
            os.close(fd)


def page_kind(head: bytes) -> str | None:
    """What a web page saved in place of a download is, from its first bytes; None when not a web page."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if not text.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<meta", b"<script", b"<!--")):
        return None
    if b"quota" in head.lower() or b"too many users have viewed or downloaded" in head.lower():
        return "Google Drive's 'download quota exceeded' page"
    if b"virus" in head.lower():
        return "Google Drive's 'cannot scan this file for viruses' page"
    if b"accounts.google.com" in head.lower() or b"sign in" in head.lower():
        return "a sign-in page"
    return "a web page"


def describe_head(head: bytes) -> str | None:
    """What a file that should be a zip or a text file is instead, from its first bytes (None: nothing known)."""
    page = page_kind(head)
    if page:
        return f"an HTML page ({page}) saved under the file's name"
    return next((name for magic, name in _OTHER_FILES if head.startswith(magic)), None)


def read_head(path: Path, n: int = _HEAD) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def open_zip(path: str | Path, fix: str, expected_bytes: int | None = None) -> ZipArchive:
    """The table of contents of the zip at `path`, or a UserError saying what the file is instead
    (empty, a web page, cut short, another format), ending with `fix`. `expected_bytes`: the size of
    the complete download, when known, named in the message of a zip cut short."""
    path = Path(path)
    try:
        size = path.stat().st_size
        head = read_head(path)
    except OSError as e:
        raise UserError(f"cannot read {path} ({e.strerror}); check its permissions") from None
    if size == 0:
        raise UserError(f"{path} is empty (0 bytes): the download never started; {fix}")
    other = describe_head(head)
    if other:
        raise UserError(f"{path} is not a zip but {other} ({size:,} bytes); {fix}")
    if not head.startswith(ZIP_MAGIC):
        raise UserError(f"{path} is not a zip (it starts with {head[:8]!r}); {fix}")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, struct.error) as e:
        of = f" of the {expected_bytes:,} of the complete file" if expected_bytes and size < expected_bytes else ""
        raise UserError(f"{path} is a zip cut short ({size:,} bytes{of}; its table of contents, written last, is "
                        f"missing: {e}), as an interrupted download leaves it; {fix}") from None
    encrypted = next((i.filename for i in infos if i.flag_bits & 1), None)
    if encrypted:
        raise UserError(f"{path} is encrypted ({encrypted} needs a password); unpack it yourself and pass the folder")
    members = {i.filename: Member(i.filename, i.header_offset, i.compress_size, i.file_size, i.compress_type, i.CRC)
               for i in infos if not i.is_dir()}
    return ZipArchive(path, members, size)


def read_member(fd: int, m: Member) -> bytes:
    """The bytes of member `m` of the zip open as `fd`, by positioned reads (no shared file offset, so
    worker processes may share the descriptor), inflated and checked against the member's CRC."""
    header = os.pread(fd, _LOCAL_HEADER, m.offset)
    if len(header) < _LOCAL_HEADER or header[:4] != b"PK\x03\x04":
        raise DamagedMember("its local header is missing: the zip is cut short or damaged")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    data = os.pread(fd, m.compressed, m.offset + _LOCAL_HEADER + name_len + extra_len)
    if len(data) != m.compressed:
        raise DamagedMember(f"{len(data)} of its {m.compressed} bytes are there: the zip is cut short")
    if m.method == _DEFLATED:
        try:
            data = zlib.decompress(data, -15)
        except zlib.error as e:
            raise DamagedMember(f"it does not inflate ({e})") from None
    elif m.method != _STORED:
        raise DamagedMember(f"compression method {m.method} is not stored or deflated; re-zip it with a common tool")
    if len(data) != m.size or zlib.crc32(data) != m.crc:
        raise DamagedMember("its bytes do not match the CRC the zip records for it")
    return data


def top_folder(names) -> str:
    """The one top-level folder (ending in '/') every name lies in, or '' when there is none: a zip
    made of a folder (`zip -r faces.zip faces`) holds the same relative paths as the folder once this
    is taken off."""
    names = [n for n in names if not n.startswith("__MACOSX/")]
    tops = {n.split("/", 1)[0] for n in names}
    return tops.pop() + "/" if len(tops) == 1 and all("/" in n for n in names) else ""
