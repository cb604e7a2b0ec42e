"""`dfc-vae demo` end to end at tiny scale: every step runs and leaves its files."""

import json

from dfc_vae.cli import main
import pytest


@pytest.mark.slow  # runs the demo: trains
def test_tiny_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--n", "300",
            "--image-size", "32", "--epochs", "1", "--classifier-epochs", "1", "--faces-per-edit", "4", "--show", "1",
            "--vgg-weights", "random"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    for k in range(1, 12):
        assert f"[{k}/11" in printed  # progress through every step
    assert printed.count(" left] ") == 11  # each step's line says the time since the start and the time left
    for name in ("fig5_interpolation", "fig6_arithmetic", "edits"):
        for ext in ("png", "csv", "json"):
            assert (out / "figures" / f"{name}.{ext}").is_file()
    assert (out / "figures" / "prior_gap.json").is_file()
    assert (out / "run" / "classifier" / "model.safetensors").is_file()
    assert (out / "run" / "attributes_train.safetensors").is_file()
    report = (out / "report.md").read_text()
    assert "RANDOM" in report and "synthetic" in report and "figures/fig6_arithmetic.png" in report
    assert "The prior gap" in report and "posterior means of random faces" in report
    assert "Edits against their twins" in report and "figures/edits.png" in report
    assert (out / "data" / "twins" / "index.csv").is_file()
    assert "Random faces: sample quality" in report and "figures/samples_by_prior.png" in report
    assert "| fitted mixture |" in report and "FID (Inception)" in report
    assert (out / "figures" / "samples_by_prior.png").is_file() and (out / "figures" / "samples.csv").is_file()
    assert (out / "run" / "prior.safetensors").is_file()
    assert "Wall time: **" in report and "torch threads" in report and ("no AMX" in report or "(AMX" in report)
    state = json.loads((out / "demo.json").read_text())
    assert state["status"] == "done" and set(state["targets_met"]) <= {
        "flip_Smiling", "flip_Eyeglasses", "others_changed_max_edit", "monotone_rows"}


def test_demo_refuses_a_folder_that_is_not_a_demo(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    assert main(["demo", "--out", str(tmp_path), "--vgg-weights", "random", "--no-progress"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


def test_demo_refuses_bad_settings_before_writing_anything(tmp_path, capsys):
    out = tmp_path / "demo"
    for flags, named in ((["--vector-method", "median"], "--vector-method"), (["--epochs", "0"], "epochs"),
                         (["--show", "5", "--faces-per-edit", "4"], "--show"), (["--n", "10"], "--n")):
        assert main(["demo", "--out", str(out), "--vgg-weights", "random", "--no-progress", *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert named in err and len(err.splitlines()) == 1
        assert not out.exists()
