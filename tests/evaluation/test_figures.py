"""Figures 5 and 6: grid geometry, endpoints, the per-cell CSV, the summary measures, and the note for an
attribute the classifier is not trusted on."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from dfc_vae.editing.attributes import compute_attribute_vectors
from dfc_vae.evaluation.classifier import train_classifier
from dfc_vae.data.decode import load_face
from dfc_vae.util.images import to_tensor
from dfc_vae.evaluation.diagnostics import aggregate_posterior, prior_gap
from dfc_vae.evaluation.figure6 import edit_measures, figure6, measure_edits
from dfc_vae.evaluation.figure5 import FIG5_ROWS, _monotone, figure5, interpolation_measures
from dfc_vae.evaluation.figure6 import parse_edit
from dfc_vae.evaluation.figures import as_dict, compose
from dfc_vae.util.images import figure_cell, to_uint8
from dfc_vae.runs.run import load_run


@pytest.fixture(scope="module")
def tiny(tiny_trained_run, synth_root, cache_dir):
    run = load_run(tiny_trained_run)
    clf = train_classifier(synth_root, 32, cache_dir=cache_dir, epochs=1, batch_size=16, progress=False)
    vectors = compute_attribute_vectors(run, synth_root, "train", cache_dir, progress=False)
    return run, clf, vectors


def test_compose_geometry():
    cells = [np.zeros((13, 32, 32, 3), np.uint8) for _ in range(3)]
    assert compose(cells, pad=2).shape == (3 * 34 + 2, 13 * 34 + 2, 3)


def test_figure5_rows_endpoints_and_csv(tiny, synth_root, cache_dir, tmp_path):
    run, clf, _ = tiny
    res = figure5(run, synth_root, clf, tmp_path / "f5.png", n_faces=3, n_show=1, cache_dir=cache_dir, progress=False)
    table = pd.read_csv(res.csv)
    summary = res.summary.rows
    drawn = [r.name for r in FIG5_ROWS if summary[r.name].faces]
    assert len(table) == 11 * sum(summary[r.name].faces for r in FIG5_ROWS)
    assert sorted(table.alpha.unique()) == pytest.approx([i / 10 for i in range(11)])
    picture = Image.open(res.png)
    x0, y0, size, pitch = map(int, picture.text["cells"].split(","))
    assert size >= 64 and picture.width >= x0 + 13 * pitch and picture.height > y0 + len(drawn) * pitch  # 13 columns
    # row 1 (non-smiling woman -> smiling woman): input, alpha 0 ... 1, input; each face enlarged k x k
    first = table[(table.row == FIG5_ROWS[0].name) & (table.face == 0)].iloc[0]
    left = load_face(synth_root / "img_align_celeba" / first.image, 32)
    right = load_face(synth_root / "img_align_celeba" / first.image_right, 32)
    cell = lambda c: figure_cell(picture, 0, c)[::size // 32, ::size // 32]  # noqa: E731
    assert np.array_equal(cell(0), left) and np.array_equal(cell(12), right)
    with torch.no_grad():  # the alpha = 0 and 1 cells decode exactly the encoded endpoints
        mu = run.model.encode(to_tensor(np.stack([left, right])))[0]
        ends = to_uint8(run.model.decode(mu))
    assert np.abs(cell(1).astype(int) - ends[0]).max() <= 1 and np.abs(cell(11).astype(int) - ends[1]).max() <= 1
    assert 0 <= res.summary.monotone_rows <= 1


def test_figure6_rows_and_measures(tiny, synth_root, cache_dir, tmp_path):
    run, clf, vectors = tiny
    res = figure6(run, synth_root, vectors, clf, tmp_path / "f6.png", n_faces=2, n_show=1, cache_dir=cache_dir,
                  progress=False)
    assert res.csv.is_file() and res.png.with_suffix(".json").is_file()
    shown = sum(min(1, r.faces) for r in res.summary.rows.values())
    picture = Image.open(res.png)
    x0, y0, size, pitch = map(int, picture.text["cells"].split(","))
    assert size >= 64 and picture.width >= x0 + 12 * pitch and picture.height >= y0 + shown * pitch  # input + 11 alphas
    assert "synthetic faces" in picture.text["caption"] and "+Smiling" in picture.text["caption"]
    custom = figure6(run, synth_root, vectors, clf, None, edits=[parse_edit("+Bangs:~Male")], alphas=[0, 0.5, 2],
                     n_faces=2, cache_dir=cache_dir, progress=False)
    assert custom.summary.alphas == [0, 0.5, 2] and list(custom.summary.rows) == ["+Bangs:~Male"]
    numbers = measure_edits(run, synth_root, vectors, clf, n_faces=2, cache_dir=cache_dir)
    assert {"flip_Smiling", "others_changed_max_edit", "monotone_rows", "fig5", "fig6"} <= set(as_dict(numbers))


def test_edit_measures_on_known_scores():
    names = ["Smiling", "Male", "Bangs"]
    # 4 faces x 3 alphas: Smiling rises on 3 faces; Male flips on face 0; Bangs never changes
    p = torch.zeros(4, 3, 3)
    p[:3, :, 0] = torch.tensor([0.1, 0.5, 0.9])
    p[0, :, 1] = torch.tensor([0.2, 0.4, 0.7])
    m = edit_measures(p, names, "Smiling", +1)
    assert m.flip_rate == 0.75 and m.at_start == 0
    assert m.others_changed == 0.25 and m.others_changed_max_attribute == "Male"
    assert edit_measures(p, names, "Smiling", +1, trusted=["Smiling", "Bangs"]).others_changed == 0
    assert _monotone(torch.tensor([[0.1, 0.5, 0.9], [0.9, 0.5, 0.1], [0.1, 0.9, 0.2], [0.5, 0.48, 0.6]])).tolist() == [
        True, True, False, True]


def test_interpolation_measures_on_known_scores():
    names = ["Smiling", "Male", "Bangs"]
    p = torch.zeros(3, 3, 3)  # 3 rows x 3 alphas
    p[:, :, 0] = torch.tensor([[0.1, 0.5, 0.9], [0.1, 0.9, 0.6], [0.2, 0.3, 0.4]])  # monotone, not, no flip
    p[2, :, 1] = torch.tensor([0.9, 0.2, 0.3])  # Male flips on row 2, rising again by 0.1 (> tolerance)
    m = interpolation_measures(p, names, trusted=names)
    assert m.rows_with_changing_scores == 3 and m.monotone == pytest.approx(1 / 3)
    assert m.failing_scores == {"Smiling": 1, "Male": 1}
    assert interpolation_measures(p, names, trusted=["Smiling", "Bangs"]).rows_with_changing_scores == 2


def test_aggregate_posterior_of_a_known_mixture():
    mu = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    logvar = torch.tensor([[0.5, 1.0], [0.5, 1.0]]).log()
    mean, cov = aggregate_posterior(mu, logvar)
    assert torch.allclose(mean, torch.zeros(2)) and torch.allclose(cov, torch.diag(torch.tensor([1.5, 1.0])))


def test_prior_gap_uses_the_figures_fake_rows_and_judge(tiny, synth_root, cache_dir):
    run, clf, _ = tiny
    fig = figure5(run, synth_root, clf, None, n_faces=6, cache_dir=cache_dir, progress=False).summary.rows
    gap = prior_gap(run, synth_root, clf, n_faces=6, fit_faces=50, cache_dir=cache_dir, progress=False)
    assert gap.fit_faces == 50 and len(gap.sources) == 4
    prior = next(iter(gap.sources.values()))
    fake = fig[FIG5_ROWS[-1].name]
    assert prior.faces == 6 and prior.rows_with_changing_scores == fake.rows_with_changing_scores
    assert prior.monotone_all_attributes == fake.monotone_all_attributes
    assert prior.monotone == pytest.approx(fake.monotone, nan_ok=True)
    # the run's latent is calibrated (model/network.py), so its aggregate posterior has about N(0, I)'s moments
    moments = gap.aggregate_posterior.second_moment_per_dimension
    assert 0.8 < moments.median < 1.25


def test_bad_edit_spec_is_a_user_error():
    from dfc_vae.util.errors import UserError

    with pytest.raises(UserError, match="unknown attribute 'Smilling'"):
        parse_edit("+Smilling")
    with pytest.raises(UserError, match="should look like"):
        parse_edit("Smiling")


def test_as_dict_leaves_out_the_measures_a_run_could_not_take():
    from dfc_vae.evaluation.figures import Figure5Summary, Headline, RowCount

    assert as_dict(Headline(others_changed_max_edit=0.0, monotone_rows=1.0)) == {
        "others_changed_max_edit": 0.0, "monotone_rows": 1.0}
    summary = Figure5Summary({"man -> woman": RowCount(0)}, "linear", [0.0, 1.0], [], 0.05, 0.0, 0.0)
    assert as_dict(summary)["rows"] == {"man -> woman": {"faces": 0}} and "monotone_rows_own_attribute" not in as_dict(summary)


def test_the_untrusted_note_says_which_accuracy_fell_short_and_what_to_do():
    from types import SimpleNamespace

    from dfc_vae.evaluation.figures import untrusted_note

    clf = SimpleNamespace(report={"accuracy": {"Eyeglasses": 0.91, "Male": 0.97},
                                  "balanced_accuracy": {"Eyeglasses": 0.6, "Male": 0.8}})
    assert untrusted_note(clf, "Eyeglasses", "train longer, e.g. the demo's 5 epochs") == (
        "Eyeglasses not measured: the classifier's test accuracy on Eyeglasses is 91% < 95%; train longer, e.g. the "
        "demo's 5 epochs")
    assert untrusted_note(clf, "Male").startswith("Male not measured: the classifier's balanced test accuracy on Male "
                                                  "is 80% < 90%")
