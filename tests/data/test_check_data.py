"""`dfc-vae check-data`: a CelebA download checked file by file against the published sizes and MD5 sums, the
images against the annotations, the split and what training would do -- on a good and on damaged trees."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from dfc_vae.cli import main
from dfc_vae.data.check import check_data
from dfc_vae.data.synth import render_celeba
from dfc_vae.data.faces import SYNTHETIC_MARKER

from archives import flip_byte, zipped_celeba

N = 20


@pytest.fixture(scope="module")
def download(tmp_path_factory):
    """A synthetic CelebA as downloaded: annotation files and img_align_celeba.zip."""
    base = tmp_path_factory.mktemp("check")
    unpacked = render_celeba(base / "unpacked", n=N, seed=11, layout="official", workers=1, progress=False)
    return zipped_celeba(unpacked, base / "download", "official")


def _published(folder):
    """Sizes and MD5 sums of the files as they are: the 'published' ones of a copy taken for real CelebA."""
    names = ("img_align_celeba.zip", "list_attr_celeba.txt", "list_eval_partition.txt", "identity_CelebA.txt")
    return {n: ((folder / n).stat().st_size, hashlib.md5((folder / n).read_bytes()).hexdigest()) for n in names}


def _line(check, name):
    return next(ln for ln in check.lines if f" {name} " in ln)


def test_a_good_download_is_reported_on_one_screen_and_passes(download, capsys):
    rc = main(["check-data", str(download), "--no-progress"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0 and len(out) <= 24, out
    assert out[0].startswith("synthetic faces") and "not CelebA" in out[0]
    assert any(f"images: {N} in img_align_celeba.zip" in ln and f"{N} rows in list_attr_celeba.txt" in ln for ln in out)
    assert any(ln.startswith("split: ") and "list_eval_partition" in ln for ln in out)
    assert any("every image matches its CRC" in ln for ln in out)  # a zip with no published sum is read through
    assert any(f"training would: decode {N} faces from img_align_celeba.zip (never unpacked)" in ln for ln in out)
    assert out[-1].startswith("nothing wrong found")


def test_sizes_and_md5_sums_are_compared_with_the_published_ones(download, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(download, copy)
    (copy / SYNTHETIC_MARKER).unlink()  # taken for real CelebA, against "published" sums of these very files
    published = _published(copy)
    good = check_data(copy, progress=False, published=published)
    assert not good.problems
    assert _line(good, "img_align_celeba.zip").split()[0] == "ok" and "MD5" in _line(good, "list_attr_celeba.txt")
    # the same size, one byte changed: only the sum can tell
    attr = copy / "list_attr_celeba.txt"
    text = attr.read_text()
    attr.write_text(text[:-3] + ("1" if text[-3] == "-" else "-") + text[-2:])
    bad = check_data(copy, progress=False, published=published)
    assert _line(bad, "list_attr_celeba.txt").split()[0] == "WRONG" and "damaged" in _line(bad, "list_attr_celeba.txt")
    assert _line(bad, "list_eval_partition.txt").split()[0] == "ok"


def test_a_damaged_download_names_each_problem_and_exits_2(download, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(download, copy)
    data = (copy / "img_align_celeba.zip").read_bytes()
    (copy / "img_align_celeba.zip").write_bytes(data[:len(data) // 2])
    (copy / "list_eval_partition.txt").unlink()
    (copy / "list_attr_celeba.txt").write_text("<!DOCTYPE html><html><title>Quota exceeded</title></html>")
    rc = main(["check-data", str(copy), "--no-progress"])
    captured = capsys.readouterr()
    out, err = captured.out, captured.err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "more, listed above" in err[0]
    assert "WRONG    list_attr_celeba.txt" in out and "HTML page (Google Drive's 'download quota exceeded' page)" in out
    assert "missing  list_eval_partition.txt" in out and "official split by image number" in out
    assert "is a zip cut short" in out and "training would stop:" in out
    assert sorted(p.name for p in copy.iterdir()) == sorted(p.name for p in download.iterdir()
                                                            if p.name != "list_eval_partition.txt")


def test_a_damaged_image_in_a_zip_without_a_published_sum_is_found(download, tmp_path):
    from dfc_vae.data.archive import open_zip

    copy = tmp_path / "copy"
    shutil.copytree(download, copy)
    flip_byte(copy / "img_align_celeba.zip", open_zip(copy / "img_align_celeba.zip", "").members["img_align_celeba/000007.jpg"])
    check = check_data(copy, progress=False)
    assert len(check.problems) == 1
    assert check.problems[0].startswith("1 images in img_align_celeba.zip are damaged (e.g. img_align_celeba/000007.jpg")


def test_an_unpacked_copy_without_the_zip_and_a_wrong_count(download, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(download, copy)
    shutil.unpack_archive(copy / "img_align_celeba.zip", copy)
    (copy / "img_align_celeba.zip").unlink()
    check = check_data(copy, progress=False)
    assert not check.problems and "unpacked img_align_celeba/ folder is used" in _line(check, "img_align_celeba.zip")
    (copy / "img_align_celeba" / "000003.jpg").unlink()
    check = check_data(copy, progress=False)
    assert any(f"holds {N - 1}" in p for p in check.problems)
    assert any("training would stop: 1 of the 20 images" in ln for ln in check.lines)
