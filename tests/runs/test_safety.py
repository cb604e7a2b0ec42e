"""Safe model files, atomic writes under a full disk, mismatched checkpoints, and training that diverges:
the last good checkpoint is kept."""

import errno
import io
import os
import shutil
from pathlib import Path

import pytest
import torch

from dfc_vae import DFCVAE, UserError
from dfc_vae.runs.checkpoint import load_checkpoint
from dfc_vae.cli import main
from dfc_vae.runs.config import TrainConfig
from dfc_vae.util.fileio import write_bytes
from dfc_vae.training.loop import train
from tiny import tiny_settings

TINY = tiny_settings(log_every=1)


class _RunsCode:
    """Unpickling this calls os.system: the kind of payload weights_only=True must refuse."""

    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/dfc_vae_pwned",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"format": "dfc_vae.checkpoint/1", "model": _RunsCode()}, path)
    if os.path.exists("/tmp/dfc_vae_pwned"):
        os.unlink("/tmp/dfc_vae_pwned")
    with pytest.raises(UserError, match="pickled Python objects"):
        load_checkpoint(path)
    assert not os.path.exists("/tmp/dfc_vae_pwned")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "config.json").write_text("{}")
    os.replace(path, tmp_path / "run" / "checkpoints" / "latest.pt")
    assert main(["sample", "--run", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refusing" in err[0]
    assert not os.path.exists("/tmp/dfc_vae_pwned")


def test_export_writes_safetensors_that_load_back(tiny_trained_run, tmp_path, capsys):
    # a copy of the shared run as training left it: other tests add vectors, a classifier and figures to it
    run = tmp_path / "run"
    shutil.copytree(tiny_trained_run, run, ignore=shutil.ignore_patterns("*.safetensors", "classifier", "figures"))
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "exported")]) == 0
    assert sorted(p.name for p in (tmp_path / "exported").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    model = DFCVAE.from_pretrained(tmp_path / "exported")
    state = load_checkpoint(run / "checkpoints" / "latest.pt")["model"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_a_full_disk_leaves_the_old_file_intact(tmp_path, monkeypatch):
    target = tmp_path / "latest.pt"
    target.write_bytes(b"the good checkpoint")

    def full(fd):  # delayed allocation: a full disk shows up when the data is forced out
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(UserError, match="No space left"):
        write_bytes(target, b"x" * 100_000)
    monkeypatch.undo()
    assert target.read_bytes() == b"the good checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]  # no temporary file left behind


@pytest.mark.parametrize("key, value", [("latent_dim", 10**12), ("base_channels", 10**6), ("lr", float("nan")),
                                        ("image_size", 48)])
def test_a_checkpoints_settings_are_checked_before_anything_is_built(tiny_trained_run, tmp_path, key, value, capsys):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(tiny_trained_run, copy)
    ckpt = load_checkpoint(copy / "checkpoints" / "latest.pt")
    ckpt["config"][key] = value
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    (copy / "checkpoints" / "latest.pt").write_bytes(buf.getvalue())
    assert main(["sample", "--run", str(copy), "--out", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a setting dfc_vae refuses" in err[0] and key in err[0]
    assert not (tmp_path / "s.png").exists()


def test_a_checkpoint_that_does_not_fit_its_config_is_refused(tiny_trained_run, tmp_path):
    import shutil

    from dfc_vae.runs.run import load_run

    copy = tmp_path / "run"
    shutil.copytree(tiny_trained_run, copy)
    ckpt = load_checkpoint(copy / "checkpoints" / "latest.pt")
    ckpt["config"]["latent_dim"] = 64
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    (copy / "checkpoints" / "latest.pt").write_bytes(buf.getvalue())
    with pytest.raises(UserError, match="does not fit"):
        load_run(copy)
    (copy / "checkpoints" / "latest.pt").write_bytes(buf.getvalue()[:1000])
    with pytest.raises(UserError, match="truncated"):
        load_run(copy)


def _poison_batches(monkeypatch, bad_calls):
    """Make the reconstruction term NaN on the given (1-based) training-loss calls."""
    from dfc_vae.model.losses import DFCLoss

    original = DFCLoss.forward
    calls = {"n": 0}

    def forward(self, x, recon, mu, logvar):
        out = original(self, x, recon, mu, logvar)
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] in bad_calls:
                out = {**out, "loss": out["loss"] * float("nan")}
        return out

    monkeypatch.setattr(DFCLoss, "forward", forward)


def _stops_and_keeps_the_checkpoint_of_step(cfg, error, message, step):
    """Training `cfg` stops with `error` matching `message`, saying the last checkpoint is intact: that of `step`,
    with finite weights."""
    with pytest.raises(error, match=message) as e:
        train(cfg, progress=False)
    assert "intact" in str(e.value)
    ckpt = load_checkpoint(Path(cfg.out) / "checkpoints" / "latest.pt")
    assert ckpt["step"] == step
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


@pytest.mark.slow  # trains
def test_a_nan_loss_stops_training_naming_the_step_and_keeps_the_last_good_checkpoint(synth_root, tmp_path, monkeypatch):
    _poison_batches(monkeypatch, {4})
    cfg = TrainConfig(data=str(synth_root), out=str(tmp_path / "run"), epochs=2, checkpoint_every=1,
                      cache_dir=str(tmp_path / "c"), **TINY)
    _stops_and_keeps_the_checkpoint_of_step(cfg, UserError, "step 4", 3)


@pytest.mark.slow  # trains
def test_nan_weights_never_overwrite_the_last_good_checkpoint(synth_root, tmp_path, monkeypatch):
    """On CUDA the loss is read only at log steps; a save must still refuse non-finite weights."""
    from dfc_vae.training.step import TrainingDiverged

    cfg = TrainConfig(data=str(synth_root), out=str(tmp_path / "run"), epochs=1, cache_dir=str(tmp_path / "c"),
                      **{**TINY, "checkpoint_every": 1, "log_every": 100})
    real_step = torch.optim.Adam.step
    count = {"n": 0}

    def step(self, *a, **kw):  # the weights go NaN at the 3rd step, the loss of step 3 was finite
        out = real_step(self, *a, **kw)
        count["n"] += 1
        if count["n"] == 3:
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("nan"))
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    _stops_and_keeps_the_checkpoint_of_step(cfg, TrainingDiverged, "the weights became NaN/Inf at step 3", 2)


@pytest.mark.slow  # trains
def test_skip_bad_batches_skips_them_and_finishes(synth_root, tmp_path, monkeypatch):
    _poison_batches(monkeypatch, {2, 5})
    cfg = TrainConfig(data=str(synth_root), out=str(tmp_path / "run"), epochs=2, skip_bad_batches=2,
                      cache_dir=str(tmp_path / "c"), **TINY)
    run = train(cfg, progress=False)
    ckpt = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert ckpt["epoch"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


@pytest.mark.slow  # trains
def test_a_skipped_nan_batch_leaves_batchnorm_statistics_finite(synth_root, tmp_path, monkeypatch):
    from dfc_vae.data.batches import BatchSource

    original = BatchSource.batches

    def batches(self, epoch, start=0):
        for i, x in enumerate(original(self, epoch, start)):
            yield x * float("nan") if (epoch, i) == (0, 1) else x  # NaN pixels: BatchNorm sees them

    monkeypatch.setattr(BatchSource, "batches", batches)
    cfg = TrainConfig(data=str(synth_root), out=str(tmp_path / "run"), epochs=1, skip_bad_batches=1,
                      cache_dir=str(tmp_path / "c"), **TINY)
    run = train(cfg, progress=False)
    ckpt = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert all(torch.isfinite(v).all() for k, v in ckpt["model"].items() if "running" in k)
