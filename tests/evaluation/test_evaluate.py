"""`dfc-vae evaluate` on a tiny run trained on synthetic faces: the report's files and columns,
provenance, and the errors a user can make (no partial output behind them)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from dfc_vae.data.celeba import ATTRIBUTE_NAMES
from dfc_vae.cli import main
from dfc_vae.runs.config import TrainConfig
from dfc_vae.util.device import resolve_precision
from dfc_vae.util.errors import UserError
from dfc_vae.util.images import caption_height
from dfc_vae.evaluation.evaluate import LNETS_ANET, evaluate
from dfc_vae.evaluation.plots import TSNE_CANVAS, TSNE_FACES, tsne_embedding
from dfc_vae.data.synth import render_celeba
from dfc_vae.training.loop import train

PNGS = ("attribute_correlation.png", "latent_pca.png", "kl_per_dim.png", "samples.png", "reconstructions.png")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """4000 synthetic faces, a 32x32 PVAE trained for 30 steps, and its evaluation (made once).

    Training cost is fixed by max_steps; the faces are many so that the valid and test splits
    (~400 each) make the label-only honesty check's 2-point band wider than chance."""
    base = tmp_path_factory.mktemp("evaluate")
    data = render_celeba(base / "faces", n=4000, seed=5, progress=False)
    cache = base / "cache"
    run = train(TrainConfig(data=str(data), out=str(base / "run"), loss="pvae", vgg_weights="random", image_size=32,
                            latent_dim=16, epochs=2, max_steps=30, batch_size=32, cache_dir=str(cache),
                            checkpoint_every=0, device="cpu", log_every=10), progress=False)
    out = evaluate(run, data, cache_dir=cache, device="cpu", progress=False)
    return {"data": data, "run": run, "cache": cache, "out": out, "base": base}


def test_report_files_and_columns(world):
    out = world["out"]
    assert out == world["run"] / "eval"
    for name in ("report.md", "summary.json", "attributes.csv", "reconstruction.csv", "posterior.csv",
                 "attribute_correlation.csv", *PNGS):
        assert (out / name).is_file(), name
    attrs = pd.read_csv(out / "attributes.csv")
    assert attrs.attribute.tolist() == list(ATTRIBUTE_NAMES)
    assert {"test_accuracy", "majority_baseline", "gain", "valid_accuracy", "l2", "visible"} <= set(attrs.columns)
    assert "lnets_anet" not in attrs.columns  # synthetic faces: never beside published CelebA numbers
    assert attrs.test_accuracy.between(0, 1).all() and attrs.majority_baseline.between(0, 1).all()  # train majority can be a test minority

    summary = json.loads((out / "summary.json").read_text())
    rec = pd.read_csv(out / "reconstruction.csv")
    assert list(rec.columns) == ["test_image", "mse", "psnr", "ssim", "vgg_distance"]
    assert len(rec) == summary["n_test"] > 0
    assert summary["psnr"] == pytest.approx(rec.psnr.mean()) and 0 < summary["ssim"] <= 1
    assert summary["vgg_layers"] == ["relu1_1", "relu2_1", "relu3_1"]  # a pvae run is measured at VAE-123's layers

    post = pd.read_csv(out / "posterior.csv")
    assert list(post.columns) == ["dim", "kl", "mu_variance", "active"] and len(post) == 16
    assert summary["active_units"] == int(post.active.sum())
    assert summary["kl_total"] == pytest.approx(post.kl.sum(), rel=1e-4)
    corr = pd.read_csv(out / "attribute_correlation.csv", index_col=0)
    assert corr.shape == (40, 40) and list(corr.index) == list(ATTRIBUTE_NAMES)
    assert summary["mean_accuracy"] == pytest.approx(attrs.test_accuracy.mean())


def test_report_and_pictures_say_how_they_were_made(world):
    from PIL import Image

    report = (world["out"] / "report.md").read_text()
    assert "synthetic faces" in report and "RANDOM" in report
    assert "LNets" not in report
    assert "Honesty checks" in report
    for name in PNGS:
        caption = Image.open(world["out"] / name).text.get("caption", "")
        assert "synthetic faces" in caption, name
    assert "RANDOM" in Image.open(world["out"] / "latent_pca.png").text["caption"]


