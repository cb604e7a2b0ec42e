"""dfc_vae: Deep Feature Consistent Variational Autoencoder (Hou, Shen, Sun, Qiu; WACV 2017).

The public API (README.md shows it in use): the model and its loss, training (`train`), synthetic faces,
loading a trained run, reading faces, attribute vectors, latent arithmetic, image grids, and measures
(reconstruction scores, log p(x) of a pixel-loss run, the decoded manifold). The names below the model's are
imported on first use, so `import dfc_vae` loads no more than the model needs.
"""

import importlib

__version__ = "0.1.0"

from dfc_vae.util.errors import UserError  # noqa: E402
from dfc_vae.model.network import DFCVAE, ModelConfig  # noqa: E402
from dfc_vae.model.losses import DFCLoss, kl_divergence, active_units  # noqa: E402
from dfc_vae.runs.config import TrainConfig  # noqa: E402

# name -> the module (under dfc_vae) that defines it
_LAZY = {
    "load_run": "runs.run", "LoadedRun": "runs.run", "sample_grid": "runs.run", "reconstruct_grid": "runs.run", "export_run": "sharing.export", "load_model": "sharing.export",
    "open_faces": "data.sources", "FaceSet": "data.faces",
    "read_photo": "editing.edit", "edit_faces": "editing.edit",
    "AttributeVectors": "editing.attributes", "compute_attribute_vectors": "editing.attributes",
    "load_attribute_vectors": "editing.attributes",
    "add_attributes": "editing.latent", "interpolate": "editing.latent", "lerp": "editing.latent", "slerp": "editing.latent", "walk": "editing.latent",
    "to_tensor": "util.images",
    "to_uint8": "util.images", "grid": "util.images", "save_png": "util.images", "provenance": "runs.provenance",
    "train": "training.loop", "render_celeba": "data.synth", "FaceSplit": "runs.split",
    "measure_reconstruction": "evaluation.evaluate",
    "log_likelihood": "evaluation.likelihood", "LogLikelihood": "evaluation.likelihood",
    "log_px_given_z": "evaluation.likelihood", "decoder_sigma": "evaluation.likelihood",
    "manifold_grid": "evaluation.manifold", "save_manifold": "evaluation.manifold",
}

__all__ = ["DFCVAE", "ModelConfig", "DFCLoss", "TrainConfig", "UserError", "kl_divergence", "active_units",
           *_LAZY, "__version__"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
