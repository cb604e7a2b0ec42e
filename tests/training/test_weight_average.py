"""--ema-decay: the run's model is the moving average of the weights, and a resumed run continues
both the trained weights and their average exactly."""

import torch

from dfc_vae.runs.checkpoint import load_checkpoint
from dfc_vae.runs.config import TrainConfig
from dfc_vae.runs.run import load_run
from dfc_vae.training.loop import train
from tiny import tiny_settings
import pytest

TINY = tiny_settings(latent_dim=16, base_channels=8, workers=1)


@pytest.mark.slow  # trains
def test_the_run_model_is_the_weight_average_and_resume_continues_both_exactly(synth_root, cache_dir, tmp_path):
    cfg = dict(data=str(synth_root), cache_dir=str(cache_dir), ema_decay=0.9, **TINY)
    straight = train(TrainConfig(out=str(tmp_path / "a"), epochs=2, **cfg), progress=False)
    train(TrainConfig(out=str(tmp_path / "b"), epochs=1, **cfg), progress=False)
    resumed = train(TrainConfig(out=str(tmp_path / "b"), epochs=2, **cfg), resume=True, progress=False)
    a, b = (load_checkpoint(r / "checkpoints" / "latest.pt") for r in (straight, resumed))
    for key in ("model", "trained_model"):
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), (key, k)
    # the average lags the trained weights: it is not a copy of them
    assert any(not torch.equal(a["model"][k], a["trained_model"][k]) for k in a["model"] if k.endswith("weight"))
    loaded = load_run(straight).model.state_dict()
    assert all(torch.equal(loaded[k], a["model"][k]) for k in loaded)


@pytest.mark.slow  # trains
def test_without_averaging_the_checkpoint_holds_the_trained_weights_only(synth_root, cache_dir, tmp_path):
    run = train(TrainConfig(data=str(synth_root), out=str(tmp_path / "run"), epochs=1, max_steps=2,
                            cache_dir=str(cache_dir), **TINY), progress=False)
    assert "trained_model" not in load_checkpoint(run / "checkpoints" / "latest.pt")
