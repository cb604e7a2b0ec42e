"""The prior fitted to the faces (runs/prior.py): what it fits and draws, its file, the run and the export that
carry it, the commands that use it, and faces drawn to order."""

import shutil

import numpy as np
import pytest
import torch

from dfc_vae.cli import main
from dfc_vae.evaluation.figure5 import prior_ends
from dfc_vae.runs.prior import (FILE, MIN_WHERE_FACES, FittedPrior, Gaussian, fit_densities, load_prior, parse_where,
                                stored_prior)
from dfc_vae.util.errors import UserError


def _bimodal(n: int, seed: int) -> torch.Tensor:
    """Two well-separated clusters in 3 dimensions."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[-4.0, 0, 0], [4.0, 0, 0]])
    return centres[torch.randint(2, (n,), generator=g)] + 0.5 * torch.randn(n, 3, generator=g)


def _prior(train: torch.Tensor, labels: np.ndarray, names: list[str]) -> FittedPrior:
    gaussian, weights, mixture, choice = fit_densities(train, _bimodal(200, 9))
    return FittedPrior(gaussian, weights, mixture, train, labels, names, {"step": 7, "mixture": choice})


def test_the_mixture_finds_two_clusters_and_explains_held_out_points_better_than_one_gaussian():
    gaussian, weights, mixture, choice = fit_densities(_bimodal(400, 1), _bimodal(200, 2))
    assert choice["components"] >= 2 and choice["chosen_by"] == "valid log-likelihood"
    ll = choice["valid_log_likelihood"]
    assert ll["mixture"] > ll["gaussian"] + 0.5 and ll["gaussian"] > ll["normal"]
    assert torch.allclose(gaussian.mean, _bimodal(400, 1).double().mean(0), atol=1e-6)


def test_draws_follow_each_density():
    train = _bimodal(400, 1)
    prior = _prior(train, np.zeros((400, 0), bool), [])
    g = torch.Generator().manual_seed(0)
    z = prior.draw("gaussian")(20000, g)
    assert torch.allclose(z.double().mean(0), prior.gaussian.mean, atol=0.1)
    assert torch.allclose(torch.cov(z.double().T), prior.gaussian.covariance, atol=0.3)
    m = prior.draw("mixture")(20000, g)
    assert 0.4 < float((m[:, 0] > 0).double().mean()) < 0.6  # both clusters, in their shares
    assert float((m[:, 0].abs() < 2).double().mean()) < 0.01  # and nothing between them
    t = prior.draw("mixture", temperature=0.0)(50, g)
    centres = torch.stack([c.mean for c in prior.components]).float()
    assert torch.cdist(t, centres).min(1).values.max() < 1e-5  # temperature 0: each draw is a component's mean
    with pytest.raises(UserError, match="unknown prior"):
        prior.draw("uniform")


def test_figure5s_fake_rows_keep_their_n01_ends_and_the_gaussian_maps_the_same_draws():
    prior = _prior(_bimodal(400, 1), np.zeros((400, 0), bool), [])
    plain = prior_ends(30, 3, seed=0, salt=3)
    through_normal = prior_ends(30, 3, seed=0, salt=3, draw=prior.draw("normal"))
    assert all(torch.equal(a, b) for a, b in zip(plain, through_normal))  # the demo's figure stays bit-identical
    mapped = prior_ends(30, 3, seed=0, salt=3, draw=prior.draw("gaussian"))
    expected = prior.gaussian.mean + plain[0].double() @ prior.gaussian.root.T
    assert torch.allclose(mapped[0].double(), expected, atol=1e-5)


def test_the_file_keeps_every_density_and_the_fitted_faces(tmp_path):
    labels = np.random.default_rng(0).random((400, 2)) < 0.5
    prior = _prior(_bimodal(400, 1), labels, ["Smiling", "Male"])
    loaded = load_prior(prior.save(tmp_path / FILE))
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    assert torch.allclose(loaded.draw("mixture")(100, g1), prior.draw("mixture")(100, g2), atol=1e-5)
    assert loaded.names == ["Smiling", "Male"] and (loaded.labels == labels).all() and loaded.meta["step"] == 7
    (tmp_path / "junk.safetensors").write_bytes(b"not a prior")
    with pytest.raises(UserError, match="not a prior file"):
        load_prior(tmp_path / "junk.safetensors")


def test_faces_drawn_to_order_come_from_the_faces_so_labelled():
    train = _bimodal(400, 1)
    right = (train[:, 0] > 0).numpy()[:, None]
    prior = _prior(train, right, ["Right"])
    gaussian, count = prior.conditional({"Right": True})
    assert count == int(right.sum()) and float(gaussian.mean[0]) > 3
    assert float(prior.conditional({"Right": False})[0].mean[0]) < -3
    with pytest.raises(UserError, match="unknown attribute 'Left'; the faces are labelled with Right"):
        prior.conditional({"Left": True})
    few = _prior(train, np.arange(400)[:, None] < MIN_WHERE_FACES - 1, ["Rare"])
    with pytest.raises(UserError, match=f"only {MIN_WHERE_FACES - 1} of the 400 faces .* have Rare=1"):
        few.conditional({"Rare": True})
    with pytest.raises(UserError, match="carry no labels"):
        _prior(train, np.zeros((400, 0), bool), []).conditional({"Smiling": True})


@pytest.mark.parametrize("item, message", [("Smiling", "should look like Smiling=1"),
                                           ("Smiling=2", r"must be 1 \(with the attribute\) or 0"),
                                           ("Smiling=yes", "must be 1"), ("=1", "should look like")])
def test_where_is_name_equals_zero_or_one(item, message):
    with pytest.raises(UserError, match=message):
        parse_where([item])
    assert parse_where(["Smiling=1", "Male=0"]) == {"Smiling": True, "Male": False}


def test_a_gaussian_of_one_collapsed_dimension_stays_drawable():
    x = torch.cat([torch.randn(100, 1), torch.zeros(100, 1)], 1)
    gaussian, *_ = fit_densities(x, x[:10])
    assert torch.isfinite(gaussian.draw(torch.randn(5, 2))).all()


# ----------------------------------------------------------------------------- with a run


@pytest.fixture
def run_copy(tiny_trained_run, tmp_path):
    """A copy of the tiny run, free to write a prior into."""
    return shutil.copytree(tiny_trained_run, tmp_path / "run")


def test_fit_prior_keeps_it_with_the_run_and_export_and_load_model_carry_it(run_copy, synth_root, cache_dir, tmp_path,
                                                                           capsys):
    from dfc_vae import load_model
    from dfc_vae.runs.run import load_run

    assert load_run(run_copy).prior is None  # a run from before: it loads, without a prior
    assert main(["fit-prior", "--run", str(run_copy), "--cache-dir", str(cache_dir), "--device", "cpu",
                 "--no-progress"]) == 0
    assert "wrote" in capsys.readouterr().out and (run_copy / FILE).is_file()
    run = load_run(run_copy)
    assert run.prior is not None and run.prior.meta["step"] == run.step
    assert run.prior.names and len(run.prior.labels) == len(run.prior.means)
    assert main(["export", "--run", str(run_copy), "--out", str(tmp_path / "export")]) == 0
    assert (tmp_path / "export" / FILE).is_file()
    assert "## Prior" in (tmp_path / "export" / "README.md").read_text()
    exported, _ = load_model(tmp_path / "export")
    assert exported.prior is not None and torch.equal(exported.prior.means, run.prior.means)


def test_a_prior_fitted_for_another_step_is_not_used(run_copy):
    from dfc_vae.runs.run import load_run

    run = load_run(run_copy)
    prior = _prior(_bimodal(400, 1), np.zeros((400, 0), bool), [])
    prior.meta["step"] = run.step + 1
    prior.save(run_copy / FILE)
    assert stored_prior(run) is None


def test_sample_with_each_prior_and_to_order(run_copy, synth_root, cache_dir, tmp_path, capsys):
    common = ["--run", str(run_copy), "--cache-dir", str(cache_dir), "--device", "cpu", "--n", "4"]
    assert main(["sample", *common, "--prior", "mixture", "--out", str(tmp_path / "m.png")]) == 0
    out = capsys.readouterr().out
    assert "fitting one now" in out and (tmp_path / "m.png").is_file()  # an old run: fitted on demand
    from dfc_vae.runs.prior import fit_prior
    from dfc_vae.runs.run import load_run

    fit_prior(load_run(run_copy), cache_dir=cache_dir).save(run_copy / FILE)
    assert main(["sample", *common, "--where", "Smiling=1", "--out", str(tmp_path / "w.png")]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "w.png").is_file() and "training faces with Smiling=1" in out
    assert "no attribute classifier" in out  # the tiny run has none, so the faces are not scored: said so


@pytest.mark.parametrize("where, message", [
    ("Smiley=1", "unknown attribute 'Smiley'"), ("Smiling=2", "must be 1 (with the attribute) or 0"),
    ("Eyeglasses=1", "drawing to order needs at least")])
def test_a_bad_where_is_one_line_and_exit_status_2(run_copy, cache_dir, tmp_path, capsys, where, message):
    from dfc_vae.runs.prior import fit_prior
    from dfc_vae.runs.run import load_run

    fit_prior(load_run(run_copy), cache_dir=cache_dir).save(run_copy / FILE)
    asked = ["--where", where] + (["--where", "Male=1", "--where", "Smiling=1"] if where.startswith("Eye") else [])
    assert main(["sample", "--run", str(run_copy), *asked, "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not (tmp_path / "x.png").exists()
