"""The provenance lines: every output made from rendered faces or with random VGG weights says so, in the
sentences of the data (data.faces.SYNTHETIC_FACES) and of the model (model.losses.RANDOM_VGG); picture captions,
reports and the terminal take them from here."""

from __future__ import annotations

from dfc_vae.data.faces import SYNTHETIC_FACES
from dfc_vae.model.losses import RANDOM_VGG


def provenance(synthetic: bool, vgg_weights: str) -> list[str]:
    """Caption lines that say how a picture was made, when it was not real CelebA + ImageNet VGG."""
    lines = []
    if synthetic:
        lines.append(SYNTHETIC_FACES)
    if vgg_weights.startswith("random"):
        lines.append(RANDOM_VGG)
    return lines
