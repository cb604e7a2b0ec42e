"""log_likelihood: the importance-weighted estimate of log p(x) of a pixel-loss run (Burda et al. 2016)."""

from __future__ import annotations

import math

import pytest
import torch

from tiny import untrained_loaded_run

from dfc_vae import LoadedRun, ModelConfig, TrainConfig, UserError, decoder_sigma, log_likelihood, log_px_given_z
from dfc_vae.runs.split import FaceSplit

SIZE, LATENT = 32, 4


def _run(**changes) -> LoadedRun:
    """An untrained run of the given training settings (no data needed)."""
    cfg = TrainConfig(**{"loss": "pvae", "image_size": SIZE, "latent_dim": LATENT, "base_channels": 4, **changes})
    return untrained_loaded_run(cfg, "untrained")


def _faces(n: int = 6) -> torch.Tensor:
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("reduction, alpha, beta", [("sum", 1.0, 0.5), ("sum", 2.0, 3.0), ("paper", 1.0, 0.5),
                                                    ("paper", 0.5, 2.0)])
def test_log_px_given_z_is_the_gaussian_whose_negative_log_the_pixel_loss_is(reduction, alpha, beta):
    """-(beta / alpha) L_pixel plus the constant: N(x_hat, sigma^2 I) with sigma^2 = alpha / (2 beta) for per-image
    sums, alpha D / (2 beta 255^2) for the paper's per-element means of 0-255 pixels."""
    run = _run(reduction=reduction, alpha=alpha, beta=beta)
    x, recon = _faces(), _faces(6).flip(0) * 0.8 + 0.1
    dims = 3 * SIZE * SIZE
    sigma = math.sqrt(alpha / (2 * beta) if reduction == "sum" else alpha * dims / (2 * beta * 255 ** 2))
    assert decoder_sigma(run) == pytest.approx(sigma, rel=1e-6)
    expected = torch.distributions.Normal(recon.double(), sigma).log_prob(x.double()).flatten(1).sum(1)
    torch.testing.assert_close(log_px_given_z(run, x, recon), expected, rtol=1e-6, atol=1e-3)


def test_with_a_decoder_that_ignores_z_the_estimates_reach_log_p_x_and_the_elbo_is_below_by_the_kl():
    """Decoder output constant: log p(x) = log p(x | z) for every z, known exactly. With q(z|x) = N(0.3, 1.2^2)
    the ELBO is log p(x) - KL(q || N(0, I)), and L_k climbs from it to log p(x) (q wider than the prior keeps
    the weights p(z) / q(z) bounded, so that 2,000 samples pin L_1000 down)."""
    run = _run()
    with torch.no_grad():
        run.model.fc_decode[0].weight.zero_()  # x_hat no longer depends on z
        run.model.fc_mu.weight.zero_()
        run.model.fc_mu.bias.fill_(0.3)
        run.model.fc_logvar.weight.zero_()
        run.model.fc_logvar.bias.fill_(math.log(1.44))
    x = _faces(4)
    with torch.no_grad():
        exact = log_px_given_z(run, x, run.model.decode(torch.zeros(len(x), LATENT)))
    kl = LATENT * (math.log(1 / 1.2) + (1.44 + 0.09) / 2 - 0.5)  # the 1-D closed form, per dimension
    ll = log_likelihood(run, x, (1, 10, 1000), samples=2000, seed=0)
    torch.testing.assert_close(ll.kl, torch.full((4,), kl, dtype=torch.float64), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ll.elbo, exact - kl, rtol=0, atol=1e-3)
    assert ll.log_px[:, 0].mean() == pytest.approx(float((exact - kl).mean()), abs=0.05)  # L_1: the ELBO, sampled
    # k = 1000 (two groups): within a few hundredths of a nat of log p(x); k = 10 and the ELBO clearly below it
    assert (ll.log_px[:, 2] - exact).abs().mean() < 0.03 and (ll.log_px[:, 2] - exact).abs().max() < 0.06
    assert (ll.log_px[:, 1] - exact).mean() < -0.005 and (ll.log_px[:, 0] - exact).mean() < -0.2


@pytest.fixture(scope="module")
def pvae_run(tmp_path_factory, synth_root, cache_dir):
    """A PVAE trained for 40 steps on the tiny synthetic faces: long enough that its decoder depends on z, so that
    the bounds differ by tens of nats (after 2 steps they differ by tenths, within the estimates' noise)."""
    from tiny import tiny_config

    from dfc_vae import load_run, train

    cfg = tiny_config(data=str(synth_root), out=str(tmp_path_factory.mktemp("pvae40") / "run"), latent_dim=16,
                      base_channels=8, epochs=8, max_steps=40, cache_dir=str(cache_dir), workers=1)
    return load_run(train(cfg, progress=False))


