"""Training curves: every run directory gets curves.png; `dfc-vae curves` draws several runs on
one figure; --tensorboard writes event files (or says how to install TensorBoard)."""

import pytest
from PIL import Image

from dfc_vae.runs.checkpoint import load_checkpoint
from dfc_vae.cli import main
from dfc_vae.runs.config import TrainConfig
from dfc_vae.training.curves import run_curves
from dfc_vae.training.loop import train
from tiny import tiny_settings

TINY = tiny_settings(log_every=1, checkpoint_every=0)


@pytest.fixture(scope="module")
def two_runs(synth_root, tmp_path_factory):
    base = tmp_path_factory.mktemp("curves")
    runs = [train(TrainConfig(data=str(synth_root), out=str(base / f"run_lr{lr}"), epochs=2, lr=lr,
                              cache_dir=str(base / "cache"), **TINY), progress=False) for lr in (5e-4, 2e-3)]
    return runs


def test_every_run_directory_gets_its_curves(two_runs, synth_root, tmp_path):
    for run in two_runs:
        with Image.open(run / "curves.png") as im:
            assert im.format == "PNG" and im.size[0] > 500
        train_rows, held_out = run_curves(run)
        steps = load_checkpoint(run / "checkpoints" / "latest.pt")["step"]
        assert [s for s, _ in train_rows["loss"]] == [float(i) for i in range(1, steps + 1)]  # log_every=1
        assert len(held_out["eval_loss"]) == 2  # one dot per epoch's end
    # also a run stopped inside its first epoch (no epoch's end)
    short = train(TrainConfig(data=str(synth_root), out=str(tmp_path / "short"), epochs=1, max_steps=2,
                              cache_dir=str(tmp_path / "cache"), **TINY), progress=False)
    assert (short / "curves.png").is_file()
    assert not [p for p in short.iterdir() if p.name.endswith(".tmp")]  # written atomically


def test_curves_command_compares_runs(two_runs, tmp_path, capsys):
    out = tmp_path / "compare.png"
    assert main(["curves", "--run", *map(str, two_runs), "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.format == "PNG"
    assert main(["curves", "--run", str(tmp_path), "--out", str(tmp_path / "none.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no metrics.csv" in err[0]
    assert not (tmp_path / "none.png").exists()


@pytest.mark.slow  # trains
def test_tensorboard_event_files_or_how_to_install(synth_root, tmp_path, capsys, monkeypatch):
    args = ["train", "--data", str(synth_root), "--out", str(tmp_path / "run"), "--loss", "pvae", "--image-size", "32",
            "--latent-dim", "8", "--batch-size", "16", "--vgg-weights", "random", "--cache-dir", str(tmp_path / "c"),
            "--device", "cpu", "--max-steps", "2", "--log-every", "1", "--no-progress", "--tensorboard"]
    import builtins

    real_import = builtins.__import__

    def without_tensorboard(name, *a, **kw):
        if name.startswith("torch.utils.tensorboard") or name == "tensorboard":
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *a, **kw)

    with monkeypatch.context() as m:
        m.setattr(builtins, "__import__", without_tensorboard)
        assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install" in err[0] and "tensorboard" in err[0]
    assert not (tmp_path / "run").exists()  # refused before anything was written

    pytest.importorskip("tensorboard")
    assert main(args) == 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2]
