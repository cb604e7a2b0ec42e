"""The paths a newcomer walks: a run finds its own vectors and puts its figures where `export` finds them,
a run and an export work from another folder, vectors computed at another step say so, and the commands
print a short summary."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from tiny import tiny_config, untrained_run

from dfc_vae.cli import main
from dfc_vae.data.sources import open_faces
from dfc_vae.editing.attributes import compute_attribute_vectors, load_attribute_vectors
from dfc_vae.evaluation.classifier import train_classifier
from dfc_vae.runs.run import load_run
from dfc_vae.util.fileio import write_json

STEP = 7


@pytest.fixture(scope="module")
def where(tmp_path_factory, synth_root, cache_dir):
    """A folder as a newcomer has it after the README's commands: data/synth (the tiny synthetic faces) and
    runs/synth, a run whose config.json records its data as given ("data/synth", relative to this folder) and as
    the absolute path, with its attribute vectors and classifier; the model is untrained (nothing here judges
    it), its checkpoint at step STEP."""
    root = tmp_path_factory.mktemp("newcomer")
    (root / "data").mkdir()
    (root / "data" / "synth").symlink_to(synth_root)
    run_dir = root / "runs" / "synth"
    cfg = tiny_config(data="data/synth", out=str(run_dir), latent_dim=8, base_channels=4, crop="official",
                      cache_dir=str(cache_dir))
    faces = open_faces(synth_root)
    untrained_run(run_dir, cfg, faces, step=STEP, data_absolute=str((root / "data" / "synth").resolve()))
    compute_attribute_vectors(load_run(run_dir), faces, "train", cache_dir, False).save(
        run_dir / "attributes_train.safetensors")
    train_classifier(faces, 32, cache_dir=cache_dir, epochs=1, batch_size=16, progress=False).save(run_dir / "classifier")
    return root


@pytest.fixture
def run_copy(where, tmp_path):
    """A copy of the fixture's folder, for a test that writes into the run."""
    root = tmp_path / "here"
    shutil.copytree(where, root, symlinks=True)
    return root


def photo(root):
    return sorted((root / "data" / "synth" / "img_align_celeba").glob("*.jpg"))[0]


@pytest.mark.slow
def test_edit_with_run_and_no_attributes_uses_the_run_s_vectors(where, tmp_path, capsys):
    run = where / "runs" / "synth"
    out = tmp_path / "edited.png"
    assert main(["edit", str(photo(where)), "--run", str(run), "--set", "Smiling=1", "--out", str(out)]) == 0
    assert f"attribute vectors: {run / 'attributes_train.safetensors'}" in capsys.readouterr().out.splitlines()
    picture = Image.open(out)
    assert f"model synth step {STEP}; vectors of step {STEP}," in picture.text["caption"]
    cell = 32 * 4  # three faces of 32 px shown at 128 px: the strip is as wide as they are, its caption wrapped
    assert picture.width == 3 * (cell + 2) + 2


