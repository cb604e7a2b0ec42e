"""The device's arithmetic and settings (dfc_vae.util.device), on a CPU and, with CUDA monkeypatched, as a GPU
has them: --precision auto is bf16 only where the hardware computes it natively, and cuDNN's autotuner follows
--deterministic on CUDA and leaves the CPU alone."""

from __future__ import annotations

import pytest
import torch

from dfc_vae.util.device import autotune_convolutions, resolve_precision


def test_precision_auto_is_bf16_where_the_cpu_computes_it_natively():
    cpu = torch.device("cpu")
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert resolve_precision("auto", cpu) == ("bf16" if native else "fp32")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"


def test_precision_auto_is_bf16_only_on_gpus_that_compute_it_natively(monkeypatch):
    asked = []

    def bf16_supported(including_emulation=True):
        asked.append(including_emulation)
        return including_emulation  # a pre-Ampere GPU: bf16 emulated only

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", bf16_supported)
    assert resolve_precision("auto", torch.device("cuda")) == "fp32" and asked == [False]
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)  # Ampere and later
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("fp32", torch.device("cuda")) == "fp32"


@pytest.mark.parametrize("deterministic", [False, True])
def test_cudnn_autotunes_on_cuda_unless_deterministic_and_the_cpu_is_left_alone(monkeypatch, deterministic):
    before = torch.backends.cudnn.benchmark
    autotune_convolutions(torch.device("cpu"), not before)
    assert torch.backends.cudnn.benchmark is before
    try:
        autotune_convolutions(torch.device("cuda", 0), deterministic)
        assert torch.backends.cudnn.benchmark is (not deterministic)
    finally:
        torch.backends.cudnn.benchmark = before


@pytest.mark.slow  # trains a model
def test_training_sets_the_autotuner_for_the_device_it_trains_on(synth_root, tmp_path, monkeypatch):
    from tiny import tiny_config

    from dfc_vae.training import loop

    seen = []
    monkeypatch.setattr(loop, "autotune_convolutions", lambda device, deterministic: seen.append((device, deterministic)))
    loop.train(tiny_config(data=str(synth_root), out=str(tmp_path / "run"), cache_dir=str(tmp_path / "c"), epochs=1,
                           max_steps=1, deterministic=True), progress=False)
    assert seen == [(torch.device("cpu"), True)]
