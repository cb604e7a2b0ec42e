"""What a measurement ran on, in one line: the CPU (model, AMX, native bf16), torch's threads, the cores,
and on CUDA the GPU with its driver and CUDA versions. The benchmark, the GPU check and the demo's
report describe their machine with describe_machine."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path

import torch

from dfc_vae.util.device import native_bf16

CPUINFO = Path("/proc/cpuinfo")  # Linux; elsewhere the platform module's answer stands in
NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")  # the loaded kernel module's version line


def _cpuinfo() -> str:
    try:
        return CPUINFO.read_text(errors="replace")
    except OSError:
        return ""


def _first_field(text: str, *names: str) -> str | None:
    """The value of the first `name : value` line of /proc/cpuinfo with one of `names`."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in names:
            return value.strip()
    return None


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what the platform module says."""
    return (_first_field(_cpuinfo(), "model name", "Model name", "Hardware")
            or platform.processor() or platform.machine() or "unknown CPU")


def cpu_flags() -> set[str]:
    """The CPU's feature flags (x86 `flags`, Arm `Features`), empty where /proc/cpuinfo is missing."""
    return set((_first_field(_cpuinfo(), "flags", "Features") or "").split())


def cpu_bf16() -> tuple[bool, bool]:
    """(AMX, native bf16) of the CPU: AMX tiles with bf16 (amx_bf16), and bf16 arithmetic through AMX
    or AVX512-BF16 (avx512_bf16); where neither is there, bf16 is emulated and slower than fp32."""
    flags = cpu_flags()
    amx = "amx_bf16" in flags
    return amx, amx or "avx512_bf16" in flags


def cuda_driver() -> str | None:
    """The NVIDIA driver's version (e.g. 550.54.15), from the kernel module or nvidia-smi; None if neither answers."""
    try:
        found = re.search(r"Kernel Module\s+(?:for \S+\s+)?(\d+(?:\.\d+)+)", NVIDIA_DRIVER.read_text())
        if found:
            return found.group(1)
    except OSError:
        pass
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    version = done.stdout.strip().splitlines()[0].strip() if done.returncode == 0 and done.stdout.strip() else ""
    return version or None


def describe_cpu() -> str:
    """'CPU AMD EPYC 7B13 (no AMX, no native bf16), 2 cores, torch threads 2'."""
    amx, bf16 = cpu_bf16()
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return (f"CPU {cpu_model()} ({'AMX' if amx else 'no AMX'}, {'native bf16' if bf16 else 'no native bf16'}), "
            f"{cores} cores" + (f" ({usable} usable by this process)" if usable != cores else "")
            + f", torch threads {torch.get_num_threads()}")


def describe_gpu(device: torch.device) -> str:
    """'GPU NVIDIA H200 (compute capability 9.0, 140 GiB, native bf16; 1 visible), driver 550.54.15, CUDA 12.4'."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    p = torch.cuda.get_device_properties(index)
    bf16 = "native bf16" if native_bf16(torch.device("cuda", index)) else "bf16 emulated"
    return (f"GPU {p.name} (compute capability {p.major}.{p.minor}, {p.total_memory / 2**30:.0f} GiB, {bf16}; "
            f"{torch.cuda.device_count()} visible), driver {cuda_driver() or 'unknown'}, CUDA {torch.version.cuda}")


def describe_machine(device: torch.device | str | None = None) -> str:
    """One line naming the machine a measurement ran on: on a CUDA `device` its GPU, then the host CPU;
    on a CPU the CPU alone. None: CUDA when PyTorch sees a GPU, else the CPU (as --device auto)."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        return f"{describe_gpu(device)}; host {describe_cpu()}"
    return describe_cpu()