@pytest.mark.slow
def test_a_run_without_vectors_names_the_command_that_makes_them(run_copy, tmp_path, capsys):
    run = run_copy / "runs" / "synth"
    (run / "attributes_train.safetensors").unlink()
    out = tmp_path / "edited.png"
    assert main(["edit", str(photo(run_copy)), "--run", str(run), "--set", "Smiling=1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"`dfc-vae attributes --run {run}`" in err[0] and "--attributes FILE" in err[0]
    assert not out.exists()


@pytest.mark.slow
def test_stale_vectors_warn_in_one_line_and_the_caption_names_both_steps(where, tmp_path, capsys):
    run = where / "runs" / "synth"
    vectors = load_attribute_vectors(run / "attributes_train.safetensors")
    vectors.meta["step"] = STEP - 4  # computed before the run trained on
    stale = vectors.save(tmp_path / "stale.safetensors")
    out = tmp_path / "edited.png"
    assert main(["edit", str(photo(where)), "--run", str(run), "--attributes", str(stale), "--set", "Smiling=1",
                 "--out", str(out)]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and f"step {STEP - 4}" in warnings[0] and f"step {STEP}" in warnings[0]
    assert f"model synth step {STEP}; vectors of step {STEP - 4}," in Image.open(out).text["caption"]
    assert main(["edit", str(photo(where)), "--run", str(run), "--set", "Smiling=1", "--out", str(out)]) == 0
    assert "warning:" not in capsys.readouterr().err  # the run's own vectors, of its step


@pytest.mark.slow
def test_the_figures_go_into_the_run_print_a_short_summary_and_export_finds_them(run_copy, tmp_path, capsys):
    run = run_copy / "runs" / "synth"
    figures = run / "figures"
    for figure in ("fig5", "fig6"):
        assert main([figure, "--run", str(run), "--faces", "4"]) == 0
        out = capsys.readouterr().out.strip().splitlines()
        assert len(out) <= 10 and not any(line.lstrip().startswith(("{", '"')) for line in out)  # no JSON
        assert out[-1] == f"wrote {figures / figure}.png, {figure}.csv and {figure}.json (the full summary)"
        assert all((figures / f"{figure}.{ext}").is_file() for ext in ("png", "csv", "json"))
    assert main(["gap", "--run", str(run), "--faces", "4", "--fit-faces", "20"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"wrote {figures / 'prior_gap.json'}"
    assert len(json.loads((figures / "prior_gap.json").read_text())["sources"]) == 4
    exported = tmp_path / "exported"
    assert main(["export", "--run", str(run), "--out", str(exported)]) == 0
    assert json.loads((exported / "config.json").read_text())["figures"] == ["figures/fig5.png", "figures/fig6.png"]
    assert (exported / "figures" / "fig5.png").read_bytes() == (figures / "fig5.png").read_bytes()


@pytest.mark.slow
def test_an_attribute_the_classifier_does_not_trust_is_explained_where_it_is_reported(where, tmp_path, capsys):
    from dfc_vae.evaluation.classifier import load_classifier

    clf = load_classifier(where / "runs" / "synth" / "classifier")
    untrusted = [n for n in ("Smiling", "Male") if n not in clf.scored()]
    assert untrusted  # one epoch on 77 faces: the classifier is not trusted yet
    assert main(["fig5", "--run", str(where / "runs" / "synth"), "--faces", "4", "--out", str(tmp_path / "f.png")]) == 0
    out = capsys.readouterr().out
    for name in untrusted:
        accuracy = clf.accuracy[name]
        line = (f"{name} not measured: the classifier's test accuracy on {name} is {accuracy:.0%} < 95%; train "
                "longer, e.g. the demo's 5 epochs") if accuracy < 0.95 else f"{name} not measured: the classifier's balanced"
        assert line in out


@pytest.mark.slow
def test_a_run_and_an_export_work_from_another_folder(run_copy, tmp_path, monkeypatch, capsys):
    run = run_copy / "runs" / "synth"
    exported = tmp_path / "exported"
    assert main(["export", "--run", str(run), "--out", str(exported)]) == 0
    assert json.loads((exported / "config.json").read_text())["meta"]["data_absolute"] == str(
        (run_copy / "data" / "synth").resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # "data/synth", as the run records it, is not here
    capsys.readouterr()
    assert main(["reconstruct", "--run", str(run), "--n", "4", "--out", "r.png"]) == 0
    assert (elsewhere / "r.png").is_file()
    assert "data/synth" in capsys.readouterr().err  # a note says which folder it used instead
    assert main(["fig5", "--model", str(exported), "--faces", "4"]) == 0
    assert (elsewhere / "fig5.png").is_file() and (elsewhere / "fig5.json").is_file()


@pytest.mark.slow
def test_a_recorded_data_folder_that_is_nowhere_names_the_config_and_data(run_copy, tmp_path, monkeypatch, capsys):
    run = run_copy / "runs" / "synth"
    config = json.loads((run / "config.json").read_text())
    del config["meta"]["data_absolute"]  # a run made before the absolute path was recorded
    write_json(run / "config.json", config)
    monkeypatch.chdir(tmp_path)
    assert main(["reconstruct", "--run", str(run), "--n", "4", "--out", "r.png"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data folder data/synth" in err[0] and str(run / "config.json") in err[0]
    assert "--data DIR" in err[0] and not (tmp_path / "r.png").exists()
    assert main(["reconstruct", "--run", str(run), "--n", "4", "--out", "r.png", "--data",
                 str(run_copy / "data" / "synth")]) == 0
