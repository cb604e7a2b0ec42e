"""Attribute vectors: mean(z | attribute) - mean(z | not), their file, and the CLI."""

import numpy as np
import pytest
import torch

from dfc_vae.editing.attributes import (AttributeVectors, attribute_vectors, compute_attribute_vectors, load_attribute_vectors)
from dfc_vae.data.celeba import ATTRIBUTE_NAMES, find_celeba, load_annotations
from dfc_vae.runs.config import TrainConfig
from dfc_vae.data.cache import prepare_cache
from dfc_vae.data.sources import open_faces
from dfc_vae.util.images import to_tensor
from dfc_vae.util.errors import UserError
from tiny import untrained_loaded_run


def test_toy_latents_with_known_answer():
    # attribute 0 shifts z by +2 along axis 0; attribute 1 is independent of z; attribute 2 is on nowhere
    mu = torch.tensor([[3.0, 1.0], [3.0, -1.0], [1.0, 1.0], [1.0, -1.0]])
    labels = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=bool)
    vectors, n_pos, n_neg = attribute_vectors(mu, labels)
    assert torch.allclose(vectors[0], torch.tensor([2.0, 0.0]))
    assert torch.allclose(vectors[1], torch.tensor([0.0, 2.0]))
    assert torch.equal(vectors[2], torch.zeros(2))  # no positives: a zero vector, not NaN
    assert n_pos.tolist() == [2, 2, 0] and n_neg.tolist() == [2, 2, 4]


@pytest.fixture(scope="module")
def untrained_run(tmp_path_factory):
    cfg = TrainConfig(image_size=32, latent_dim=8, base_channels=4)
    return untrained_loaded_run(cfg, tmp_path_factory.mktemp("run"), {"vgg_weights": "random"})


def test_vectors_match_brute_force_on_a_synthetic_root(untrained_run, synth_root, cache_dir):
    vec = compute_attribute_vectors(untrained_run, synth_root, "train", cache_dir, progress=False)
    ann = load_annotations(find_celeba(synth_root))
    rows = open_faces(synth_root).indices("train")
    images = prepare_cache(synth_root, 32, "official", cache_dir, None, False).images
    with torch.no_grad():  # one image at a time: batch composition must not matter in eval mode
        mu = torch.cat([untrained_run.model.encode(to_tensor(images[i:i + 1]))[0] for i in rows])
    for name in ("Smiling", "Male", "Eyeglasses", "Young"):
        has = ann[name].to_numpy()[rows]
        if has.all() or not has.any():
            continue
        expected = mu[has].mean(0) - mu[~has].mean(0)
        assert torch.allclose(vec.vector(name), expected, atol=1e-4)
        assert vec.n_pos[ATTRIBUTE_NAMES.index(name)] == has.sum()
    assert vec.meta["synthetic"] and vec.meta["images"] == len(rows)


def test_file_round_trip_and_model_check(tmp_path):
    v = AttributeVectors(list(ATTRIBUTE_NAMES), torch.randn(40, 8), np.arange(40), np.arange(40)[::-1].copy(),
                         {"run": "r", "synthetic": True})
    path = v.save(tmp_path / "v.safetensors")
    back = load_attribute_vectors(path, latent_dim=8)
    assert back.names == v.names and torch.equal(back.vectors, v.vectors)
    assert back.n_pos.tolist() == v.n_pos.tolist() and back.meta == v.meta
    with pytest.raises(UserError, match="latent has 100 dimensions"):
        load_attribute_vectors(path, latent_dim=100)
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(UserError, match="not an attribute-vector file"):
        load_attribute_vectors(tmp_path / "junk.safetensors")
    with pytest.raises(UserError, match="unknown attribute 'Smiley'"):
        back.vector("Smiley")


def test_regression_vectors_hold_the_co_occurring_attributes_fixed():
    """Glasses (attribute 0) move z along axis 0, age (attribute 1) along axis 1, and most faces with
    glasses are old: the paper's mean difference for glasses also ages the face, the joint regression
    gives glasses' own effect."""
    from dfc_vae.editing.attributes import regression_vectors

    rng = np.random.default_rng(0)
    glasses = rng.random(4000) < 0.3
    old = np.where(glasses, rng.random(4000) < 0.9, rng.random(4000) < 0.2)
    never = np.zeros(4000, dtype=bool)  # no image has it: a zero vector, left out of the fit
    labels = np.c_[glasses, old, never]
    mu = torch.tensor(np.c_[2.0 * glasses + 0.05 * rng.standard_normal(4000),
                            3.0 * old + 0.05 * rng.standard_normal(4000)], dtype=torch.float32)
    mean_difference, _, _ = attribute_vectors(mu, labels)
    assert mean_difference[0, 1] > 1.5  # glasses' vector drags age along (0.7 x 3)
    regression = regression_vectors(mu, labels)
    torch.testing.assert_close(regression[0], torch.tensor([2.0, 0.0]), atol=0.01, rtol=0)
    torch.testing.assert_close(regression[1], torch.tensor([0.0, 3.0]), atol=0.01, rtol=0)
    assert torch.equal(regression[2], torch.zeros(2))


def test_vector_method_is_recorded_and_unknown_methods_are_refused(untrained_run, synth_root, cache_dir, tmp_path):
    vectors = compute_attribute_vectors(untrained_run, synth_root, "train", cache_dir, progress=False, method="regression")
    assert vectors.meta["method"] == "regression"
    loaded = load_attribute_vectors(vectors.save(tmp_path / "v.safetensors"), 8)
    assert loaded.meta["method"] == "regression" and loaded.names == vectors.names
    assert compute_attribute_vectors(untrained_run, synth_root, "train", cache_dir, progress=False).meta["method"] == "mean-difference"
    with pytest.raises(UserError, match="mean-difference, regression"):
        compute_attribute_vectors(untrained_run, synth_root, "train", cache_dir, progress=False, method="pca")
