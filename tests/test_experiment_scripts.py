"""The experiment scripts: the figure scripts (and the subcommands they run) treat bad input as the CLI does
(one line, exit status 2, nothing written); the benchmark runs end to end at a tiny size."""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch

from dfc_vae.util.device import resolve_precision
from dfc_vae.data.faces import SYNTHETIC_FACES
from dfc_vae.model.losses import RANDOM_VGG


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


@pytest.mark.parametrize("command", ["fig5", "fig6", "gap"])
def test_the_figure_subcommands_refuse_a_missing_run_in_one_line(command, tmp_path, capsys):
    from dfc_vae.cli import main

    args = [command, "--run", str(tmp_path / "nowhere"), "--data", str(tmp_path)]
    args += {"fig5": ["--out", str(tmp_path / "f.png")], "gap": [],
             "fig6": ["--out", str(tmp_path / "f.png"), "--attributes", str(tmp_path / "a")]}[command]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"dfc-vae {command}: error:") and "does not exist" in err[0]


def test_prior_gap_prints_and_writes_its_measures_and_refuses_bad_counts(tiny_trained_run, synth_root, cache_dir,
                                                                        tmp_path, capsys):
    from dfc_vae.evaluation.classifier import FOLDER, train_classifier

    run = shutil.copytree(tiny_trained_run, tmp_path / "run")
    # the script uses the run's classifier; the default one needs more faces than the tiny root has
    train_classifier(synth_root, 32, cache_dir=cache_dir, epochs=1, batch_size=16, progress=False).save(run / FOLDER)
    gap = _script("prior_gap")
    args = ["--run", str(run), "--data", str(synth_root), "--cache-dir", str(cache_dir)]
    gap.main([*args, "--faces", "4", "--fit-faces", "40", "--out", str(tmp_path / "gap.json")])
    out = capsys.readouterr().out
    assert "posterior means of random faces" in out and "aggregate posterior of 40 train faces" in out
    assert len(json.loads((tmp_path / "gap.json").read_text())["sources"]) == 4
    with pytest.raises(SystemExit) as e:
        gap.main([*args, "--faces", "0", "--out", str(tmp_path / "none.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "at least 1 row" in err[0]
    assert not (tmp_path / "none.json").exists()


@pytest.mark.slow  # trains, in worker processes
def test_benchmark_prints_and_writes_every_row_at_a_tiny_size(tmp_path, capsys):
    """The benchmark's one command, shrunk (timings are not judged here: docs/benchmarks.md holds them)."""
    bench = _script("benchmark")
    out = tmp_path / "bench.md"
    assert bench.main(["--n", "160", "--baseline-images", "128", "--losses", "pvae", "--train-seconds", "0",
                       "--device", "cpu", "--work", str(tmp_path / "work"), "--out", str(out)]) == 0
    table = out.read_text()
    assert table in capsys.readouterr().out
    assert SYNTHETIC_FACES in table and RANDOM_VGG in table
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| what")]
    precisions = ["fp32"] + (["bf16"] if resolve_precision("auto", torch.device("cpu")) == "bf16" else [])
    assert [r.split(" | ")[0] for r in rows] == ["| data"] * 4 + ["| train"] * len(precisions) + ["| encode"]
    for prec, row in zip(precisions, [r for r in rows if r.startswith("| train")]):
        assert f"pvae, {prec}, batch 64" in row and f"of the {prec} matmul peak" in row
    for row in rows:  # every rate measured, none zero
        assert float(row.split(" | ")[2].replace(",", "")) > 0


def test_benchmark_times_the_studio(capsys):
    bench = _script("benchmark")
    assert bench.main(["--studio", "--device", "cpu"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| studio"))
    assert "a slider move alone" in row and float(row.split(" | ")[2]) > 0  # updates per second, measured


def test_benchmark_refuses_a_baseline_shorter_than_two_batches(capsys):
    bench = _script("benchmark")
    with pytest.raises(SystemExit) as e:
        bench.main(["--baseline-images", "64"])
    assert e.value.code == 2
    assert "--baseline-images must be at least 128" in capsys.readouterr().err


def test_benchmark_refuses_a_work_folder_that_is_a_file(tmp_path, capsys):
    bench = _script("benchmark")
    (tmp_path / "work").write_text("not a folder")
    with pytest.raises(SystemExit) as e:
        bench.main(["--work", str(tmp_path / "work")])
    assert e.value.code == 2
    assert f"--work {tmp_path / 'work'} is a file; give a folder" in capsys.readouterr().err
