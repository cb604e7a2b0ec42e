"""dfc_vae: Deep Feature Consistent Variational Autoencoder (Hou, Shen, Sun, Qiu; WACV 2017).

The public API (README.md shows it in use): the model and its loss, loading a trained run, reading
faces, attribute vectors, latent arithmetic and image grids. The names below the model's are
imported on first use, so `import dfc_vae` loads no more than the model needs.
"""

__version__ = "0.1.0"

from .errors import UserError  # noqa: E402
from .model import DFCVAE, ModelConfig  # noqa: E402
from .losses import DFCLoss, kl_divergence, active_units  # noqa: E402
from .config import TrainConfig  # noqa: E402

# name -> the module (in this package) that defines it
_LAZY = {
    "load_run": "run", "LoadedRun": "run", "sample_grid": "run", "reconstruct_grid": "run", "export_run": "run",
    "open_faces": "faces", "FaceSet": "faces",
    "read_photo": "edit", "edit_faces": "edit",
    "AttributeVectors": "attributes", "compute_attribute_vectors": "attributes",
    "load_attribute_vectors": "attributes",
    "add_attributes": "latent", "interpolate": "latent", "lerp": "latent", "slerp": "latent", "walk": "latent",
    "to_tensor": "data",
    "to_uint8": "images", "grid": "images", "save_png": "images",
}

__all__ = ["DFCVAE", "ModelConfig", "DFCLoss", "TrainConfig", "UserError", "kl_divergence", "active_units",
           *_LAZY, "__version__"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
