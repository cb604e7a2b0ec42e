"""The synthetic CelebA-format face renderer (an offline stand-in for CelebA), as a package."""

from dfc_vae.data.synth.dataset import (FORMAT_VERSION, INDEPENDENT_VISIBLE, JPEG_QUALITY, LABEL_ONLY, LAYOUTS,
                                        MARKER_NAME, PARTIAL_NAME, VISIBLE_ATTRIBUTES, FaceParams, RenderedFace,
                                        _face_rng, contact_sheet, face_params, partition, render_celeba,
                                        render_face, render_face_annotated, sample_attributes)

__all__ = [
    "VISIBLE_ATTRIBUTES", "INDEPENDENT_VISIBLE", "LABEL_ONLY", "LAYOUTS", "MARKER_NAME", "PARTIAL_NAME",
    "FORMAT_VERSION", "JPEG_QUALITY", "RenderedFace", "FaceParams", "face_params", "sample_attributes",
    "render_face", "render_face_annotated", "render_celeba", "partition", "contact_sheet", "_face_rng",
]
