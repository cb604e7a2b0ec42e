"""The edit benchmark (evaluation/edits.py, edits_report.py, `dfc-vae edits`): edits measured against twins."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from dfc_vae.cli import main
from dfc_vae.data.celeba import ATTRIBUTE_NAMES
from dfc_vae.data.sources import open_faces
from dfc_vae.data.synth import render_celeba
from dfc_vae.data.synth.twinset import open_twins, render_twins
from dfc_vae.editing.latent import walk
from dfc_vae.evaluation.classifier import AttributeClassifier, AttributeCNN
from dfc_vae.evaluation.edits import ALPHAS, TwinDistance, _encode, load_group, measure_group
from dfc_vae.model.losses import DFCLoss


@pytest.fixture(scope="module")
def twin_data(tmp_path_factory):
    """A small synthetic dataset with Smiling and Eyeglasses twins of its test faces."""
    root = render_celeba(tmp_path_factory.mktemp("twins") / "data", n=120, seed=1, workers=1, progress=False)
    render_twins(root, ["Smiling", "Eyeglasses"], faces_per_direction=4, workers=1, progress=False)
    return root


@pytest.fixture(scope="module")
def group(twin_data):
    faces = open_faces(twin_data)
    return load_group(open_twins(twin_data), faces, "Smiling", "+", 32, "official", 4)


class _LinearVAE(torch.nn.Module):
    """A stand-in model whose decoded faces follow its latent closely: a linear encoder and a linear decoder
    (what the benchmark needs of a model: encode -> (mu, logvar), decode)."""

    def __init__(self, dim: int = 24, size: int = 32):
        super().__init__()
        torch.manual_seed(0)
        self.enc = torch.nn.Linear(3 * size * size, dim)
        self.dec = torch.nn.Linear(dim, 3 * size * size)
        self.size = size

    def encode(self, x):
        mu = self.enc(x.flatten(1))
        return mu, torch.zeros_like(mu)

    def decode(self, z):
        return torch.sigmoid(4 * self.dec(z)).view(-1, 3, self.size, self.size)


def _model_run():
    return SimpleNamespace(model=_LinearVAE().eval(), device="cpu")


def _judge():
    torch.manual_seed(1)
    names = list(ATTRIBUTE_NAMES)
    report = {"accuracy": dict.fromkeys(names, 1.0), "balanced_accuracy": dict.fromkeys(names, 1.0)}
    return AttributeClassifier(AttributeCNN(32, len(names), 8).eval(), names, report)


def test_a_group_holds_the_faces_their_twins_and_regions(group):
    assert group.faces.shape == group.twins.shape == (4, 3, 32, 32)
    assert group.regions.shape == (4, 32, 32) and 0 < float(group.regions.mean()) < 0.3
    assert not group.face_labels.any() and group.twin_labels[:, ATTRIBUTE_NAMES.index("Smiling")].all()
    change = (group.faces - group.twins).abs().sum(1)  # how a face and its twin differ at 32 px...
    assert float((change * group.regions).sum() / change.sum()) > 0.95  # ...lies in the region, nearly all


def test_the_vgg_distance_to_the_twins_is_the_runs_reconstruction_term(group):
    vgg = DFCLoss("vae123", vgg_weights="random")
    distance = TwinDistance(vgg, group.twins)
    for images in (group.faces, group.twins, group.faces.flip(3)):  # the twins' features kept between calls
        assert torch.equal(distance(images), vgg.reconstruction(group.twins, images))


def test_a_zero_vector_scores_the_floor_and_the_twins_latent_the_ceiling(group):
    run, vgg, judge = _model_run(), DFCLoss("vae123", vgg_weights="random"), _judge()
    z, z_twin = _encode(run, group.faces), _encode(run, group.twins)
    k = len(ALPHAS)
    edits = {"zero": walk(z, torch.zeros(z.shape[1]), ALPHAS),
             "twin": z_twin.unsqueeze(1).expand(-1, k, -1).contiguous(),
             "some": walk(z, torch.linspace(-1, 1, z.shape[1]), ALPHAS)}
    results, shown = measure_group(run, group, edits, ALPHAS, vgg, judge)
    zero, twin, some = results
    assert zero.floor != zero.ceiling  # a scale to read positions on
    assert zero.at_one == zero.at_best == zero.floor and zero.best_alpha == 1.0  # ties go to the alpha nearest 1
    assert set(zero.position_at_one.values()) == {0.0} and zero.inside_region is None
    assert twin.at_one == twin.ceiling and set(twin.position_at_one.values()) == {1.0}
    assert twin.inside_region == twin.twin_inside_region
    assert some.at_best["mse"] <= min(some.at_one["mse"], some.floor["mse"])
    assert zero.judge["edit"] == 1 - zero.judge["face_recon"]  # the unedited reconstruction, judged against the twin
    assert zero.judge["others_changed_edit"] == 0  # doing nothing changes no other label...
    assert twin.judge["others_changed_edit"] == twin.judge["others_changed_twin"]  # ...the true twin's latent: its own
    for r in results:
        assert all(0 <= v <= 1 for v in r.judge.values())
    probs = judge.predict(group.twins)[:, judge.column("Smiling")] > 0.5
    assert zero.judge["twin"] == float(probs.numpy().mean())  # every twin smiles
    assert [c.shape for c in shown["some"]] == [(32, 32, 3)] * 6


def test_the_command_writes_the_benchmark(tiny_trained_run, twin_data, tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["edits", "--run", str(tiny_trained_run), "--data", str(twin_data), "--out", str(out), "--faces", "2",
                 "--no-judge", "--no-progress", "--attribute", "Smiling", "--vgg-weights", "random"]) == 0
    assert "Smiling" in capsys.readouterr().out
    summary = json.loads((out / "edits.json").read_text())
    assert {(r["direction"], r["method"]) for r in summary["results"]} == {
        (d, m) for d in "+-" for m in ("mean-difference", "regression")}
    assert all(r["faces"] == 2 and r["attribute"] == "Smiling" for r in summary["results"])
    assert "synthetic" in summary["caption"][0]
    with Image.open(out / "edits.png") as im:
        assert im.text["summary"] == "edits.json" and "synthetic" in im.text["caption"] and im.width > 6 * 64
    assert len((out / "edits.csv").read_text().splitlines()) == 5


def test_bad_inputs_exit_2_and_write_nothing(tiny_trained_run, synth_root, twin_data, tmp_path):
    run = str(tiny_trained_run)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for argv in (["--data", str(synth_root)],  # no twins
                 ["--data", str(twin_data), "--attribute", "Young"],  # no twins of it
                 ["--data", str(twin_data), "--faces", "0"],
                 ["--data", str(twin_data), "--out", str(a_file)]):
        out = argv[argv.index("--out") + 1] if "--out" in argv else str(tmp_path / "out")
        assert main(["edits", "--run", run, "--no-judge", "--no-progress", *argv] + (["--out", out] if "--out" not in argv else [])) == 2
        assert not (tmp_path / "out").exists()
    assert main(["edits", "--run", str(tmp_path / "notarun"), "--data", str(twin_data)]) == 2
    assert a_file.read_text() == "x"


def test_evaluate_reports_the_edits_where_the_faces_have_twins(tiny_trained_run, twin_data, tmp_path):
    from dfc_vae.evaluation.evaluate import evaluate

    out = evaluate(tiny_trained_run, twin_data, tmp_path / "eval", vgg_weights="random", tsne_faces=0, progress=False)
    report = (out / "report.md").read_text()
    assert "Edits against their twins" in report and "![edits against twins](edits.png)" in report
    rows = json.loads((out / "edits.json").read_text())["results"]
    assert {r["attribute"] for r in rows} <= {"Smiling", "Eyeglasses"} and rows
    assert all(r["judge"]["edit"] is None for r in rows)  # the run has no classifier: none is trained here
