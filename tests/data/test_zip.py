"""CelebA as it arrives: img_align_celeba.zip read in place in each source's layout, a folder of faces
given as a zip, the cache shared with the unpacked folder, and failed downloads named for what they are
(one line, exit status 2, nothing written)."""

from __future__ import annotations

import csv
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dfc_vae.cli import main
from dfc_vae.data.cache import prepare_cache
from dfc_vae.data.sources import open_faces
from dfc_vae.util.errors import UserError

from archives import ZIPPED, drive_tree, flip_byte, render_layouts, zip_folder, zipped_celeba

N = 24
@pytest.fixture(scope="module")
def unpacked(tmp_path_factory):
    return render_layouts(tmp_path_factory.mktemp("unpacked"), N, seed=7)


@pytest.fixture(scope="module")
def zipped(unpacked, tmp_path_factory):
    base = tmp_path_factory.mktemp("zipped")
    out = {layout: zipped_celeba(unpacked[layout], base / layout, layout) for layout in ZIPPED}
    zip_folder(unpacked["folder"], base / "faces.zip", "faces/")  # zip -r faces.zip faces
    out["folder"] = base / "faces.zip"
    return out


def _same(a, b) -> None:
    assert a.ids == b.ids and np.array_equal(a.split, b.split)
    pd.testing.assert_frame_equal(a.labels, b.labels)


@pytest.mark.parametrize("layout", ["official", "torchvision", "kaggle", "folder"])
def test_the_zip_alone_gives_the_faces_and_cache_bytes_of_the_unpacked_folder(unpacked, zipped, layout, tmp_path):
    from_zip, from_folder = open_faces(zipped[layout]), open_faces(unpacked[layout])
    _same(from_zip, from_folder)
    assert from_zip.archive is not None and from_folder.archive is None
    assert from_zip.synthetic and from_zip.provenance()["archive"].endswith(".zip")
    a = prepare_cache(from_zip, 32, None, tmp_path / "a", workers=2, progress=False)
    b = prepare_cache(from_folder, 32, None, tmp_path / "b", workers=1, progress=False)
    assert a.ids == b.ids and np.array_equal(np.asarray(a.images), np.asarray(b.images))
    assert a.meta["archive"] == str(from_zip.archive.path.resolve()) and "archive" not in b.meta


def test_nothing_is_unpacked(zipped, tmp_path):
    before = sorted(p.name for p in zipped["official"].iterdir())
    prepare_cache(open_faces(zipped["official"]), 32, None, tmp_path / "c", workers=1, progress=False)
    assert sorted(p.name for p in zipped["official"].iterdir()) == before


def test_a_later_run_on_the_unpacked_folder_reuses_the_zips_cache_or_says_why_not(unpacked, zipped, tmp_path, capsys):
    cache = tmp_path / "cache"
    made = prepare_cache(open_faces(zipped["official"]), 32, None, cache, workers=1, progress=False)
    # unpacked beside the zip: the folder is read, and its files match the zip's members
    both = tmp_path / "both"
    shutil.copytree(zipped["official"], both)
    shutil.copytree(unpacked["official"] / "img_align_celeba", both / "img_align_celeba")
    faces = open_faces(both)
    assert faces.archive is None
    reused = prepare_cache(faces, 32, None, cache, progress=False)
    assert reused.path.resolve() == made.path and len(list(cache.iterdir())) == 2  # the cache and a link to it
    assert prepare_cache(open_faces(both), 32, None, cache, progress=False).path == reused.path  # at once, by the link
    # one file changed: a note says why the zip's cache is not used, and the folder is decoded
    victim = both / "img_align_celeba" / faces.ids[2]
    victim.write_bytes((unpacked["official"] / "img_align_celeba" / faces.ids[3]).read_bytes())
    capsys.readouterr()
    own = prepare_cache(open_faces(both), 32, None, cache, workers=1, progress=False)
    err = capsys.readouterr().err
    assert own.path.resolve() != made.path and not own.path.is_symlink()
    assert "is not used" in err and faces.ids[2] in err
    assert np.array_equal(np.asarray(own.images)[3], np.asarray(own.images)[2])


def _html_zip(d):
    (d / "img_align_celeba.zip").write_text("<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded"
                                            "</title></head><body>Too many users have viewed or downloaded this "
                                            "file recently.</body></html>")


