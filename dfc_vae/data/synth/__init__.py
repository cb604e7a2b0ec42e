"""Synthetic faces in CelebA's exact on-disk format: an offline stand-in for CelebA.

CelebA cannot be downloaded everywhere (tests, CI, an offline demo), so this package draws simple
cartoon faces with PIL and writes them, with all five annotation files, the way CelebA ships them.
It owns everything about those faces, one concern per module:

* labels: `sample_attributes(rng)` draws one face's 40 labels at CelebA's rates; which
  attributes are drawn (VISIBLE_ATTRIBUTES) and which are labels only (LABEL_ONLY).
* params: `face_params(labels, rng)` draws everything random about a face up front, in a fixed
  order, into a `FaceParams` record; colours holds the palettes it draws from.
* draw and face: `render_face(labels, rng)` draws a 178x218 aligned face part by part, back to
  front; `render_face_annotated` also returns its landmarks and bounding box (`RenderedFace`).
* dataset: `render_celeba(out_dir, n, seed, layout)` writes a whole dataset (official,
  torchvision or Kaggle layout, or a plain folder of JPEGs with a labels.csv), in parallel,
  deterministically per seed, with its marker file; `partition(n)` is its train/valid/test split.
* sheet: `contact_sheet(path)` draws the labelled grid in assets/synthetic_faces.png.
* twins and twinset: `render_twin(seed, k, attribute, value)` draws a face of a seed's dataset with one attribute
  flipped and nothing else (the ground truth of an edit), with the region the attribute is drawn in;
  `twinset.render_twins(root)` writes the twins of a dataset's test faces beside it, `twinset.open_twins` reads them.

Only 14 attributes are drawn (VISIBLE_ATTRIBUTES). The other 26 are labels only: drawn at
CelebA's rates, independently of everything, with no effect on the pixels, so anything trained
on them must stay at chance (an honesty check for classifiers and attribute vectors).

Image k (1-based, file 00000k.jpg) is seeded with numpy's SeedSequence([seed, k]), so a dataset
is the same whatever the number of worker processes. All random numbers a face needs are drawn
up front in a fixed order, whatever its labels: rendering the same rng state with one label
flipped changes only the pixels that label controls.
"""

from dfc_vae.data.synth import dataset as _dataset
from dfc_vae.data.synth.dataset import (FORMAT_VERSION, JPEG_QUALITY, LAYOUTS, MARKER_NAME, PARTIAL_NAME, partition,
                                        render_celeba)
from dfc_vae.data.synth.face import RenderedFace, render_face, render_face_annotated
from dfc_vae.data.synth.labels import INDEPENDENT_VISIBLE, LABEL_ONLY, VISIBLE_ATTRIBUTES, sample_attributes
from dfc_vae.data.synth.params import FaceParams, face_params
from dfc_vae.data.synth.sheet import contact_sheet
from dfc_vae.data.synth.twins import TWIN_ATTRIBUTES, Twin, render_twin

_face_rng = _dataset.face_rng  # the generator of image k of a seed's dataset, for rebuilding its faces

__all__ = [
    "VISIBLE_ATTRIBUTES", "INDEPENDENT_VISIBLE", "LABEL_ONLY", "LAYOUTS", "MARKER_NAME", "PARTIAL_NAME",
    "FORMAT_VERSION", "JPEG_QUALITY", "RenderedFace", "FaceParams", "face_params", "sample_attributes",
    "render_face", "render_face_annotated", "render_celeba", "partition", "contact_sheet",
    "TWIN_ATTRIBUTES", "Twin", "render_twin",
]
