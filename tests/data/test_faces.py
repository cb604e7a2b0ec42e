"""Any faces in: one data layer (dfc_vae.data) over CelebA as people have it, any folder of face
images, and the user's own labels -- the same faces and labels from every source where they
overlap, a split that stays put, the whole pipeline on a plain folder, and the mistakes a user can
make (one line, exit status 2, nothing written)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from dfc_vae.editing.attributes import (AttributeVectors, compute_attribute_vectors, folder_attribute_vector, load_attribute_vectors, merge_attribute_vectors)
from dfc_vae.data.celeba import ATTRIBUTE_NAMES
from dfc_vae.cli import main
from dfc_vae.util.errors import UserError
from dfc_vae.data.sources import open_faces
from dfc_vae.runs.split import encode_rows
from dfc_vae.data.folder import hashed_split
from dfc_vae.data.synth import render_celeba
from dfc_vae.data.cache import prepare_cache

from archives import render_layouts

N = 40


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """The same 40 synthetic faces in the three CelebA layouts and as a plain folder with labels.csv."""
    return render_layouts(tmp_path_factory.mktemp("sources"), N, seed=5)


def _labels(faces) -> pd.DataFrame:
    return faces.labels.rename_axis(None)


def _one_line_error(capsys, rc) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


# ----------------------------------------------------------------------------- the same faces from every source


def test_three_celeba_layouts_and_the_folder_give_the_same_faces_and_labels(sources, tmp_path):
    ref = open_faces(sources["official"])
    assert (ref.kind, ref.layout, ref.default_crop) == ("celeba", "official", "official")
    assert ref.attribute_names == list(ATTRIBUTE_NAMES) and ref.ids == [f"{k:06d}.jpg" for k in range(1, N + 1)]
    pixels = np.asarray(prepare_cache(ref, 32, cache_dir=tmp_path, progress=False).images)
    for layout in ("torchvision", "kaggle", "folder"):
        faces = open_faces(sources[layout])
        assert faces.ids == ref.ids, layout
        pd.testing.assert_frame_equal(_labels(faces), _labels(ref))
        assert np.array_equal(np.asarray(prepare_cache(faces, 32, "official", tmp_path, progress=False).images), pixels), layout
        if layout != "folder":
            assert faces.layout == layout and np.array_equal(faces.split, ref.split)
    folder = open_faces(sources["folder"])
    assert (folder.kind, folder.default_crop, folder.labels_file.name) == ("folder", "center", "labels.csv")
    assert folder.synthetic is not None and "hash" in folder.split_source
    # the default crop of a folder is the largest centred square (178x178 of a 178x218 face)
    center = np.asarray(prepare_cache(folder, 32, cache_dir=tmp_path, progress=False).images)
    assert not np.array_equal(center, pixels)
    with Image.open(folder.paths[0]) as im:
        expected = np.asarray(im.convert("RGB").resize((32, 32), Image.Resampling.BICUBIC, box=(0, 20, 178, 198)))
    assert np.abs(center[0].astype(int) - expected).mean() < 3


def test_png_release_reads_the_jpg_names_of_the_annotations(sources, tmp_path):
    png = tmp_path / "png"
    shutil.copytree(sources["official"], png, ignore=shutil.ignore_patterns("img_align_celeba"))
    (png / "img_align_celeba_png").mkdir()
    for path in sorted((sources["official"] / "img_align_celeba").iterdir()):
        with Image.open(path) as im:
            im.save(png / "img_align_celeba_png" / (path.stem + ".png"))
    ref, faces = open_faces(sources["official"]), open_faces(png)
    assert faces.layout == "png" and faces.ids == ref.ids and faces.paths[0].name == "000001.png"
    pd.testing.assert_frame_equal(_labels(faces), _labels(ref))
    assert np.array_equal(faces.split, ref.split)
    a = np.asarray(prepare_cache(faces, 32, cache_dir=tmp_path / "c", progress=False).images).astype(int)
    b = np.asarray(prepare_cache(ref, 32, cache_dir=tmp_path / "c", progress=False).images).astype(int)
    assert np.abs(a - b).mean() < 2.5  # the same faces (JPEGs are decoded at reduced DCT scale)


def test_without_the_partition_file_the_official_split_by_number_is_used_and_said(sources, tmp_path):
    copy = tmp_path / "nopart"
    shutil.copytree(sources["official"], copy)
    (copy / "list_eval_partition.txt").unlink()
    # two faces renamed to numbers of CelebA's valid and test ranges
    attr = (copy / "list_attr_celeba.txt").read_text()
    for old, new in (("000039.jpg", "162771.jpg"), ("000040.jpg", "182638.jpg")):
        (copy / "img_align_celeba" / old).rename(copy / "img_align_celeba" / new)
        attr = attr.replace(old, new)
    (copy / "list_attr_celeba.txt").write_text(attr)
    faces = open_faces(copy)
    assert faces.split_sizes() == {"train": 38, "valid": 1, "test": 1}
    assert faces.split[faces.ids.index("162771.jpg")] == 1 and faces.split[faces.ids.index("182638.jpg")] == 2
    assert "by image number" in faces.split_source
    assert len(faces.notes) == 1 and "38 train, 1 valid, 1 test" in faces.notes[0]
    ref = open_faces(sources["official"])
    pd.testing.assert_frame_equal(_labels(faces).iloc[:38], _labels(ref).iloc[:38])
    assert faces.provenance()["split_source"] == faces.split_source


def test_a_partial_download_is_refused_with_the_count_or_used_with_allow_missing(sources, tmp_path):
    copy = tmp_path / "partial"
    shutil.copytree(sources["official"], copy)
    for k in (3, 17, 30):
        (copy / "img_align_celeba" / f"{k:06d}.jpg").unlink()
    with pytest.raises(UserError, match=r"3 of the 40 images .* missing .*--allow-missing to use the 37 present"):
        open_faces(copy)
    faces = open_faces(copy, allow_missing=True)
    ref = open_faces(sources["official"])
    keep = [i for i, name in enumerate(ref.ids) if name not in ("000003.jpg", "000017.jpg", "000030.jpg")]
    assert faces.missing == 3 and faces.provenance()["missing_images"] == 3 and len(faces) == 37
    assert faces.ids == [ref.ids[i] for i in keep] and np.array_equal(faces.split, ref.split[keep])
    pd.testing.assert_frame_equal(_labels(faces), _labels(ref).iloc[keep])
    a = np.asarray(prepare_cache(faces, 32, cache_dir=tmp_path / "c", progress=False).images)
    b = np.asarray(prepare_cache(ref, 32, cache_dir=tmp_path / "c", progress=False).images)
    assert np.array_equal(a, b[keep])
    # the CLI says the same in one line, exit status 2
    assert main(["prepare", "--data", str(copy), "--image-size", "32", "--cache-dir", str(tmp_path / "c2")]) == 2
    assert not (tmp_path / "c2").exists()


def test_celeba_hq_label_format(sources, tmp_path):
    ref = open_faces(sources["folder"])
    hq = tmp_path / "CelebAMask-HQ"
    shutil.copytree(sources["folder"], hq / "CelebA-HQ-img", ignore=shutil.ignore_patterns("*.csv", "*.json"))
    rows = [f"{name} " + " ".join(" 1" if v else "-1" for v in row) for name, row in zip(ref.ids, ref.labels.to_numpy())]
    (hq / "CelebAMask-HQ-attribute-anno.txt").write_text(f"{N}\n" + " ".join(ATTRIBUTE_NAMES) + "\n" + "\n".join(rows) + "\n")
    (hq / "CelebAMask-HQ-mask-anno").mkdir()  # CelebAMask-HQ's masks are no faces: not read
    Image.new("L", (8, 8)).save(hq / "CelebAMask-HQ-mask-anno" / "0_hair.png")
    faces = open_faces(hq)
    assert faces.ids == ref.ids and faces.labels_file.name == "CelebAMask-HQ-attribute-anno.txt"
    pd.testing.assert_frame_equal(_labels(faces), _labels(ref))
    # the same file passed with --labels for the image folder itself
    again = open_faces(hq / "CelebA-HQ-img", labels=hq / "CelebAMask-HQ-attribute-anno.txt")
    pd.testing.assert_frame_equal(_labels(again), _labels(ref))


def test_labels_csv_formats_split_column_and_unlabelled_images(sources, tmp_path):
    folder = tmp_path / "mine"
    (folder / "a").mkdir(parents=True)
    src = sorted(Path(sources["folder"]).glob("*.jpg"))
    for i, path in enumerate(src[:6]):
        shutil.copy(path, folder / "a" / f"face {i}.jpg")
    (folder / "labels.csv").write_text(
        "image,smile,glasses,split\n"
        "a/face 0.jpg,1,no,test\n./a/face 1.jpg,-1,yes,\na/face 2.jpg,true,No,valid\n"
        "a/face 3.jpg,0,YES,0\na\\face 4.jpg,FALSE,no,2\n")
    faces = open_faces(folder)
    assert faces.attribute_names == ["smile", "glasses"] and len(faces) == 5
    assert faces.labels["smile"].tolist() == [True, False, True, False, False]
    assert faces.labels["glasses"].tolist() == [False, True, False, True, False]
    expected_hash = hashed_split(["a/face 1.jpg"])[0]
    assert faces.split.tolist() == [2, expected_hash, 1, 0, 2] and "split column" in faces.split_source
    assert len(faces.notes) == 1 and "1 images" in faces.notes[0] and "no row" in faces.notes[0]
    cache = prepare_cache(faces, 32, cache_dir=tmp_path / "c", progress=False)  # names with spaces survive the cache
    assert cache.ids == faces.ids and prepare_cache(open_faces(folder), 32, cache_dir=tmp_path / "c", progress=False).path == cache.path


def test_two_folders_give_the_vector_of_the_labelled_data(tiny_trained_run, synth_root, cache_dir, tmp_path):
    from dfc_vae.runs.run import load_run

    run = load_run(tiny_trained_run, "cpu")
    faces = open_faces(synth_root)
    vectors = compute_attribute_vectors(run, faces, "all", cache_dir, progress=False)
    smiling = faces.labels["Smiling"].to_numpy()
    for name, wanted in (("with", smiling), ("without", ~smiling)):
        (tmp_path / name).mkdir()
        for path in np.asarray(faces.paths)[wanted]:
            shutil.copy(path, tmp_path / name / path.name)
    assert run.config.crop == "official"  # as the run resolved it for CelebA: folders are read in the run's crop
    v = folder_attribute_vector(run, tmp_path / "with", tmp_path / "without", "Smiling", cache_dir, progress=False)
    assert v.names == ["Smiling"] and v.n_pos.tolist() == [smiling.sum()] and v.n_neg.tolist() == [(~smiling).sum()]
    assert torch.allclose(v.vector("Smiling"), vectors.vector("Smiling"), atol=1e-5)
    # mergeable with other vector files: the two-folder vector replaces the labelled one of that name
    path = v.save(tmp_path / "smiling.safetensors")
    merged = merge_attribute_vectors(vectors, path)
    assert merged.names == vectors.names and torch.equal(merged.vector("Smiling"), v.vector("Smiling"))
    assert torch.equal(merged.vector("Male"), vectors.vector("Male")) and len(merged.meta["merged"]) == 2


def test_cli_two_folders_and_merge(tiny_trained_run, synth_root, cache_dir, tmp_path):
    faces = open_faces(synth_root)
    for name, ids in (("a", faces.ids[:10]), ("b", faces.ids[10:25])):
        (tmp_path / name).mkdir()
        for i in ids:
            shutil.copy(faces.paths[faces.ids.index(i)], tmp_path / name / i)
    out, both = tmp_path / "v.safetensors", tmp_path / "both.safetensors"
    base = ["attributes", "--run", str(tiny_trained_run), "--cache-dir", str(cache_dir), "--device", "cpu", "--no-progress"]
    assert main(base + ["--positive", str(tmp_path / "a"), "--negative", str(tmp_path / "b"), "--name", "mine",
                        "--out", str(out)]) == 0
    assert load_attribute_vectors(out).names == ["mine"]
    assert main(base + ["--positive", str(tmp_path / "b"), "--negative", str(tmp_path / "a"), "--name", "theirs",
                        "--merge", str(out), "--out", str(both)]) == 0
    merged = load_attribute_vectors(both)
    assert merged.names == ["mine", "theirs"]
    assert torch.allclose(merged.vector("mine"), -merged.vector("theirs"), atol=1e-6)


# ----------------------------------------------------------------------------- folders


def test_a_folders_split_stays_put_when_files_are_added(sources, tmp_path):
    folder = tmp_path / "grow"
    shutil.copytree(sources["folder"], folder, ignore=shutil.ignore_patterns("*.csv", "*.json"))
    before = open_faces(folder)
    assert before.labels.shape == (N, 0) and before.default_crop == "center"
    (folder / "more" / "deeper").mkdir(parents=True)
    for path in before.paths[:15]:
        shutil.copy(path, folder / "more" / "deeper" / f"new_{path.name}")
        shutil.copy(path, folder / f"0_{path.name}")
    after = open_faces(folder)
    assert len(after) == N + 30
    old = dict(zip(before.ids, before.split))
    assert all(old[name] == s for name, s in zip(after.ids, after.split) if name in old)
    # the hash alone decides: the shares approach 90/5/5, and another seed gives another split
    names = [f"img_{i}.png" for i in range(20000)]
    shares = np.bincount(hashed_split(names), minlength=3) / len(names)
    assert np.allclose(shares, [0.90, 0.05, 0.05], atol=0.01)
    assert not np.array_equal(hashed_split(names), hashed_split(names, seed=1))


def test_any_image_format_and_mode_is_read_as_rgb_and_unreadable_files_are_all_named(sources, tmp_path):
    folder = tmp_path / "modes"
    folder.mkdir()
    with Image.open(sorted(Path(sources["folder"]).glob("*.jpg"))[0]) as im:
        face = im.convert("RGB")
    face.convert("L").save(folder / "gray.jpg")
    face.convert("CMYK").save(folder / "cmyk.jpg")
    face.convert("P").save(folder / "palette.png")
    face.convert("RGBA").save(folder / "alpha.png")
    face.save(folder / "face.webp", lossless=True)
    face.save(folder / "upper.JPEG")
    (folder / "notes.txt").write_text("not an image")
    faces = open_faces(folder)
    assert faces.ids == ["alpha.png", "cmyk.jpg", "face.webp", "gray.jpg", "palette.png", "upper.JPEG"]
    images = np.asarray(prepare_cache(faces, 32, cache_dir=tmp_path / "c", progress=False).images)
    assert images.shape == (6, 32, 32, 3) and images.std(axis=(1, 2, 3)).min() > 10
    reference = images[faces.ids.index("face.webp")].astype(int)
    for name in ("alpha.png", "cmyk.jpg", "upper.JPEG"):
        assert np.abs(images[faces.ids.index(name)].astype(int) - reference).mean() < 8, name
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (folder / "sub").mkdir()
    (folder / "sub" / "empty.jpg").write_bytes(b"")
    with pytest.raises(UserError, match=r"2 images could not be read: .*broken\.png.*sub/empty\.jpg") as e:
        prepare_cache(open_faces(folder), 32, cache_dir=tmp_path / "c2", progress=False)
    assert "\n" not in str(e.value) and not any((tmp_path / "c2").iterdir())


# ----------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("size", [32, 64, 128, 256])
def test_model_classifier_and_cache_at_every_size(size, sources, tmp_path):
    from dfc_vae.evaluation.classifier import AttributeCNN
    from dfc_vae.model.network import DFCVAE, ModelConfig

    model = DFCVAE(ModelConfig(image_size=size, latent_dim=8, base_channels=4)).eval()
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        assert mu.shape == (2, 8) and model.decode(mu).shape == (2, 3, size, size)
        assert AttributeCNN(size, 5, width=4)(x).shape == (2, 5)
    faces = open_faces(sources["folder"])
    rows = prepare_cache(faces, size, cache_dir=tmp_path, progress=False).images
    assert rows.shape == (N, size, size, 3)
    mu_rows, _ = encode_rows(model, rows, [3, 1], torch.device("cpu"), batch_size=1)
    assert mu_rows.shape == (2, 8)


# ----------------------------------------------------------------------------- the whole pipeline on a folder


@pytest.mark.slow  # trains a run and a classifier
def test_train_attributes_fig6_and_evaluate_on_a_plain_folder(tmp_path, capsys):
    import importlib.util

    from dfc_vae.evaluation.classifier import FOLDER, train_classifier

    data, run, cache = tmp_path / "faces", tmp_path / "run", tmp_path / "cache"
    assert main(["synth", "--out", str(data), "--n", "160", "--layout", "folder", "--workers", "1"]) == 0
    assert (data / "labels.csv").is_file() and not (data / "img_align_celeba").exists()
    train_args = ["train", "--data", str(data), "--out", str(run), "--loss", "pvae", "--vgg-weights", "random",
                  "--image-size", "32", "--latent-dim", "16", "--base-channels", "8", "--epochs", "1", "--batch-size", "16",
                  "--cache-dir", str(cache), "--workers", "1", "--device", "cpu", "--no-progress"]
    assert main(train_args + ["--max-steps", "2"]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["config"]["crop"] == "center"  # the folder's default, resolved and recorded
    assert saved["meta"]["source"] == "folder" and "hash" in saved["meta"]["split_source"]
    assert saved["meta"]["synthetic"] and saved["meta"]["attributes"] == 40
    vectors = tmp_path / "vectors.safetensors"
    assert main(["attributes", "--run", str(run), "--out", str(vectors), "--cache-dir", str(cache), "--device", "cpu",
                 "--no-progress"]) == 0
    v = load_attribute_vectors(vectors, 16)
    assert v.names == list(ATTRIBUTE_NAMES) and v.meta["synthetic"]
    faces = open_faces(data)
    train_classifier(faces, 32, "center", cache, epochs=1, batch_size=16, progress=False).save(run / FOLDER)
    spec = importlib.util.spec_from_file_location("fig6", Path(__file__).parents[2] / "experiments" / "fig6_arithmetic.py")
    fig6 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fig6)
    capsys.readouterr()
    fig6.main(["--run", str(run), "--attributes", str(vectors), "--out", str(tmp_path / "fig6.png"), "--faces", "2",
               "--steps", "3", "--cache-dir", str(cache), "--device", "cpu"])
    summary = json.loads((tmp_path / "fig6.json").read_text())
    assert (tmp_path / "fig6.png").is_file() and "+Smiling" in summary["rows"]
    assert main(["evaluate", "--run", str(run), "--cache-dir", str(cache), "--device", "cpu", "--no-progress"]) == 0
    report = json.loads((run / "eval" / "summary.json").read_text())
    split = faces.split_sizes()
    assert (report["n_train"], report["n_valid"], report["n_test"]) == (split["train"], split["valid"], split["test"])
    assert report["synthetic"] and "honesty" in report and "mean_lnets_anet" not in report
    table = pd.read_csv(run / "eval" / "attributes.csv")
    assert table.attribute.tolist() == list(ATTRIBUTE_NAMES)
    # resuming the run compares the resolved crop (the run says 'center', the flag's default is 'auto')
    assert main(train_args + ["--resume", "--max-steps", "3"]) == 0
    assert json.loads((run / "config.json").read_text())["config"]["crop"] == "center"
    rc = main(train_args + ["--resume", "--max-steps", "4", "--crop", "official"])
    assert "--crop official differs from the run's 'center'" in _one_line_error(capsys, rc)


def test_a_folder_with_its_own_attribute_names(sources, tiny_trained_run, cache_dir, tmp_path, capsys):
    """Attribute names come from the data: a labels file's columns, checked by name everywhere."""
    folder = tmp_path / "own"
    shutil.copytree(sources["folder"], folder, ignore=shutil.ignore_patterns("*.csv"))
    ref = open_faces(sources["folder"])
    pd.DataFrame({"image": ref.ids, "grin": ref.labels["Smiling"].astype(int),
                  "specs": ref.labels["Eyeglasses"].map({True: "yes", False: "no"})}).to_csv(folder / "labels.csv",
                                                                                            index=False)
    out = tmp_path / "own.safetensors"
    base = ["attributes", "--run", str(tiny_trained_run), "--cache-dir", str(cache_dir), "--device", "cpu",
            "--no-progress"]
    assert main(base + ["--data", str(folder), "--out", str(out)]) == 0
    assert load_attribute_vectors(out).names == ["grin", "specs"]
    photo = ref.paths[0]
    rc = main(["edit", str(photo), "--run", str(tiny_trained_run), "--attributes", str(out), "--set", "Smiling=1",
               "--out", str(tmp_path / "e.png"), "--device", "cpu"])
    line = _one_line_error(capsys, rc)
    assert "unknown attribute 'Smiling'" in line and "grin, specs" in line and not (tmp_path / "e.png").exists()
    assert main(["edit", str(photo), "--run", str(tiny_trained_run), "--attributes", str(out), "--set", "grin=1",
                 "--out", str(tmp_path / "e.png"), "--device", "cpu"]) == 0
    faces = open_faces(folder)
    with pytest.raises(UserError, match="unknown attribute 'Smiling'; .* has: grin, specs"):
        faces.check_attributes(["Smiling"])