@pytest.mark.slow
def test_estimate_is_at_or_above_the_elbo_and_rises_with_k_on_a_trained_run(pvae_run, synth_root, cache_dir):
    """Independent draws for every k (200 samples per face each, so L_k is a mean over 200 / k groups), at
    several seeds: the mean over faces of L_100 > L_10 > L_1 = the ELBO (sampled). Measured at seeds 0-11: L_10 -
    ELBO 53-60 nats, L_100 - L_10 27-36 nats, |L_1 - ELBO| < 0.01."""
    split = FaceSplit.of_run(pvae_run, synth_root, "test", cache_dir, progress=False)
    x = split.images(split.rows[:8])
    for seed in range(3):
        bounds = {k: log_likelihood(pvae_run, x, k, samples=200, seed=10 * seed + i) for i, k in enumerate((1, 10, 100))}
        means = {k: float(b.log_px.mean()) for k, b in bounds.items()}
        elbo = float(bounds[1].elbo.mean())
        assert means[100] > means[10] + 5 > means[1] + 10, (seed, means)
        assert means[10] > elbo + 10, (seed, means, elbo)
        assert abs(means[1] - elbo) < 1, (seed, means, elbo)  # L_1 is the ELBO, sampled
        assert bounds[100].samples == 200 and bounds[100].log_px.shape == (8, 1)


def test_same_seed_same_numbers_and_uint8_faces_accepted():
    run = _run()
    x = _faces(3)
    a = log_likelihood(run, x, (1, 5), seed=4)
    b = log_likelihood(run, (x.permute(0, 2, 3, 1) * 255).round().byte().numpy(), (1, 5), seed=4)
    c = log_likelihood(run, x, (1, 5), seed=4)
    assert a.samples == 5 and a.k == (1, 5)
    torch.testing.assert_close(a.log_px, c.log_px, rtol=0, atol=0)
    torch.testing.assert_close(a.log_px, b.log_px, rtol=0, atol=5.0)  # the same faces, rounded to 8 bits
    s = a.summary()
    assert set(s["log_px"]) == {"1", "5"} and s["faces"] == 3


@pytest.mark.parametrize("changes, words", [
    ({"loss": "vae123", "vgg_weights": "random"}, "feature-perceptual loss"),
    ({"loss": "vae345", "vgg_weights": "random"}, "--loss pvae"),
    ({"alpha": 0.0}, "alpha = 0"),
])
def test_runs_without_a_likelihood_are_refused(changes, words):
    with pytest.raises(UserError, match=words):
        log_likelihood(_run(**changes), _faces(2), 10)


@pytest.mark.parametrize("k, samples, words", [(0, None, "at least 1"), ((3, 10), 20, "multiple"), (2.5, None, "whole")])
def test_bad_k_or_samples_are_user_errors(k, samples, words):
    with pytest.raises(UserError, match=words):
        log_likelihood(_run(), _faces(2), k, samples=samples)


def test_faces_of_another_size_are_a_user_error():
    with pytest.raises(UserError, match="32x32"):
        log_likelihood(_run(), torch.rand(2, 3, 64, 64), 1)


@pytest.mark.slow
def test_evaluate_reports_log_p_x_for_a_pixel_loss_run(tiny_trained_run, synth_root, cache_dir, tmp_path):
    import json

    from dfc_vae.cli import main

    out = tmp_path / "eval"
    assert main(["evaluate", "--run", str(tiny_trained_run), "--data", str(synth_root), "--cache-dir", str(cache_dir),
                 "--out", str(out), "--tsne-faces", "0", "--vgg-weights", "random", "--log-likelihood", "5", "--no-progress", "--device", "cpu"]) == 0
    ll = json.loads((out / "summary.json").read_text())["log_likelihood"]
    assert ll["samples"] == 5 and ll["sigma"] == pytest.approx(1.0) and ll["log_px"]["5"] > ll["elbo"] - 1
    assert "## log p(x)" in (out / "report.md").read_text()


def test_the_command_help_states_the_library_face_count():
    from dfc_vae.commands import evaluate as command
    from dfc_vae.evaluation.likelihood import LL_FACES

    assert command.LL_FACES == LL_FACES


def test_evaluate_refuses_log_p_x_of_a_feature_loss_run_before_writing(synth_root, tmp_path):
    from dfc_vae.evaluation.evaluate import evaluate

    out = tmp_path / "eval"
    with pytest.raises(UserError, match="feature-perceptual loss"):
        evaluate(_run(loss="vae123", vgg_weights="random"), synth_root, out, device="cpu", progress=False,
                 log_likelihood_k=10)
    assert not out.exists()