def test_real_celeba_gets_the_published_lnets_anet_column(world, tmp_path):
    # the same faces without the synthetic marker are treated as CelebA
    real = _copy_data(world, tmp_path)
    (real / "dfc_vae_synthetic.json").unlink()
    out = evaluate(world["run"], real, tmp_path / "eval", cache_dir=world["cache"], device="cpu", progress=False,
                   tsne_faces=0)
    attrs = pd.read_csv(out / "attributes.csv")
    assert (attrs.lnets_anet * 100).round().tolist() == [LNETS_ANET[a] for a in ATTRIBUTE_NAMES]
    assert "visible" not in attrs.columns
    assert "LNets+ANet" in (out / "report.md").read_text()
    # --tsne-faces 0: no t-SNE picture, and the report says so
    assert not (out / "latent_tsne.png").exists() and not (out / "latent_tsne.csv").exists()
    assert json.loads((out / "summary.json").read_text())["tsne_faces"] == 0
    assert "no t-SNE picture" in (out / "report.md").read_text()


def test_cli_prints_one_line_and_writes_to_out(world, tmp_path, capsys):
    out = tmp_path / "cli_eval"
    code = main(["evaluate", "--run", str(world["run"]), "--data", str(world["data"]), "--out", str(out),
                 "--cache-dir", str(world["cache"]), "--device", "cpu", "--color-by", "Male", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and "mean attribute accuracy" in printed[0]
    assert (out / "report.md").is_file()
    assert (out / "latent_tsne.csv").read_bytes() == (world["out"] / "latent_tsne.csv").read_bytes()  # same seed


def test_tsne_picture_draws_the_first_test_faces_at_their_points(world):
    from PIL import Image

    out = world["out"]
    summary = json.loads((out / "summary.json").read_text())
    n = min(TSNE_FACES, summary["n_test"])
    assert summary["tsne_faces"] == n > 100
    xy = pd.read_csv(out / "latent_tsne.csv")
    assert list(xy.columns) == ["test_image", "x", "y"] and xy.test_image.tolist() == list(range(n))
    assert np.isfinite(xy[["x", "y"]].to_numpy()).all() and xy.x.std() > 0 and xy.y.std() > 0
    picture = Image.open(out / "latent_tsne.png")
    caption = picture.text["caption"].split(" | ")
    assert caption[0] == "synthetic faces (dfc_vae.data.synth), not CelebA"
    assert f"t-SNE of the latent means of the first {n} test faces (seed 0)" in caption[-1]
    assert picture.size == (TSNE_CANVAS, TSNE_CANVAS + caption_height(caption, TSNE_CANVAS))  # over its caption strip
    assert "![latent t-SNE](latent_tsne.png)" in (out / "report.md").read_text()


def test_tsne_embedding_is_one_point_per_face_and_the_same_for_a_seed():
    mu = torch.randn(60, 16, generator=torch.Generator().manual_seed(0))
    xy = tsne_embedding(mu, seed=3)
    assert xy.shape == (60, 2) and np.isfinite(xy).all()
    assert np.array_equal(xy, tsne_embedding(mu, seed=3))


def test_a_negative_tsne_faces_is_refused(world, tmp_path, capsys):
    with pytest.raises(UserError, match="--tsne-faces -1 is out of range"):
        evaluate(world["run"], world["data"], tmp_path / "out", device="cpu", progress=False, tsne_faces=-1)
    assert main(["evaluate", "--run", str(world["run"]), "--out", str(tmp_path / "out"), "--tsne-faces", "-1"]) == 2
    assert "--tsne-faces" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_command_line_default_of_tsne_faces_is_evaluates():
    from dfc_vae.commands import evaluate as command
    from dfc_vae.evaluation.samples import SAMPLE_FACES

    assert command.TSNE_FACES == TSNE_FACES and command.SAMPLE_FACES == SAMPLE_FACES


def _copy_data(world, tmp_path):
    """The annotation files copied (to be damaged), the images linked."""
    copy = tmp_path / "data"
    shutil.copytree(world["data"], copy, ignore=shutil.ignore_patterns("img_align_celeba"))
    (copy / "img_align_celeba").symlink_to(world["data"] / "img_align_celeba")
    return copy


def test_a_folder_that_is_not_a_run_is_refused(synth_root, tmp_path, capsys):
    (tmp_path / "notarun").mkdir()
    out = tmp_path / "out"
    code = main(["evaluate", "--run", str(tmp_path / "notarun"), "--data", str(synth_root), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "not a dfc_vae run" in err[0]
    assert not out.exists()


def test_data_without_attribute_labels_is_refused(world, tmp_path):
    data = _copy_data(world, tmp_path)
    (data / "list_attr_celeba.txt").unlink()
    with pytest.raises(UserError, match="list_attr_celeba"):
        evaluate(world["run"], data, tmp_path / "out", cache_dir=world["cache"], device="cpu", progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("split,number", [("valid", 1), ("test", 2)])
def test_data_without_a_split_is_refused(world, tmp_path, split, number):
    data = _copy_data(world, tmp_path)
    part = data / "list_eval_partition.txt"
    part.write_text(part.read_text().replace(f" {number}\n", " 0\n"))
    with pytest.raises(UserError, match=f"the {split} split .* is empty"):
        evaluate(world["run"], data, tmp_path / "out", cache_dir=world["cache"], device="cpu", progress=False)
    assert not (tmp_path / "out").exists()


def test_unknown_color_by_attribute_is_refused(world, tmp_path):
    with pytest.raises(UserError, match="unknown attribute 'Smiley'"):
        evaluate(world["run"], world["data"], tmp_path / "out", color_by="Smiley", device="cpu", progress=False)
    assert not (tmp_path / "out").exists()


# --- honesty checks on synthetic faces --------------------------------------------------------

def test_honesty_checks_flag_a_weak_drawn_attribute_and_a_leaking_label():
    from dfc_vae.evaluation.evaluate import honesty_checks

    probe = pd.DataFrame({"attribute": ["Smiling", "Male", "Attractive", "Young"],
                          "test_accuracy": [0.97, 0.90, 0.60, 0.78], "majority_baseline": [0.52, 0.58, 0.51, 0.77]})
    h = honesty_checks(probe, ("Smiling", "Male"))
    assert h["visible_below_95"] == ["Male"] and h["label_only_off_baseline"] == ["Attractive"] and not h["passed"]
    probe.loc[1, "test_accuracy"], probe.loc[2, "test_accuracy"] = 0.96, 0.52
    assert honesty_checks(probe, ("Smiling", "Male"))["passed"]


def test_label_only_attributes_stay_at_their_majority_baseline(world):
    # the 26 attributes dfc_vae.data.synth does not draw: a probe beating the majority label there leaks labels
    attrs = pd.read_csv(world["out"] / "attributes.csv")
    hidden = attrs[~attrs.visible]
    assert len(hidden) == 26
    assert ((hidden.test_accuracy - hidden.majority_baseline).abs() <= 0.02).all(), \
        hidden[["attribute", "test_accuracy", "majority_baseline"]].to_string()


@pytest.fixture(scope="module")
def trained_world(tmp_path_factory):
    """6000 synthetic faces and a 32x32 VAE-123 trained for 600 steps of 64, evaluated (the attribute table only):
    where training runs in bf16, the smallest run at which every drawn attribute is linearly decodable from the
    latent. In fp32 (a CPU without native bf16) Brown_Hair stops just short: 94.9% at 600 steps and 94.8% at 900
    (docs/evaluation.md)."""
    base = tmp_path_factory.mktemp("honesty")
    data = render_celeba(base / "faces", n=6000, seed=5, progress=False)
    cache = base / "cache"
    run = train(TrainConfig(data=str(data), out=str(base / "run"), loss="vae123", vgg_weights="random", image_size=32,
                            epochs=100, max_steps=600, batch_size=64, cache_dir=str(cache), checkpoint_every=0,
                            device="cpu", log_every=100), progress=False)
    return pd.read_csv(evaluate(run, data, cache_dir=cache, device="cpu", progress=False, tsne_faces=0,
                                samples=0) / "attributes.csv")


def test_drawn_attributes_reach_95_percent_and_label_only_ones_stay_at_baseline(trained_world):
    drawn, hidden = trained_world[trained_world.visible], trained_world[~trained_world.visible]
    assert len(drawn) == 14 and len(hidden) == 26
    assert ((hidden.test_accuracy - hidden.majority_baseline).abs() <= 0.02).all(), \
        hidden[["attribute", "test_accuracy", "majority_baseline"]].to_string()
    weak = drawn[drawn.test_accuracy < 0.95]
    if len(weak) and resolve_precision("auto", torch.device("cpu")) == "fp32":
        pytest.xfail("trained in fp32 (no native bf16 on this CPU), a drawn attribute stays under 95%: "
                     + ", ".join(f"{a} {100 * v:.1f}%" for a, v in zip(weak.attribute, weak.test_accuracy)))
    assert not len(weak), drawn[["attribute", "test_accuracy"]].to_string()