# ----------------------------------------------------------------------------- bad input


def _folder_with_labels(sources, tmp_path, text):
    folder = tmp_path / "bad"
    shutil.copytree(sources["folder"], folder, ignore=shutil.ignore_patterns("*.csv"))
    (folder / "labels.csv").write_text(text)
    return folder


@pytest.mark.parametrize("labels,message", [
    ("image,smile\n000001.jpg,1\nmissing/face.jpg,0\nelsewhere.png,1\n",
     r"2 images named in .*labels\.csv are not under .* \(e\.g\. missing/face\.jpg\).*--allow-missing"),
    ("image,smile\n000001.jpg,1\n000002.jpg,maybe\n", r"column 'smile' holds 'maybe' for image 000002\.jpg"),
    ("image,smile\n000001.jpg,1\n./000001.jpg,0\n", r"image 000001\.jpg is listed twice"),
    ("file_name,smile\n000001.jpg,1\n", r"no 'image' column"),
    ("image,smile,split\n000001.jpg,1,holdout\n", r"split 'holdout' for image 000001\.jpg"),
])
def test_bad_labels_are_one_line_and_nothing_is_written(sources, tmp_path, capsys, labels, message):
    folder = _folder_with_labels(sources, tmp_path, labels)
    cache = tmp_path / "cache"
    rc = main(["prepare", "--data", str(folder), "--image-size", "32", "--cache-dir", str(cache)])
    assert re.search(message, _one_line_error(capsys, rc))
    assert not cache.exists()


