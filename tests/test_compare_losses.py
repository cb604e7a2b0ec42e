"""experiments/compare_losses.py: one run per loss and loss scale, the comparison table, and the
paper's pictures (the same test faces through every run; prior samples per run)."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dfc_vae.runs.run import load_run


def _compare_losses():
    path = Path(__file__).parents[1] / "experiments" / "compare_losses.py"
    spec = importlib.util.spec_from_file_location("compare_losses", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # trains
def test_both_reductions_are_trained_compared_and_pictured(synth_root, cache_dir, tmp_path):
    out = tmp_path / "cmp"
    status = _compare_losses().main([
        "--data", str(synth_root), "--out", str(out), "--losses", "pvae", "--reductions", "sum", "paper",
        "--image-size", "32", "--epochs", "1", "--max-steps", "2", "--batch-size", "16", "--vgg-weights", "random",
        "--device", "cpu", "--cache-dir", str(cache_dir), "--no-edit-scores", "--no-progress"])
    assert status == 0
    table = pd.read_csv(out / "comparison.csv")
    assert list(zip(table["loss"], table["reduction"])) == [("pvae", "sum"), ("pvae", "paper")]
    assert load_run(out / "pvae").config.reduction == "sum" and load_run(out / "pvae-paper").config.reduction == "paper"
    recon = np.asarray(Image.open(out / "reconstructions.png"))
    assert recon.shape[0] >= 3 * 64 and recon.shape[1] >= 8 * 64  # inputs + one row per run, 8 faces wide, 32 px shown at 64
    for name in ("pvae", "pvae-paper"):
        assert (out / f"samples_{name}.png").is_file() and f"samples_{name}.png" in (out / "comparison.md").read_text()


def test_an_unknown_reduction_is_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _compare_losses().main(["--data", str(tmp_path), "--out", str(tmp_path / "o"), "--reductions", "mean"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "invalid choice: 'mean'" in err[0]
    assert not (tmp_path / "o").exists()


def test_an_out_that_is_a_file_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "o").write_text("not a folder")
    assert _compare_losses().main(["--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--out {tmp_path / 'o'} is a file; give a folder for the runs" in err[0]
    assert (tmp_path / "o").read_text() == "not a folder"
