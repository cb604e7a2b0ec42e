"""Training end to end on tiny synthetic faces, the run directory, resume, and the CLI's errors."""

import csv
import json
import shutil

import pytest
import torch

from dfc_vae.runs import checkpoint
from dfc_vae.runs.checkpoint import load_checkpoint
from dfc_vae.cli import main
from dfc_vae.runs.config import TrainConfig
from dfc_vae.util.errors import UserError
from dfc_vae.training.loop import train
from dfc_vae.training.step import learning_rate
from dfc_vae.util.device import resolve_precision
from tiny import tiny_settings

TINY = tiny_settings(latent_dim=16, log_every=1, checkpoint_every=0)  # the exact-resume and precision assertions hold on a CPU


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow  # trains
def test_training_lowers_the_loss_and_writes_the_run_directory(synth_root, cache_dir, tmp_path):
    run = train(TrainConfig(data=str(synth_root), out=str(tmp_path / "run"), epochs=3,
                            cache_dir=str(cache_dir), **(TINY | {"loss": "vae123"})), progress=False)
    for name in ("config.json", "metrics.csv", "epochs.csv", "checkpoints/latest.pt", "checkpoints/epoch_001.pt",
                 "checkpoints/epoch_003.pt", "grids/epoch_003_recon.png", "grids/epoch_003_samples.png"):
        assert (run / name).is_file(), name
    rows = _rows(run / "metrics.csv")
    first, last = float(rows[0]["loss"]), float(rows[-1]["loss"])
    assert last < 0.8 * first
    assert {"step", "loss", "recon", "kl", "active_units"} <= set(rows[0])
    epochs = _rows(run / "epochs.csv")
    assert [int(r["epoch"]) for r in epochs] == [1, 2, 3]
    # the latent calibration, fitted at every epoch's end, can only lower the KL
    assert all(float(r["kl_calibrated"]) <= float(r["kl_uncalibrated"]) for r in epochs)
    ckpt = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert not torch.equal(ckpt["model"]["latent_scale"], torch.ones(16))
    assert ckpt["meta"]["vgg_weights"] == "random" and ckpt["meta"]["synthetic"] is True
    assert ckpt["meta"]["precision"] == resolve_precision("auto", torch.device("cpu"))
    assert {"model", "optimizer", "rng", "step", "epoch", "batch_in_epoch"} <= set(ckpt)


def test_learning_rate_halving_follows_the_official_codes_intent():
    assert [learning_rate(TrainConfig(lr=4e-4, lr_halving=2), e) for e in range(5)] == [4e-4, 2e-4, 2e-4, 1e-4, 1e-4]
    assert [learning_rate(TrainConfig(lr=4e-4, lr_halving=0), e) for e in range(3)] == [4e-4] * 3
    with pytest.raises(UserError, match="lr_halving"):
        TrainConfig(lr_halving=-1).validate()


def test_warm_up_then_cosine_decay_by_the_step():
    cfg = TrainConfig(lr=1e-3, warmup_steps=4, lr_schedule="cosine")
    rates = [learning_rate(cfg, 0, step, 14) for step in range(15)]
    assert rates[:4] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])  # linear up to the rate over 4 steps
    assert rates[4] == pytest.approx(1e-3) and rates[9] == pytest.approx(5e-4)  # half way through the decay
    assert rates[14] == 0 and all(a >= b for a, b in zip(rates[3:], rates[4:]))
    assert learning_rate(TrainConfig(lr=1e-3, warmup_steps=4), 3, 100, 14) == 1e-3  # constant after its warm-up
    with pytest.raises(UserError, match="lr_schedule"):
        TrainConfig(lr_schedule="linear").validate()


