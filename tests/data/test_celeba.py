import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from dfc_vae import UserError
from dfc_vae.data.celeba import ATTRIBUTE_NAMES, find_celeba, load_annotations, read_attributes
from dfc_vae.data.synth import render_celeba


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    base = tmp_path_factory.mktemp("layouts")
    return {layout: render_celeba(base / layout, n=40, seed=5, layout=layout, progress=False)
            for layout in ("official", "torchvision", "kaggle")}


def test_three_layouts_are_recognised_and_read_identically(layouts):
    frames = {}
    for layout, path in layouts.items():
        root = find_celeba(path)
        assert root.layout == layout
        assert root.synthetic is not None and "synthetic" in root.description
        frames[layout] = load_annotations(root)
        assert len(list(root.images.glob("*.jpg"))) == 40
    pd.testing.assert_frame_equal(frames["official"], frames["torchvision"])
    pd.testing.assert_frame_equal(frames["official"], frames["kaggle"])
    df = frames["official"]
    assert list(df.columns[:40]) == list(ATTRIBUTE_NAMES) and df["partition"].isin([0, 1, 2]).all()
    assert sorted(df["partition"].unique()) == [0, 1, 2] and len(df) == 40


def test_attributes_and_partition_equal_torchvision_celeba(layouts, monkeypatch):
    from torchvision.datasets import CelebA

    # torchvision checks the md5 sums of the real annotation files; ours are synthetic
    monkeypatch.setattr(CelebA, "_check_integrity", lambda self: True)
    df = load_annotations(find_celeba(layouts["torchvision"]))
    for split, number in (("train", 0), ("valid", 1), ("test", 2)):
        tv = CelebA(str(layouts["torchvision"]), split=split, target_type="attr")
        rows = df[df["partition"] == number]
        assert list(tv.filename) == list(rows.index)
        assert torch.equal(tv.attr, torch.from_numpy(rows[list(ATTRIBUTE_NAMES)].to_numpy().astype(np.int64)))
        assert [n for n in tv.attr_names if n] == list(ATTRIBUTE_NAMES)


def test_tolerates_what_real_copies_contain(layouts, tmp_path):
    """CRLF line ends, no count line, 0/1 values, extra spaces: all read the same."""
    src = find_celeba(layouts["official"])
    expected = read_attributes(src)
    copy = tmp_path / "copy"
    shutil.copytree(layouts["official"], copy)
    lines = (copy / "list_attr_celeba.txt").read_text().splitlines()
    body = [ln.replace("-1", " 0") for ln in lines[2:]]
    (copy / "list_attr_celeba.txt").write_bytes(("\r\n".join([lines[1] + "  "] + body) + "\r\n").encode())
    got = read_attributes(find_celeba(copy))
    pd.testing.assert_frame_equal(got, expected)


def _copy(layouts, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(layouts["official"], copy)
    return copy


@pytest.mark.parametrize("damage,match", [
    (lambda p: (p / "list_attr_celeba.txt").write_text(
        "\n".join((p / "list_attr_celeba.txt").read_text().splitlines()[:-1]) + "\n"), "truncated"),
    (lambda p: (p / "list_attr_celeba.txt").write_text(
        (p / "list_attr_celeba.txt").read_text().replace("Smiling", "Smiles")), "unknown 'Smiles'"),
    (lambda p: (p / "list_attr_celeba.txt").write_text(
        (p / "list_attr_celeba.txt").read_text().replace("000002.jpg -1", "000002.jpg", 1).replace("000002.jpg  1", "000002.jpg", 1)),
     "fewer than 41 fields"),
    (lambda p: (p / "list_eval_partition.txt").write_text(
        "\n".join((p / "list_eval_partition.txt").read_text().splitlines()[:-3]) + "\n"), "disagree"),
    (lambda p: (p / "list_eval_partition.txt").unlink(), "list_eval_partition"),
])
def test_damaged_annotation_files_are_user_errors(layouts, tmp_path, damage, match):
    copy = _copy(layouts, tmp_path)
    damage(copy)
    with pytest.raises(UserError, match=match):
        load_annotations(find_celeba(copy))


def test_missing_or_wrong_folders_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        find_celeba(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="does not look like CelebA"):
        find_celeba(tmp_path / "empty")
    (tmp_path / "noimg").mkdir()
    (tmp_path / "noimg" / "list_attr_celeba.txt").write_text("1\n")
    with pytest.raises(UserError, match="img_align_celeba"):
        find_celeba(tmp_path / "noimg")
