"""The figure scripts treat bad input as the CLI does: one line, exit status 2, nothing written."""

import importlib.util
from pathlib import Path

import pytest


def _script(name):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("alphas,message", [
    (["--alpha-min", "1", "--alpha-max", "0"], "alpha range 1.0..0.0 is malformed"),
    (["--alpha-max", "nan"], "is malformed"),
    (["--alpha-max", "one"], "invalid float value: 'one'"),
    (["--steps", "1"], "--steps must be at least 2"),
])
def test_malformed_alpha_range(alphas, message, tmp_path, capsys):
    fig6 = _script("fig6_arithmetic")
    out = tmp_path / "fig6.png"
    with pytest.raises(SystemExit) as e:
        fig6.main(["--run", str(tmp_path / "run"), "--data", str(tmp_path), "--attributes", str(tmp_path / "a"),
                   "--out", str(out), *alphas])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]
    assert list(tmp_path.iterdir()) == []


def test_fig5_on_a_missing_run(tmp_path, capsys):
    fig5 = _script("fig5_interpolation")
    with pytest.raises(SystemExit) as e:
        fig5.main(["--run", str(tmp_path / "nowhere"), "--data", str(tmp_path), "--out", str(tmp_path / "f.png")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]