@pytest.mark.slow  # trains
def test_resume_inside_a_cosine_schedule_matches_the_uninterrupted_run(synth_root, cache_dir, tmp_path):
    cfg = dict(data=str(synth_root), cache_dir=str(cache_dir), epochs=2, lr_schedule="cosine", warmup_steps=3, **TINY)
    straight = train(TrainConfig(out=str(tmp_path / "a"), **cfg), progress=False)
    train(TrainConfig(out=str(tmp_path / "b"), max_steps=4, **cfg), progress=False)  # stopped inside epoch 1
    resumed = train(TrainConfig(out=str(tmp_path / "b"), **cfg), resume=True, progress=False)
    a = load_checkpoint(straight / "checkpoints" / "latest.pt")
    b = load_checkpoint(resumed / "checkpoints" / "latest.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["step"] == b["step"] and a["optimizer"]["param_groups"][0]["lr"] == b["optimizer"]["param_groups"][0]["lr"]


@pytest.mark.slow  # trains
def test_resume_continues_to_the_same_parameters_as_an_uninterrupted_run(synth_root, cache_dir, tmp_path):
    # lr_halving=2: the resumed second epoch must run at the halved rate, as the uninterrupted one did
    cfg = dict(data=str(synth_root), cache_dir=str(cache_dir), lr_halving=2, **TINY)
    straight = train(TrainConfig(out=str(tmp_path / "a"), epochs=2, **cfg), progress=False)
    first = train(TrainConfig(out=str(tmp_path / "b"), epochs=1, **cfg), progress=False)
    saved = json.loads((first / "config.json").read_text())
    del saved["config"]["calibrate_latent"]  # as a run made before that setting existed
    (first / "config.json").write_text(json.dumps(saved))
    resumed = train(TrainConfig(out=str(tmp_path / "b"), epochs=2, **cfg), resume=True, progress=False)
    a = load_checkpoint(straight / "checkpoints" / "latest.pt")["model"]
    b = load_checkpoint(resumed / "checkpoints" / "latest.pt")["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    for run in (straight, resumed):
        assert load_checkpoint(run / "checkpoints" / "latest.pt")["optimizer"]["param_groups"][0]["lr"] == 5e-4 / 2
    assert _rows(straight / "metrics.csv") != [] and len(_rows(straight / "metrics.csv")) == len(_rows(resumed / "metrics.csv"))


@pytest.mark.slow  # trains
def test_resume_loads_the_checkpoint_to_the_cpu_and_restores_rng_states_from_any_device(synth_root, cache_dir, tmp_path,
                                                                                       monkeypatch):
    cfg = dict(data=str(synth_root), out=str(tmp_path / "run"), epochs=1, cache_dir=str(cache_dir), **TINY)
    train(TrainConfig(max_steps=2, **cfg), progress=False)
    import dfc_vae.training.rundir as rundir

    seen = []
    original = rundir.load_checkpoint
    monkeypatch.setattr(rundir, "load_checkpoint", lambda path, map_location="cpu": seen.append(map_location)
                        or original(path, map_location))
    train(TrainConfig(max_steps=3, **cfg), resume=True, progress=False)
    assert seen == ["cpu"]  # load_state_dict places model and optimizer state on the training device
    # set_rng_state takes states whatever device they were mapped to (here: views of the CPU ones)
    state = checkpoint.rng_state()
    checkpoint.set_rng_state({**state, "torch": state["torch"].clone()})
    assert torch.equal(torch.get_rng_state(), state["torch"])


def test_only_the_training_devices_cuda_rng_state_is_saved_and_restored(monkeypatch):
    calls = []
    fake_state = torch.arange(16, dtype=torch.uint8)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": calls.append(("get", device)) or fake_state)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: pytest.fail("saved the state of every GPU"))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device="cuda": calls.append(("set", device, s)))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda s: pytest.fail("restored the state of every GPU"))
    on_cpu = checkpoint.rng_state(torch.device("cpu"))
    assert "cuda" not in on_cpu
    gpu1 = torch.device("cuda", 1)
    state = checkpoint.rng_state(gpu1)
    assert torch.equal(state["cuda"], fake_state) and calls == [("get", gpu1)]
    calls.clear()
    checkpoint.set_rng_state(state, torch.device("cuda", 0))  # resumed on another (or the only) GPU
    assert calls[0][:2] == ("set", torch.device("cuda", 0)) and torch.equal(calls[0][2], fake_state)
    calls.clear()
    checkpoint.set_rng_state({**state, "cuda": [fake_state, fake_state + 1]}, torch.device("cuda", 1))  # older files
    assert torch.equal(calls[0][2], fake_state + 1)
    calls.clear()
    checkpoint.set_rng_state(state, torch.device("cpu"))
    assert calls == []


def test_resuming_with_another_configuration_is_refused(tiny_trained_run, synth_root, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_trained_run, run)  # the shared run stays as trained
    # the run's own settings but for the latent size
    code = main(["train", "--data", str(synth_root), "--out", str(run), "--resume", "--latent-dim", "32",
                 "--vgg-weights", "imagenet", "--base-channels", "8", "--image-size", "32", "--batch-size", "16",
                 "--loss", "pvae"])
    assert code == 2
    assert "latent-dim" in _error_line(capsys)


def test_resume_refuses_a_change_of_reduction_and_old_runs_had_sums():
    from dfc_vae.training.rundir import merge_resume_config

    saved = TrainConfig(data="d", out="o").to_dict()
    with pytest.raises(UserError, match="reduction"):
        merge_resume_config(saved, TrainConfig(data="d", out="o", reduction="paper"))
    del saved["reduction"]  # a run from before the setting existed trained with per-image sums
    assert merge_resume_config(saved, TrainConfig(data="d", out="o")).reduction == "sum"
    with pytest.raises(UserError, match="reduction"):
        merge_resume_config(saved, TrainConfig(data="d", out="o", reduction="paper"))


@pytest.mark.slow  # trains
def test_without_calibration_the_latent_stays_raw(synth_root, cache_dir, tmp_path):
    run = train(TrainConfig(data=str(synth_root), out=str(tmp_path / "run"), epochs=1, max_steps=2,
                            cache_dir=str(cache_dir), calibrate_latent=False, **TINY), progress=False)
    model = load_checkpoint(run / "checkpoints" / "latest.pt")["model"]
    assert torch.equal(model["latent_scale"], torch.ones(16)) and torch.equal(model["latent_shift"], torch.zeros(16))


@pytest.mark.slow  # trains
def test_cli_train_sample_reconstruct(synth_root, cache_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(synth_root), "--out", str(run), "--loss", "pvae", "--epochs", "1",
                 "--image-size", "32", "--batch-size", "16", "--vgg-weights", "random", "--cache-dir", str(cache_dir),
                 "--device", "cpu", "--no-progress"]) == 0
    assert main(["sample", "--run", str(run), "--n", "9"]) == 0
    assert (run / "samples.png").is_file()
    assert main(["reconstruct", "--run", str(run), "--data", str(synth_root), "--n", "8", "--cache-dir", str(cache_dir)]) == 0
    assert (run / "reconstructions.png").is_file()
    from PIL import Image

    assert "synthetic" in Image.open(run / "samples.png").text["caption"]


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def _damaged_copy(synth_root, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(synth_root, copy)
    return copy


@pytest.mark.parametrize("case", ["missing", "not_celeba", "truncated_jpeg", "zero_byte", "not_an_image",
                                  "disagree", "unknown_loss", "bad_config"])
def test_bad_training_input_is_one_line_exit_2_and_leaves_nothing(case, synth_root, tmp_path, capsys):
    data, extra = str(synth_root), []
    if case == "missing":
        data = str(tmp_path / "nowhere")
    elif case == "not_celeba":
        (tmp_path / "photos").mkdir()
        data = str(tmp_path / "photos")
    elif case in ("truncated_jpeg", "zero_byte", "not_an_image"):
        copy = _damaged_copy(synth_root, tmp_path)
        victim = copy / "img_align_celeba" / "000007.jpg"
        raw = victim.read_bytes()
        victim.write_bytes({"truncated_jpeg": raw[: len(raw) // 3], "zero_byte": b"",
                            "not_an_image": b"hello, I am a text file\n"}[case])
        data = str(copy)
    elif case == "disagree":
        copy = _damaged_copy(synth_root, tmp_path)
        part = copy / "list_eval_partition.txt"
        part.write_text("\n".join(part.read_text().splitlines()[:-2]) + "\n")
        data = str(copy)
    elif case == "unknown_loss":
        extra = ["--loss", "vae999"]
    elif case == "bad_config":
        (tmp_path / "c.toml").write_text("epochs = 2\nlearning_rate = 0.1\n")
        extra = ["--config", str(tmp_path / "c.toml")]
    cache = tmp_path / "cache"
    code = main(["train", "--data", data, "--out", str(tmp_path / "run"), "--image-size", "32", "--batch-size", "16",
                 "--vgg-weights", "random", "--cache-dir", str(cache), "--no-progress", *extra])
    assert code == 2
    line = _error_line(capsys)
    expected = {"missing": "does not exist", "not_celeba": "does not look like CelebA", "truncated_jpeg": "000007.jpg",
                "zero_byte": "000007.jpg", "not_an_image": "000007.jpg", "disagree": "disagree",
                "unknown_loss": "invalid choice", "bad_config": "unknown setting 'learning_rate'"}[case]
    assert expected in line
    assert not (tmp_path / "run").exists()
    assert not cache.exists() or not any(p.name.endswith("px") or "partial" in p.name for p in cache.iterdir())


def test_not_a_run_directory_and_taken_run_directory(synth_root, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["sample", "--run", str(tmp_path / "empty")]) == 2
    assert "not a dfc_vae run" in _error_line(capsys)
    assert main(["sample", "--run", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in _error_line(capsys)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert main(["train", "--data", str(synth_root), "--out", str(tmp_path / "busy"), "--vgg-weights", "random"]) == 2
    assert "not a dfc_vae run" in _error_line(capsys)
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


@pytest.mark.slow  # compiles the step (~30 s)
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile on a CPU needs a C++ compiler")
def test_compiled_step_matches_the_eager_step():
    """--compile runs forward and loss as one torch.compile graph (~30 s to compile on a 2-core CPU)."""
    from dfc_vae.model.losses import DFCLoss
    from dfc_vae.model.network import DFCVAE, ModelConfig
    from dfc_vae.training.step import TrainStep, make_step_fn

    x = torch.rand(4, 32, 32, 3).permute(0, 3, 1, 2)  # channels_last, as batches come
    eps = torch.randn(4, 100)
    results = []
    for compile in (False, True):
        torch.manual_seed(0)
        model = DFCVAE(ModelConfig(image_size=32)).to(memory_format=torch.channels_last)
        loss_fn = DFCLoss("vae123", vgg_weights="random").to(memory_format=torch.channels_last)
        out, _ = make_step_fn(TrainStep(model), loss_fn, torch.device("cpu"), compile)(x, eps)
        out["loss"].backward()
        results.append((out["loss"].detach(), [p.grad for p in model.parameters()]))
    (eager_loss, eager_grads), (compiled_loss, compiled_grads) = results
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-4, atol=0)
    scale = max(float(g.abs().max()) for g in eager_grads)  # conv biases before BatchNorm have ~0 gradients
    for a, b in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4 * scale)


def test_a_bf16_step_tracks_fp32():
    from dfc_vae.model.losses import DFCLoss
    from dfc_vae.model.network import DFCVAE, ModelConfig
    from dfc_vae.training.step import TrainStep, make_step_fn

    cpu = torch.device("cpu")
    x = torch.rand(8, 32, 32, 3).permute(0, 3, 1, 2)  # channels_last, as batches come
    eps = torch.randn(8, 100)
    results = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = DFCVAE(ModelConfig(image_size=32)).to(memory_format=torch.channels_last)
        loss_fn = DFCLoss("vae123", vgg_weights="random").to(memory_format=torch.channels_last)
        out, _ = make_step_fn(TrainStep(model), loss_fn, cpu, precision=precision)(x, eps)
        out["loss"].backward()
        results[precision] = (out["loss"].detach(), torch.cat([p.grad.flatten() for p in model.parameters()]))
    (loss32, grad32), (loss16, grad16) = results["fp32"], results["bf16"]
    assert loss16.dtype == torch.float32  # the loss is summed in fp32 whatever the step's arithmetic
    torch.testing.assert_close(loss16, loss32, rtol=0.02, atol=0)
    assert torch.nn.functional.cosine_similarity(grad16, grad32, dim=0) > 0.99


@pytest.mark.parametrize("flag,value,allowed", [
    ("--lr", "nan", "a finite number > 0"), ("--lr", "0", "a finite number > 0"),
    ("--seed", "-1", "an integer from 0 to 4294967295"), ("--seed", str(2**32), "an integer from 0 to 4294967295"),
    ("--alpha", "-1", "a finite number >= 0"), ("--beta", "inf", "a finite number >= 0"),
    ("--workers", "-3", "an integer >= 0"), ("--checkpoint-every", "-1", "an integer >= 0"),
    ("--max-steps", "-5", "an integer >= 0"), ("--batch-size", "0", "an integer >= 1"),
    ("--latent-dim", "0", "an integer from 1 to 4096"), ("--beta1", "1", "a finite number >= 0 and < 1"),
])
def test_a_setting_out_of_range_is_refused_as_a_flag_and_in_toml(flag, value, allowed, synth_root, tmp_path, capsys):
    name = flag[2:].replace("-", "_")
    base = ["train", "--data", str(synth_root), "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"),
            "--no-progress"]
    assert main([*base, flag, value]) == 2
    line = _error_line(capsys)
    assert line.startswith("dfc-vae train: error:") and f"{name} = " in line and value.lstrip("-") in line
    assert allowed in line
    toml_value = {"nan": "nan", "inf": "inf"}.get(value, value)
    (tmp_path / "c.toml").write_text(f"{name} = {toml_value}\n")
    assert main([*base, "--config", str(tmp_path / "c.toml")]) == 2
    assert allowed in _error_line(capsys)
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


def test_a_toml_setting_of_the_wrong_type_is_refused(tmp_path, capsys):
    (tmp_path / "c.toml").write_text('epochs = "three"\n')
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--config", str(tmp_path / "c.toml")]) == 2
    assert "epochs = 'three'" in _error_line(capsys)


@pytest.mark.slow  # trains
def test_a_nonfinite_loss_term_is_named(synth_root, tmp_path, monkeypatch):
    from dfc_vae.model import losses

    original = losses.DFCLoss.forward

    def forward(self, x, recon, mu, logvar):
        out = original(self, x, recon, mu, logvar)
        if torch.is_grad_enabled():
            out = {**out, "kl": out["kl"] * float("inf"), "loss": out["loss"] * float("inf")}
        return out

    monkeypatch.setattr(losses.DFCLoss, "forward", forward)
    cfg = TrainConfig(data=str(synth_root), out=str(tmp_path / "run"), epochs=1, cache_dir=str(tmp_path / "c"),
                      **TINY)
    with pytest.raises(UserError, match="the KL term became NaN/Inf at step 1"):
        train(cfg, progress=False)