def _cut_zip(d):
    data = (d / "img_align_celeba.zip").read_bytes()
    (d / "img_align_celeba.zip").write_bytes(data[:len(data) * 2 // 3])


def _other_zip(d):
    (d / "img_align_celeba.zip").unlink()
    with zipfile.ZipFile(d / "img_align_celeba.zip", "w") as zf:
        zf.writestr("mnist/train-images-idx3-ubyte", b"\0" * 64)


def _short_annotations(d):
    for name in ("list_attr_celeba.txt", "list_eval_partition.txt"):  # both cut at the same row, count line fixed
        lines = (d / name).read_text().splitlines()[:-5]
        if name == "list_attr_celeba.txt":
            lines[0] = str(len(lines) - 2)
        (d / name).write_text("\n".join(lines) + "\n")


def _html_annotations(d):
    (d / "list_attr_celeba.txt").write_text("<html><body>Google Drive can't scan this file for viruses.</body></html>")


@pytest.mark.parametrize("damage,what", [
    (_html_zip, "is not a zip but an HTML page (Google Drive's 'download quota exceeded' page)"),
    (_cut_zip, "is a zip cut short"),
    (_other_zip, "not the zip of CelebA's aligned faces"),
    (_short_annotations, "lists 19 images but"),
    (_html_annotations, "is not an annotation file but an HTML page"),
])
def test_a_failed_download_is_named_in_one_line_exit_2_and_nothing_is_written(zipped, tmp_path, capsys, damage, what):
    data = tmp_path / "download"
    shutil.copytree(zipped["official"], data)
    damage(data)
    before = sorted(p.name for p in data.iterdir())
    rc = main(["prepare", "--data", str(data), "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "Traceback" not in err[0], err
    assert what in err[0] and "torchvision.datasets.CelebA(root, download=True)" in err[0] and "Kaggle" in err[0]
    assert not (tmp_path / "cache").exists() and sorted(p.name for p in data.iterdir()) == before


def test_a_damaged_image_in_the_zip_is_named_and_no_cache_is_left(zipped, tmp_path):
    data = tmp_path / "download"
    shutil.copytree(zipped["official"], data, ignore=shutil.ignore_patterns("img_align_celeba.zip"))
    images = _unzip(zipped["official"] / "img_align_celeba.zip", tmp_path / "x")
    zip_folder(images, data / "img_align_celeba.zip", "img_align_celeba/", zipfile.ZIP_STORED)  # bytes as they are
    faces = open_faces(data)
    flip_byte(data / "img_align_celeba.zip", faces.archive.members[str(faces.paths[4])])
    with pytest.raises(UserError, match=f"1 images could not be read: img_align_celeba/{faces.ids[4]} .*CRC"):
        prepare_cache(faces, 32, None, tmp_path / "cache", workers=1, progress=False)
    assert not [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]


def _unzip(zip_path: Path, out: Path) -> Path:
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(out)
    return out / "img_align_celeba"


def test_a_zip_of_faces_keeps_its_labels_split_and_marker(unpacked, zipped, tmp_path, capsys):
    faces = open_faces(zipped["folder"])
    assert faces.kind == "folder" and faces.attribute_names and faces.synthetic
    assert "faces in" in faces.description or "synthetic" in faces.description
    # a zip made from inside the folder (no top folder) and labels given with --labels
    flat = tmp_path / "flat.zip"
    with zipfile.ZipFile(flat, "w") as zf:
        for name in faces.ids:
            zf.write(unpacked["folder"] / name, name)
    with_labels = open_faces(flat, labels=unpacked["folder"] / "labels.csv")
    _same(with_labels, faces)
    assert not open_faces(flat).attribute_names
    rc = main(["prepare", "--data", str(tmp_path / "nothing.zip"), "--cache-dir", str(tmp_path / "c")])
    assert rc == 2 and "does not exist" in capsys.readouterr().err
    (tmp_path / "only").mkdir()
    shutil.copy(flat, tmp_path / "only" / "faces.zip")
    with pytest.raises(UserError, match=f"pass --data {tmp_path / 'only' / 'faces.zip'}"):
        open_faces(tmp_path / "only")


@pytest.mark.slow
def test_training_from_the_zip_alone_equals_training_from_the_unpacked_folder(tiny_trained_run, synth_root, tmp_path):
    from tiny import tiny_config

    from dfc_vae.training.loop import train

    data = zipped_celeba(synth_root, tmp_path / "download", "official")
    cfg = tiny_config(data=str(data), out=str(tmp_path / "run"), vgg_weights="imagenet", latent_dim=16,
                      base_channels=8, epochs=1, max_steps=2, cache_dir=str(tmp_path / "cache"), workers=1)
    run = train(cfg, progress=False)

    def losses(path):
        with open(path / "metrics.csv") as f:
            return [(r["step"], r["loss"], r["recon"], r["kl"]) for r in csv.DictReader(f)]

    assert losses(Path(run)) == losses(Path(tiny_trained_run))
    meta = json.loads((Path(run) / "config.json").read_text())["meta"]
    assert meta["archive"] == str(data / "img_align_celeba.zip") and "archive" not in json.loads(
        (Path(tiny_trained_run) / "config.json").read_text())["meta"]


def test_the_zip_benchmark_runs_end_to_end_at_a_tiny_size(tmp_path, capsys):
    import importlib.util

    path = Path(__file__).parents[2] / "experiments" / "benchmark_zip.py"
    spec = importlib.util.spec_from_file_location("benchmark_zip", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--n", "12", "--rounds", "1", "--workers", "1", "--size", "32", "--dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "12 synthetic faces" in out and "| median |" in out and "zip / folder (median of each round's ratio)" in out
    with zipfile.ZipFile(tmp_path / "stored" / "img_align_celeba.zip") as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED} and len(zf.namelist()) == 12


def test_celebamask_hq_as_a_zip_reads_its_photos_beside_its_attribute_file(unpacked, tmp_path):
    ref = open_faces(unpacked["folder"])
    hq = tmp_path / "CelebAMask-HQ"
    shutil.copytree(unpacked["folder"], hq / "CelebA-HQ-img", ignore=shutil.ignore_patterns("*.csv", "*.json"))
    rows = [f"{name} " + " ".join(" 1" if v else "-1" for v in row) for name, row in zip(ref.ids, ref.labels.to_numpy())]
    header = " ".join(ref.attribute_names)
    (hq / "CelebAMask-HQ-attribute-anno.txt").write_text(f"{len(rows)}\n{header}\n" + "\n".join(rows) + "\n")
    (hq / "CelebAMask-HQ-mask-anno").mkdir()  # masks are no faces
    (hq / "CelebAMask-HQ-mask-anno" / "0_hair.png").write_bytes((hq / "CelebA-HQ-img" / ref.ids[0]).read_bytes())
    zip_folder(hq, tmp_path / "CelebAMask-HQ.zip", "CelebAMask-HQ/")
    faces, unzipped = open_faces(tmp_path / "CelebAMask-HQ.zip"), open_faces(hq)
    assert faces.ids == unzipped.ids == ref.ids
    pd.testing.assert_frame_equal(faces.labels, unzipped.labels)


def test_the_official_drive_folder_as_downloaded(unpacked, zipped, tmp_path, capsys):
    drive = drive_tree(zipped["official"], tmp_path / "CelebA")  # Img/img_align_celeba.zip, Anno/, Eval/
    faces = open_faces(drive)
    _same(faces, open_faces(unpacked["official"]))
    assert faces.archive.path == drive / "Img" / "img_align_celeba.zip" and faces.split_source == "list_eval_partition"
    assert main(["check-data", str(drive), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"images: {N} in img_align_celeba.zip" in out and f"{N} rows in list_eval_partition.txt" in out


def test_a_partly_unpacked_folder_beside_the_zip_says_the_zip_would_do(unpacked, zipped, tmp_path):
    both = tmp_path / "both"
    shutil.copytree(zipped["official"], both)
    shutil.copytree(unpacked["official"] / "img_align_celeba", both / "img_align_celeba")
    (both / "img_align_celeba" / "000005.jpg").unlink()  # unzip stopped short
    with pytest.raises(UserError, match="1 of the 24 images .* delete the partly unpacked img_align_celeba/ to read the "
                                        "img_align_celeba.zip beside it"):
        open_faces(both)
