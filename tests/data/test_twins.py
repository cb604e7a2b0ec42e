"""Counterfactual twins (dfc_vae.data.synth.twins, twinset): the same face with one drawn attribute flipped."""

from __future__ import annotations

import argparse
import hashlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dfc_vae.data.celeba import ATTRIBUTE_NAMES
from dfc_vae.data.synth import JPEG_QUALITY, render_celeba, render_face, sample_attributes
from dfc_vae.data.synth.dataset import face_rng, partition
from dfc_vae.data.synth.labels import HAIR_COLOURS
from dfc_vae.data.synth.twins import TWIN_ATTRIBUTES, render_twin, twin_labels, twin_params
from dfc_vae.data.synth.twinset import open_twins, render_twins
from dfc_vae.util.errors import UserError

LOCAL = ("Smiling", "Mouth_Slightly_Open", "Eyeglasses", "Bangs", "Wearing_Hat", "Mustache", "No_Beard",
         "Wearing_Lipstick")


def _face(seed: int, k: int) -> np.ndarray:
    rng = face_rng(seed, k)
    return np.asarray(render_face(sample_attributes(rng), rng), dtype=np.int16)


@pytest.mark.parametrize("attribute", TWIN_ATTRIBUTES)
def test_a_twin_differs_from_its_face_only_inside_the_attributes_region(attribute):
    seen = 0
    for k in range(1, 25):
        if twin_params(11, k, attribute)[3] is None:
            continue  # no such flip for this face (facial hair on a woman, lipstick on a man)
        twin = render_twin(11, k, attribute)
        changed = np.abs(np.asarray(twin.image, dtype=np.int16) - _face(11, k)).max(axis=2) > 0
        assert changed.sum() > 100, (attribute, k)  # the flip is drawn
        assert not (changed & ~twin.region).any(), f"{attribute} twin of face {k} changed pixels outside its region"
        if attribute in LOCAL:  # a local attribute names a small region, not the whole picture
            assert twin.region.mean() < 0.15, (attribute, k)
        assert twin.direction in "+-" and twin.labels[attribute] == -twin.face_labels[attribute]
        seen += 1
    assert seen >= 3


def test_an_unflipped_twin_is_the_face_byte_for_byte(synth_root):
    for k in (1, 2, 90):
        labels = sample_attributes(face_rng(3, k))
        for attribute in ("Smiling", "Eyeglasses", "Male", "Black_Hair"):
            twin = render_twin(3, k, attribute, labels[attribute])
            assert twin.direction == "=" and twin.labels == twin.face_labels
            buf = io.BytesIO()
            twin.image.save(buf, "JPEG", quality=JPEG_QUALITY)
            assert buf.getvalue() == (synth_root / "img_align_celeba" / f"{k:06d}.jpg").read_bytes(), (k, attribute)


