"""Folders of faces as people have them: odd file names, linked folders, formats that are not
photos, and damaged settings or marker files (each one line and exit status 2)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfc_vae.cli import main
from dfc_vae.data import cache as cache_module
from dfc_vae.data.cache import prepare_cache
from dfc_vae.data.decode import open_photo
from dfc_vae.data.folder import hashed_split, scan_images
from dfc_vae.data.sources import open_faces
from dfc_vae.data.faces import SYNTHETIC_MARKER
from dfc_vae.util.errors import UserError

LATIN1 = os.fsdecode(b"caf\xe9.jpg")  # a name written on a Latin-1 system: not valid UTF-8
ODD_NAMES = ["a\nb.jpg", "a\x85b.jpg", "a\u2028b.jpg", "with space.jpg", LATIN1]


def face_jpeg(path: Path, shade: int) -> None:
    pixels = np.full((40, 40, 3), shade, np.uint8)
    pixels[10:30, 10:30] = 255 - shade
    Image.fromarray(pixels).save(path, format="JPEG", quality=95)


def one_line_error(capsys, rc) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_any_name_a_filesystem_allows_trains_from_one_cache(tmp_path, monkeypatch):
    folder = tmp_path / "faces"
    folder.mkdir()
    for i, name in enumerate(ODD_NAMES):
        face_jpeg(folder / name, 30 * i)
    faces = open_faces(folder)
    assert sorted(faces.ids) == sorted(ODD_NAMES)
    assert len(hashed_split(faces.ids)) == len(ODD_NAMES)
    assert hashed_split(["plain.jpg"], 3)[0] == hashed_split(["plain.jpg"], 3)[0]  # names that were fine hash as before
    made = prepare_cache(faces, 32, cache_dir=tmp_path / "c", progress=False)
    assert made.ids == faces.ids and made.images.shape == (len(ODD_NAMES), 32, 32, 3)
    # a second process (a new FaceSet) finds the same cache instead of decoding again
    monkeypatch.setattr(cache_module, "_decode_all", lambda *a: pytest.fail("the cache was decoded again"))
    again = prepare_cache(open_faces(folder), 32, cache_dir=tmp_path / "c", progress=False)
    assert again.path == made.path and again.ids == faces.ids
    assert (np.asarray(again.images) == np.asarray(made.images)).all()
    shades = {name: int(np.asarray(again.images[i]).mean()) for i, name in enumerate(again.ids)}
    assert shades["a\nb.jpg"] != shades[LATIN1]  # each name's row is its own face


def test_linked_folders_never_lead_out_of_the_data_or_round_a_loop(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    face_jpeg(outside / "private.jpg", 10)
    folder = tmp_path / "faces"
    (folder / "real").mkdir(parents=True)
    face_jpeg(folder / "top.jpg", 50)
    face_jpeg(folder / "real" / "inner.jpg", 90)
    (folder / "real" / "loop").symlink_to(folder, target_is_directory=True)  # back to the top: a loop
    (folder / "out").symlink_to(outside, target_is_directory=True)  # out of the data
    (folder / "alias").symlink_to(folder / "real", target_is_directory=True)  # inside: visited once
    found = scan_images(folder)
    assert found in (["alias/inner.jpg", "top.jpg"], ["real/inner.jpg", "top.jpg"])
    assert not any("private" in name for name in found)


def pcx_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), (90, 60, 30)).save(buf, format="PCX")
    return buf.getvalue()


def test_only_photo_formats_are_decoded_and_others_named(tmp_path):
    with pytest.raises(UserError, match=r"the photo is in the PCX format; dfc_vae reads only JPEG, PNG or WebP"):
        open_photo(pcx_bytes(), "the photo")
    buf = io.BytesIO()
    Image.new("RGB", (40, 40)).save(buf, format="TIFF")
    (tmp_path / "scan.tif").write_bytes(buf.getvalue())
    with pytest.raises(UserError, match="TIFF format"):
        open_photo(tmp_path / "scan.tif")
    for fmt in ("JPEG", "PNG", "WEBP", "MPO"):
        buf = io.BytesIO()
        Image.new("RGB", (40, 40), (10, 200, 30)).save(buf, format=fmt)
        assert open_photo(buf.getvalue(), "the photo").getpixel((5, 5))[1] > 150, fmt
    # in a folder of faces: a PCX renamed .jpg is listed with the files that cannot be read
    folder = tmp_path / "faces"
    folder.mkdir()
    face_jpeg(folder / "good.jpg", 40)
    (folder / "renamed.jpg").write_bytes(pcx_bytes())
    with pytest.raises(UserError, match=r"1 images could not be read: .*renamed\.jpg.*PCX format"):
        prepare_cache(open_faces(folder), 32, cache_dir=tmp_path / "c", progress=False)


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path, capsys):
    config = tmp_path / "settings.toml"
    config.write_bytes("epochs = 2\n# caf\u00e9\n".encode("latin-1"))
    rc = main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--config", str(config)])
    line = one_line_error(capsys, rc)
    assert "not UTF-8" in line and "settings.toml" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("marker", [b"{not json", b"[1, 2]", b"\xff\xfe{}"])
def test_a_damaged_synthetic_marker_is_one_line(tmp_path, capsys, marker):
    folder = tmp_path / "faces"
    folder.mkdir()
    face_jpeg(folder / "one.jpg", 40)
    (folder / SYNTHETIC_MARKER).write_bytes(marker)
    with pytest.raises(UserError, match="marker .* is damaged"):
        open_faces(folder)
    line = one_line_error(capsys, main(["prepare", "--data", str(folder), "--cache-dir", str(tmp_path / "c")]))
    assert SYNTHETIC_MARKER in line and "dfc-vae synth" in line
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())
    (folder / SYNTHETIC_MARKER).write_text(json.dumps({"seed": 4}))
    assert open_faces(folder).synthetic == {"seed": 4}
