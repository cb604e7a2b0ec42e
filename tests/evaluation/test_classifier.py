"""The attribute classifier's training: its reconstructions option and its independence of the caller's random state."""

import json

import numpy as np
import pytest
import torch

from dfc_vae.evaluation.classifier import FOLDER, classifier_for_run, reconstructions, train_classifier
from dfc_vae.runs.config import TrainConfig
from dfc_vae.util.images import to_tensor
from tiny import untrained_loaded_run


def _train(synth_root, cache_dir, **kw):
    return train_classifier(synth_root, 32, cache_dir=cache_dir, epochs=1, batch_size=16, progress=False, **kw)


def _weights(clf) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in clf.model.state_dict().items()}


def test_the_classifier_depends_on_its_seed_not_on_the_random_state_before_it(synth_root, cache_dir):
    torch.manual_seed(1)
    a = _weights(_train(synth_root, cache_dir, seed=5))
    torch.manual_seed(2)
    torch.rand(1000)  # what ran before (a VAE's training, say) moved the global generator elsewhere
    before = torch.random.get_rng_state()
    b = _weights(_train(synth_root, cache_dir, seed=5))
    assert torch.equal(torch.random.get_rng_state(), before)  # and it is left where the caller had it
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = _weights(_train(synth_root, cache_dir, seed=6))
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_reconstructions_that_change_nothing_score_as_the_faces_do(synth_root, cache_dir):
    clf = _train(synth_root, cache_dir, reconstruct=lambda faces: faces.copy())
    assert clf.report["accuracy_reconstructed"] == clf.report["accuracy"]
    assert clf.report["trained_on_reconstructions"] is False


def test_training_on_reconstructions_trains_on_them_with_their_faces_labels(synth_root, cache_dir):
    seen = []

    def dark(faces: np.ndarray) -> np.ndarray:  # a "model" that draws every face black
        seen.append(len(faces))
        return np.zeros_like(faces)

    faces_only = _train(synth_root, cache_dir, reconstruct=dark)
    both = _train(synth_root, cache_dir, reconstruct=dark, on_reconstructions=True)
    assert both.report["trained_on_reconstructions"] is True
    assert both.report["train_images"] == faces_only.report["train_images"]  # faces; the reconstructions come on top
    # the training faces were reconstructed once, and the test faces once per classifier
    assert sum(seen) == both.report["train_images"] + 2 * both.report["test_images"]
    # on black images a classifier can only say what it learnt they mean: the labels' majority, once it saw them
    black = torch.zeros(1, 3, 32, 32)
    assert not torch.allclose(faces_only.predict(black), both.predict(black))


def test_training_on_reconstructions_needs_a_way_to_make_them(synth_root, cache_dir):
    with pytest.raises(ValueError, match="reconstruct"):
        _train(synth_root, cache_dir, on_reconstructions=True)


def test_a_runs_classifier_is_trained_on_its_reconstructions_and_says_so(tmp_path, synth_root, cache_dir):
    cfg = TrainConfig(image_size=32, latent_dim=8, base_channels=4, data=str(synth_root), cache_dir=str(cache_dir))
    run = untrained_loaded_run(cfg, tmp_path / "run", {"vgg_weights": "random"})
    faces = np.zeros((3, 32, 32, 3), np.uint8)
    faces[1] = 255
    decoded = run.model.decode(run.model.encode(to_tensor(faces))[0]).clamp(0, 1)
    expected = decoded.mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(reconstructions(run)(faces), expected)  # the decoded posterior means, as uint8

    clf = classifier_for_run(run, synth_root, cache_dir, progress=False, on_reconstructions=True, epochs=1,
                             batch_size=16)
    kept = json.loads((tmp_path / "run" / FOLDER / "classifier.json").read_text())["report"]
    assert kept["trained_on_reconstructions"] is True
    assert set(kept["accuracy_reconstructed"]) == set(clf.names)
    assert classifier_for_run(run, synth_root, cache_dir, progress=False).report == clf.report  # kept, not retrained