def test_a_flip_changes_only_what_the_datasets_rules_tie_to_it():
    for k in range(1, 60):
        labels = sample_attributes(face_rng(0, k))
        male = labels["Male"] > 0
        sex = twin_labels(labels, "Male")
        assert sex["Male"] == -labels["Male"] and sex["Mustache"] == -1 and sex["No_Beard"] == 1
        assert sex["Wearing_Lipstick"] == -1
        assert (twin_labels(labels, "Mustache") is None) == (not male)
        assert (twin_labels(labels, "Wearing_Lipstick") is None) == male
        for hair in HAIR_COLOURS:  # exclusive: at most one colour on
            assert sum(twin_labels(labels, hair)[h] > 0 for h in HAIR_COLOURS) <= 1
        smile = twin_labels(labels, "Smiling")
        assert [a for a in ATTRIBUTE_NAMES if smile[a] != labels[a]] == ["Smiling"]
        if male:  # a mustache comes and goes, the beard stays as it was drawn
            _, face, lab, twin = twin_params(0, k, "Mustache")
            assert twin.beard == face.beard and twin.mustache != face.mustache
            assert lab["No_Beard"] == (-1 if twin.beard or twin.mustache else 1)


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_twins_on_disk_are_reproducible_reused_and_leave_the_faces_alone(tmp_path):
    a = render_celeba(tmp_path / "a", n=60, seed=2, workers=1, progress=False)
    b = render_celeba(tmp_path / "b", n=60, seed=2, workers=1, progress=False)
    faces_before = _digest(a)
    folder = render_twins(a, ["Smiling", "Eyeglasses", "Mustache"], faces_per_direction=3, workers=1, progress=False)
    render_twins(b, ["Smiling", "Eyeglasses", "Mustache"], faces_per_direction=3, workers=2, progress=False)
    assert _digest(folder) == _digest(b / "twins")  # the same files whatever the workers
    assert {k: v for k, v in _digest(a).items() if not k.startswith("twins/")} == faces_before
    twins = open_twins(a)
    index = twins.index
    test_faces = {f"{k:06d}.jpg" for k in np.flatnonzero(partition(60) == 2) + 1}
    assert set(index.face) <= test_faces and twins.attributes == ["Smiling", "Eyeglasses", "Mustache"]
    assert (index.groupby(["attribute", "direction"]).size() <= 3).all()
    for _, row in index.iterrows():
        k = int(row.face[:6])
        twin = render_twin(2, k, row.attribute)
        assert twin.direction == row.direction
        assert row[list(ATTRIBUTE_NAMES)].tolist() == [twin.labels[a] for a in ATTRIBUTE_NAMES]
        with Image.open(twins.path(row.region)) as im:
            assert (np.asarray(im) > 0).tolist() == twin.region.tolist()
        buf = io.BytesIO()
        twin.image.save(buf, "JPEG", quality=JPEG_QUALITY)
        assert twins.path(row.file).read_bytes() == buf.getvalue()
    stamp = (folder / "dfc_vae_twins.json").stat().st_mtime_ns
    assert render_twins(a, ["Smiling", "Eyeglasses", "Mustache"], 3, workers=1, progress=False) == folder
    assert (folder / "dfc_vae_twins.json").stat().st_mtime_ns == stamp  # reused, nothing rewritten
    render_twins(a, ["Bangs"], 2, workers=1, progress=False)  # other settings replace them
    assert open_twins(a).attributes == ["Bangs"] and not (a / "twins.partial").exists()
    render_celeba(a, n=40, seed=2, workers=1, progress=False)  # the faces rendered again: their twins go
    assert open_twins(a) is None


def test_bad_inputs_raise_user_error(tmp_path):
    root = render_celeba(tmp_path / "d", n=30, seed=0, workers=1, progress=False)
    for kwargs in ({"attributes": ["Young"]}, {"attributes": []}, {"faces_per_direction": 0}, {"workers": 0}):
        with pytest.raises(UserError):
            render_twins(root, progress=False, **kwargs)
    plain = render_celeba(tmp_path / "f", n=30, seed=0, layout="folder", workers=1, progress=False)
    for folder in (plain, tmp_path / "nothing"):
        with pytest.raises(UserError):
            render_twins(folder, progress=False)
    with pytest.raises(UserError):
        render_twin(0, 1, "Young")
    woman = next(k for k in range(1, 50) if sample_attributes(face_rng(0, k))["Male"] < 0)
    with pytest.raises(UserError, match="men only"):
        render_twin(0, woman, "Mustache")
    assert not (root / "twins").exists() and not (root / "twins.partial").exists()


def test_cli_renders_twins(tmp_path, capsys):
    from dfc_vae.commands import synth as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    out = tmp_path / "d"
    command.run(parser.parse_args(["--out", str(out), "--n", "40", "--workers", "1", "--twins",
                                   "--twin-attributes", "Smiling,Bangs", "--twin-faces", "2"]))
    assert "twins" in capsys.readouterr().out
    index = pd.read_csv(out / "twins" / "index.csv")
    assert set(index.attribute) == {"Smiling", "Bangs"} and len(index) <= 8
    for argv in (["--twin-faces", "2"], ["--twins", "--layout", "folder"], ["--twins", "--twin-attributes", "Young"],
                 ["--twins", "--twin-faces", "0"]):
        with pytest.raises(UserError):
            command.run(parser.parse_args(["--out", str(tmp_path / "e"), "--n", "40", *argv]))
        assert not (tmp_path / "e").exists()  # refused before any face is rendered
