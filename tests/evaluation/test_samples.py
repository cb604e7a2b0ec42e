"""Sample quality (evaluation/samples.py): the distances on known sets, and each measure ranking a worse sampler
(blurred faces) below held-out faces, with held-out faces themselves near the best score."""

import numpy as np
import pytest
import scipy.linalg
import torch

from dfc_vae.evaluation.classifier import _blur, train_classifier
from dfc_vae.evaluation.samples import (SPACES, frechet_distance, inception_extractor, measure_samples,
                                        precision_recall, sample_csv, sample_section)
from dfc_vae.model.losses import VGGFeatures
from dfc_vae.util.errors import UserError


def _frechet_by_sqrtm(a: torch.Tensor, b: torch.Tensor) -> float:
    """The textbook formula, through scipy's matrix square root."""
    a, b = a.double().numpy(), b.double().numpy()
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(ca @ cb).real
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca + cb - 2 * root))


@pytest.mark.parametrize("dim", [5, 80])  # fewer dimensions than faces, and more: both ways of computing it
def test_frechet_distance_is_the_textbook_formula_and_zero_for_one_set(dim):
    g = torch.Generator().manual_seed(dim)
    a, b = torch.randn(60, dim, generator=g), 1.5 * torch.randn(50, dim, generator=g) + 0.3
    assert frechet_distance(a, b) == pytest.approx(_frechet_by_sqrtm(a, b), rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-8)
    shift = torch.zeros(dim)
    shift[0] = 2.0
    assert frechet_distance(a, a + shift) == pytest.approx(4.0, rel=1e-6)


def test_precision_and_recall_on_known_sets():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(100, 4, generator=g)
    assert precision_recall(real, real) == (1.0, 1.0)
    assert precision_recall(real, real + 100) == (0.0, 0.0)
    half = torch.cat([real[:50], real[:50] + 100])  # half the samples on the faces, half far off
    precision, recall = precision_recall(real, half)
    assert precision == 0.5 and recall < 1.0  # half the real faces have no sample near them
    with pytest.raises(UserError, match="more than 3 faces"):
        precision_recall(real[:3], real)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """600 synthetic faces at 32 px and an attribute classifier trained on them."""
    from dfc_vae.data.sources import open_faces
    from dfc_vae.data.synth import render_celeba
    from dfc_vae.runs.split import FaceSplit

    base = tmp_path_factory.mktemp("samples")
    root = render_celeba(base / "faces", n=600, seed=11, progress=False)
    clf = train_classifier(root, 32, cache_dir=base / "cache", epochs=3, batch_size=32, progress=False)
    split = {name: FaceSplit(open_faces(root), name, 32, "official", base / "cache", progress=False)
             for name in ("test", "valid")}
    return {"clf": clf, **split}


@pytest.mark.slow  # trains the attribute classifier
def test_each_measure_ranks_worse_faces_below_held_out_faces_and_held_out_faces_score_near_best(faces):
    from dfc_vae.data.synth import VISIBLE_ATTRIBUTES

    test, valid, clf = faces["test"], faces["valid"], faces["clf"]
    n = min(len(test), len(valid))
    reference, held_out = test.images(test.rows[:n]), valid.images(valid.rows[:n])
    mean_face = held_out.mean(0, keepdim=True)
    samplers = {"the reference faces": lambda k: reference[:k], "held-out faces": lambda k: held_out[:k],
                # less diverse: every face blurred (sigma 2 px)
                "blurred": lambda k: _blur(held_out, torch.full((n,), 2.0))[:k],
                # beyond the faces: each pushed away from the mean face by 1.5, temperature 1.5 in pixel space
                "temperature 1.5": lambda k: (mean_face + 1.5 * (held_out - mean_face)).clamp(0, 1)[:k]}
    attributes = [a for a in VISIBLE_ATTRIBUTES if a in clf.names]
    q = measure_samples(samplers, reference, test.labels.iloc[test.rows[:n]], clf,
                        VGGFeatures(("relu1_1", "relu2_1", "relu3_1"), "random"), n, attributes=attributes,
                        preprocessing="held-out test faces at 32 px")
    same, good, blurred, hot = q.scores
    for space in SPACES:
        assert same.frechet[space] == pytest.approx(0, abs=1e-6)  # the best score, reached
        assert (same.precision[space], same.recall[space]) == (1.0, 1.0)
        assert good.frechet[space] < 0.7 * min(blurred.frechet[space], hot.frechet[space]), space
        assert good.precision[space] >= 0.9 and good.recall[space] >= 0.9, space  # near the best
        # precision catches faces beyond the data; recall, faces less diverse than the data (blurred faces
        # stay inside the classifier's manifold: it was trained on blurred copies)
        assert hot.precision[space] < good.precision[space] - 0.05, space
        assert blurred.recall[space] < good.recall[space] - 0.1, space
    assert blurred.precision["vgg"] < good.precision["vgg"] - 0.1
    assert good.attribute_gap < min(blurred.attribute_gap, hot.attribute_gap) and good.attribute_gap <= 0.1
    text = "\n".join(sample_section(q))
    assert "| blurred |" in text and "Preprocessing: held-out test faces at 32 px." in text
    assert "FID (Inception)" in text and sample_csv(q).count("\n") == 5


def test_fid_is_skipped_in_one_line_without_the_inception_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    extract, note = inception_extractor("cpu")
    assert extract is None and note.startswith("FID (Inception) skipped: ") and "\n" not in note


def test_evaluate_writes_the_sample_table_with_the_run_classifier(tiny_trained_run, synth_root, cache_dir, tmp_path):
    import json
    import shutil

    from dfc_vae.evaluation.evaluate import evaluate

    run = shutil.copytree(tiny_trained_run, tmp_path / "run")
    out = evaluate(run, synth_root, tmp_path / "eval", vgg_weights="random", device="cpu", cache_dir=cache_dir,
                   progress=False, tsne_faces=0, samples=8)
    assert "Not measured: no attribute classifier" in (out / "report.md").read_text()
    assert not (out / "samples.csv").exists()
    train_classifier(synth_root, 32, cache_dir=cache_dir, epochs=1, batch_size=16, progress=False).save(run / "classifier")
    out = evaluate(run, synth_root, tmp_path / "eval", vgg_weights="random", device="cpu", cache_dir=cache_dir,
                   progress=False, tsne_faces=0, samples=8)
    report = (out / "report.md").read_text()
    for line in ("## Random faces: sample quality", "| N(0, I) | 8 |", "| fitted Gaussian | 8 |", "| fitted mixture | 8 |",
                 "Preprocessing: faces at the run's 32x32 px", "FID (Inception)", "The fitted prior: fitted to"):
        assert line in report
    summary = json.loads((out / "summary.json").read_text())["samples"]
    assert set(summary["samplers"]) == {"N(0, I)", "fitted Gaussian", "fitted mixture"}
    assert (out / "samples.csv").read_text().count("\n") == 4
