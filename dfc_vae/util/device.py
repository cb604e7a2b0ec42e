"""Where and in what arithmetic the model runs: one home for training and inference alike."""

from __future__ import annotations

from contextlib import nullcontext

import torch

from dfc_vae.util.choices import DEVICES
from dfc_vae.util.errors import UserError


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when PyTorch sees a GPU, else the CPU; 'cuda' without a GPU is refused."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)  # also 'cuda:1'
    except RuntimeError:
        raise UserError(f"--device {name!r} is not valid; choose one of {', '.join(DEVICES)}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name} was asked for but PyTorch sees no CUDA GPU; use --device cpu or auto")
    return device


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 natively: CUDA GPUs from Ampere on (older ones only emulate it,
    slower than fp32), CPUs with AVX512-BF16 or AMX (oneDNN's bf16 convolutions run ~2x the fp32 ones)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    try:
        return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> 'bf16' where the hardware computes in bf16 natively, else 'fp32'."""
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"


def autocast_for(device: torch.device, precision: str):
    """bf16 autocast (convolutions and matmuls in bf16, fp32 master weights) or plain fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()


def autotune_convolutions(device: torch.device, deterministic: bool) -> None:
    """On CUDA, let cuDNN time its convolution algorithms once per shape and keep the fastest (a
    training run's shapes never change, so the timing is paid once). A --deterministic run keeps
    cuDNN's fixed choice: the autotuner's pick can differ between runs, and with it the numbers.
    The CPU is left alone (the setting means nothing there)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
