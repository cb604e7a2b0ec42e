"""Reading a zip's members in place: runs of neighbouring members read together give exactly what
reading each alone gives, damaged members included."""

from __future__ import annotations

import os
import zipfile

import pytest

from dfc_vae.data import archive
from dfc_vae.data.archive import DamagedMember, open_zip, read_member, read_members


def _zip(path, files, method=zipfile.ZIP_DEFLATED, extra=b""):
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in files:
            info = zipfile.ZipInfo(name)
            info.compress_type = method
            info.extra = extra
            zf.writestr(info, data)
    return open_zip(path, "get it again")


def _read_each(path, members):
    fd = os.open(path, os.O_RDONLY)
    try:
        out = []
        for m in members:
            try:
                out.append(read_member(fd, m))
            except DamagedMember as e:
                out.append(str(e))
        together = [got if isinstance(got, bytes) else str(got) for got in read_members(fd, members)]
    finally:
        os.close(fd)
    return out, together


FILES = [(f"faces/{i:03d}.jpg", os.urandom(50 + 37 * i) + b"face" * i) for i in range(40)]


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])
def test_members_read_together_equal_members_read_alone(tmp_path, method, monkeypatch):
    monkeypatch.setattr(archive, "_SPAN", 2000)  # many spans, so their edges are crossed
    zipped = _zip(tmp_path / "a.zip", FILES, method)
    members = zipped.images((".jpg",))
    each, together = _read_each(zipped.path, members)
    assert each == together == [data for _, data in FILES]
    shuffled = members[::3] + members[1::3]  # not neighbours in the file: read one by one
    assert _read_each(zipped.path, shuffled)[1] == [dict(FILES)[m.name] for m in shuffled]


def test_a_local_extra_field_longer_than_the_slack_is_still_read(tmp_path):
    extra = b"\xfe\xca" + (400).to_bytes(2, "little") + bytes(400)  # one 404-byte extra field per header
    zipped = _zip(tmp_path / "b.zip", FILES[:5], extra=extra)
    each, together = _read_each(zipped.path, zipped.images((".jpg",)))
    assert each == together == [data for _, data in FILES[:5]]


def test_a_damaged_member_is_named_and_its_neighbours_still_read(tmp_path):
    zipped = _zip(tmp_path / "c.zip", FILES[:6], zipfile.ZIP_STORED)
    members = zipped.images((".jpg",))
    raw = bytearray(zipped.path.read_bytes())
    raw[members[2].offset + 30 + len(members[2].name) + 3] ^= 0xFF  # a byte of the third image
    zipped.path.write_bytes(bytes(raw))
    each, together = _read_each(zipped.path, members)
    assert each == together
    assert "CRC" in together[2] and [t for i, t in enumerate(together) if i != 2] == [d for i, (_, d) in
                                                                                      enumerate(FILES[:6]) if i != 2]


def test_a_zip_cut_inside_its_last_member_says_so(tmp_path):
    zipped = _zip(tmp_path / "d.zip", FILES[:4], zipfile.ZIP_STORED)
    members = zipped.images((".jpg",))
    with open(zipped.path, "r+b") as f:
        f.truncate(members[-1].offset + 40)
    each, together = _read_each(zipped.path, members)
    assert each == together and "cut short" in together[-1] and together[:3] == [d for _, d in FILES[:3]]
