"""The one tiny training configuration the tests share: 32x32 faces, a small latent, batch 16, the
pixel loss with random VGG weights, on the CPU. Each test states only what it changes."""

from __future__ import annotations

TINY = dict(loss="pvae", vgg_weights="random", image_size=32, latent_dim=8, batch_size=16, device="cpu")


def tiny_settings(**changes) -> dict:
    """TINY with `changes` (keyword arguments of TrainConfig)."""
    return {**TINY, **changes}


def tiny_config(**changes):
    """A TrainConfig of TINY with `changes`."""
    from dfc_vae.runs.config import TrainConfig

    return TrainConfig(**tiny_settings(**changes))


def untrained_run(run_dir, cfg, faces, step: int = 7, **config_meta):
    """A run directory as `dfc-vae train` leaves it (config.json, checkpoints/latest.pt) holding an untrained model
    of `cfg` (seed 0) with random VGG weights on `faces` (a FaceSet) at `step`: for tests to which training adds
    nothing. `config_meta`: what config.json's meta holds beyond the checkpoint's. Returns `run_dir`."""
    import json

    import torch

    from dfc_vae import DFCVAE, __version__
    from dfc_vae.runs.checkpoint import save_checkpoint
    from dfc_vae.util.fileio import write_json

    torch.manual_seed(0)
    model = DFCVAE(cfg.model_config()).eval()
    meta = {**faces.provenance(), "vgg_weights": "random", "train_images": int((faces.split == 0).sum()),
            "device": "cpu", "precision": "fp32", "dfc_vae": __version__, "torch": str(torch.__version__)}
    meta = json.loads(json.dumps(meta, default=int))  # plain types, as weights_only checkpoints need
    save_checkpoint(run_dir, {"config": cfg.to_dict(), "model": model.state_dict(), "step": step, "meta": meta})
    write_json(run_dir / "config.json", {"config": cfg.to_dict(), "meta": {**meta, **config_meta}})
    return run_dir


def untrained_loaded_run(cfg, path, meta: dict | None = None, step: int = 0):
    """A LoadedRun in memory (no run directory) holding an untrained model of `cfg` (seed 0, eval mode) on the CPU,
    at `path` with provenance `meta`: for tests of what is done with a run's model, to which training adds nothing."""
    from pathlib import Path

    import torch

    from dfc_vae import DFCVAE
    from dfc_vae.runs.run import LoadedRun

    torch.manual_seed(0)
    return LoadedRun(Path(path), DFCVAE(cfg.model_config()).eval(), cfg, dict(meta or {}), step, torch.device("cpu"))
