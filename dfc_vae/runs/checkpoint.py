"""Checkpoints: everything a run needs to continue exactly where it stopped.

A checkpoint holds the model, the optimizer, the step, the epoch and the batch within it (the
epoch's data order is rebuilt from the seed), and every RNG state. Only tensors, numbers,
strings, lists and dicts go in, so `torch.load(weights_only=True)` reads it and no checkpoint can
run code when it is loaded.
"""

from __future__ import annotations

import io
import pickle
import random
from pathlib import Path

import numpy as np
import torch

from dfc_vae.util.errors import UserError
from dfc_vae.util.fileio import write_bytes

FORMAT = "dfc_vae.checkpoint/1"
LATEST = "latest.pt"  # the newest checkpoint; replaced atomically, so it is never a partial file


def rng_state(device: torch.device | None = None) -> dict:
    """Every RNG state training draws from: Python's, NumPy's, the CPU generator, and the generator
    of the CUDA device it trains on (that one alone: other GPUs are not this process's, and a
    resume may see fewer of them)."""
    np_state = np.random.get_state()
    state = {
        "python": list(random.getstate()[1]), "python_gauss": random.getstate()[2],
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)), "numpy_pos": int(np_state[2]),
        "numpy_gauss": [int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device | None = None) -> None:
    """Restore `rng_state`'s states; the saved CUDA state goes to the training `device`. The states
    are CPU ByteTensors whatever map_location the checkpoint was loaded with."""
    random.setstate((3, tuple(state["python"]), state["python_gauss"]))
    np.random.set_state(("MT19937", state["numpy"].cpu().numpy().astype(np.uint32), state["numpy_pos"],
                         state["numpy_gauss"][0], state["numpy_gauss"][1]))
    torch.set_rng_state(state["torch"].cpu())
    if device is not None and device.type == "cuda" and "cuda" in state:
        cuda = state["cuda"]
        if isinstance(cuda, (list, tuple)):  # written by an older version: the state of every visible GPU
            cuda = cuda[device.index or 0] if len(cuda) > (device.index or 0) else cuda[0]
        torch.cuda.set_rng_state(cuda.cpu(), device)


def save_checkpoint(run_dir: Path, payload: dict, epoch_name: str | None = None) -> None:
    """Write checkpoints/latest.pt (and checkpoints/EPOCH_NAME if given), each atomically."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **payload}, buf)
    data = buf.getvalue()
    if epoch_name:
        write_bytes(run_dir / "checkpoints" / epoch_name, data)
    write_bytes(run_dir / "checkpoints" / LATEST, data)


def latest_checkpoint(run_dir: Path) -> Path | None:
    path = Path(run_dir) / "checkpoints" / LATEST
    return path if path.is_file() else None


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint safely (weights_only=True): a file carrying pickled code is refused."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise UserError(f"{path} holds pickled Python objects, which could run code when loaded; refusing it. "
                        "Only load checkpoints written by dfc_vae, or convert it in a trusted environment") from e
    except (RuntimeError, OSError, EOFError) as e:
        raise UserError(f"{path} is not a readable checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                        "it may be truncated: resume from another one in checkpoints/") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path} is not a dfc_vae checkpoint; pass a run directory made by `dfc-vae train`")
    return ckpt