def test_absent_labelled_images_are_accepted_with_allow_missing(sources, tmp_path, capsys):
    folder = _folder_with_labels(sources, tmp_path, "image,smile\n000001.jpg,1\n000002.jpg,0\ngone.jpg,1\n")
    faces = open_faces(folder, allow_missing=True)
    assert faces.ids == ["000001.jpg", "000002.jpg"] and faces.missing == 1
    assert any("--allow-missing: 1 of the 3" in n for n in faces.notes)


def test_a_folder_with_no_images(tmp_path, capsys):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("no faces here")
    cache, run = tmp_path / "cache", tmp_path / "run"
    rc = main(["prepare", "--data", str(tmp_path / "empty"), "--cache-dir", str(cache)])
    assert "holds no images" in _one_line_error(capsys, rc)
    rc = main(["train", "--data", str(tmp_path / "empty"), "--out", str(run), "--cache-dir", str(cache),
               "--vgg-weights", "random", "--no-progress"])
    assert "holds no images" in _one_line_error(capsys, rc)
    assert not cache.exists() and not run.exists()


def test_positive_and_negative_must_be_two_folders_of_faces(sources, tiny_trained_run, tmp_path, capsys):
    folder = Path(sources["folder"])
    (tmp_path / "empty").mkdir()
    out = tmp_path / "v.safetensors"
    base = ["attributes", "--run", str(tiny_trained_run), "--name", "x", "--out", str(out), "--device", "cpu",
            "--cache-dir", str(tmp_path / "cache")]
    for pos, neg, message in ((folder, folder, "are the same folder"), (folder, tmp_path / "empty", "holds no images"),
                              (tmp_path / "empty", folder, "holds no images"),
                              (folder, tmp_path / "nowhere", "is not a folder")):
        rc = main(base + ["--positive", str(pos), "--negative", str(neg)])
        assert message in _one_line_error(capsys, rc)
    rc = main(["attributes", "--run", str(tiny_trained_run), "--positive", str(folder), "--out", str(out)])
    assert "--negative" in _one_line_error(capsys, rc)
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_unknown_attributes_name_the_ones_the_data_has(sources, tiny_trained_run, tmp_path, capsys):
    v = AttributeVectors(["smile", "glasses"], torch.randn(2, 16), np.array([3, 4]), np.array([5, 6]), {})
    path = v.save(tmp_path / "v.safetensors")
    rc = main(["edit", str(open_faces(sources["folder"]).paths[0]), "--run", str(tiny_trained_run), "--attributes",
               str(path), "--set", "Smiling=1", "--out", str(tmp_path / "e.png"), "--device", "cpu"])
    line = _one_line_error(capsys, rc)
    assert "unknown attribute 'Smiling'" in line and "smile, glasses" in line and not (tmp_path / "e.png").exists()
    unlabelled = tmp_path / "plain"
    shutil.copytree(sources["folder"], unlabelled, ignore=shutil.ignore_patterns("*.csv"))
    rc = main(["attributes", "--run", str(tiny_trained_run), "--data", str(unlabelled), "--out", str(tmp_path / "a"),
               "--device", "cpu", "--cache-dir", str(tmp_path / "cache")])
    assert "has no labels" in _one_line_error(capsys, rc) and not (tmp_path / "a").exists()


def test_synth_folder_layout_replaces_and_is_replaced_by_a_celeba_layout(tmp_path):
    out = tmp_path / "faces"
    render_celeba(out, n=6, seed=1, layout="folder", workers=1, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [f"{k:06d}.jpg" for k in range(1, 7)] + ["dfc_vae_synthetic.json",
                                                                                               "labels.csv"]
    assert render_celeba(out, n=6, seed=1, layout="folder", workers=1, progress=False) == out  # already there
    render_celeba(out, n=4, seed=1, layout="official", workers=1, progress=False)
    assert not (out / "labels.csv").exists() and not (out / "000001.jpg").exists()
    assert open_faces(out).kind == "celeba" and len(open_faces(out)) == 4
    render_celeba(out, n=5, seed=1, layout="folder", workers=1, progress=False)
    assert not (out / "img_align_celeba").exists() and len(open_faces(out)) == 5
