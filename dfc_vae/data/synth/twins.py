"""Counterfactual twins: a face of a seed's dataset redrawn with one attribute flipped, and nothing else.

Every random number of a face is drawn up front in a fixed order (params.py), so the face's generator state after
its labels, drawn again with one label changed, gives the same face with only what that label draws changed: the
ground-truth edit. `render_twin(seed, k, attribute, value)` draws it, with the twin's true labels and the region the
attribute draws (`attribute_region`: the pixels of the face parts the attribute changes, in the face or in its twin).

A flip changes the attribute and only what the dataset's rules tie to it (labels.py):
* the six independent attributes, `Wearing_Lipstick` (women only), `Mustache` (men only; a beard stays as it was)
  flip alone;
* `No_Beard` (men only): 1 -> -1 adds a beard, -1 -> 1 shaves the beard and the mustache;
* `Male`: a man becomes a woman without facial hair or lipstick, a woman a man without facial hair;
* a hair colour: on -> off leaves the face with red/auburn hair (no colour drawn), off -> on replaces the colour.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
from PIL import Image

from dfc_vae.data.celeba import ATTRIBUTE_NAMES
from dfc_vae.data.synth.dataset import face_rng
from dfc_vae.data.synth.face import PART_NAMES, render_params, visible_mask
from dfc_vae.data.synth.labels import HAIR_COLOURS, VISIBLE_ATTRIBUTES, sample_attributes
from dfc_vae.data.synth.params import FaceParams, face_params
from dfc_vae.util.errors import UserError

TWIN_ATTRIBUTES: tuple[str, ...] = VISIBLE_ATTRIBUTES  # every drawn attribute has twins (where defined: labels.py)
_MOUTH = ("beard", "mustache", "lips")  # a beard's inner edge and a mustache follow the lips' outline
_FACIAL_HAIR = ("beard", "mustache")
_MEN_ONLY = ("Mustache", "No_Beard")  # labels.py draws them for men only, and lipstick for women only
# The parts each attribute's flip may change (face.PART_NAMES); its region is where they are drawn, in either face.
REGION_PARTS: dict[str, tuple[str, ...]] = {
    "Smiling": ("cheeks", "smile_folds", *_MOUTH),
    "Mouth_Slightly_Open": _MOUTH,
    "Eyeglasses": ("lenses", "frames"),
    "Bangs": ("bangs",),
    "Wearing_Hat": ("hat",),
    # the skin, and what is coloured from it: lid lines, nose, folds, natural lips, facial hair kept darker than it
    "Pale_Skin": ("neck_ears_face", "cheeks", "eyes", "nose", "smile_folds", *_MOUTH),
    "Male": PART_NAMES,  # head shape, hair length, ears, brows, facial hair: the whole figure
    **{h: ("back_hair", "front_hair", "bangs", "brows", *_FACIAL_HAIR) for h in HAIR_COLOURS},
    "Mustache": ("mustache",),
    "No_Beard": _FACIAL_HAIR,
    "Wearing_Lipstick": _MOUTH,
}
DIRECTIONS = {1: "+", -1: "-"}  # the twin's value of the attribute -> the edit's direction


class Twin(NamedTuple):
    attribute: str
    image: Image.Image  # 178x218 RGB, as the dataset's face would be drawn with the twin's labels
    labels: dict[str, int]  # the twin's 40 true labels, -1/1
    face_labels: dict[str, int]  # the face's own
    region: np.ndarray  # (218, 178) bool: where the attribute is drawn, in the face or in the twin

    @property
    def direction(self) -> str:
        """'+' (the twin has the attribute, the face not), '-' (the reverse) or '=' (the face itself)."""
        value = self.labels[self.attribute]
        return "=" if value == self.face_labels[self.attribute] else DIRECTIONS[value]


def _check_attribute(attribute: str) -> None:
    if attribute not in TWIN_ATTRIBUTES:
        raise UserError(f"no twins for {attribute!r}: twins flip a drawn attribute; choose one of "
                        + ", ".join(TWIN_ATTRIBUTES))


def twin_labels(labels: dict[str, int], attribute: str) -> dict[str, int] | None:
    """The labels of `labels`' twin with `attribute` flipped (the module doc's rules), or None where the dataset
    defines no flip (a mustache, a beard on a woman; lipstick on a man)."""
    _check_attribute(attribute)
    male, on = labels["Male"] > 0, labels[attribute] > 0
    if (attribute in _MEN_ONLY and not male) or (attribute == "Wearing_Lipstick" and male):
        return None
    out = dict(labels)
    out[attribute] = -1 if on else 1
    if attribute == "Male":  # the twin has none of the other sex's own attributes
        out.update(Mustache=-1, No_Beard=1, Wearing_Lipstick=-1)
    elif attribute in HAIR_COLOURS:  # exclusive: the new colour replaces the old
        out.update({h: -1 for h in HAIR_COLOURS if h != attribute})
    elif attribute == "No_Beard" and not on:  # shaved: the mustache goes too
        out["Mustache"] = -1
    return out


def _with_labels(params: FaceParams, labels: dict[str, int]) -> dict[str, int]:
    """`labels` with No_Beard saying what is drawn (a mustache's face may or may not have a beard as well)."""
    return {**labels, "No_Beard": -1 if params.beard or params.mustache else 1}


def twin_params(seed: int, k: int, attribute: str, value: int | None = None):
    """(face labels, face params, twin labels, twin params) of image k of seed `seed`'s dataset; the twin has
    `attribute` = `value` (default: flipped; the face's own value: the face itself). None for the twin where the
    flip is not defined (`twin_labels`)."""
    _check_attribute(attribute)
    rng = face_rng(seed, k)
    labels = sample_attributes(rng)
    state = rng.bit_generator.state
    face = face_params(labels, rng)
    if value is not None and int(value) not in (-1, 1):
        raise UserError(f"the twin's value of {attribute} is {value}; give 1 (with it) or -1 (without)")
    if value is not None and int(value) == labels[attribute]:
        return labels, face, dict(labels), face
    flipped = twin_labels(labels, attribute)
    if flipped is None:
        return labels, face, None, None
    rng.bit_generator.state = state  # the same random numbers, other labels
    twin = face_params(flipped, rng)
    if attribute == "Mustache":  # the beard is kept as drawn (the label alone would toss its coin again)
        twin = dataclasses.replace(twin, beard=face.beard)
    return labels, face, _with_labels(twin, flipped), twin


def attribute_region(face: FaceParams, twin: FaceParams, attribute: str) -> np.ndarray:
    """(218, 178) bool: where the parts that `attribute` changes (REGION_PARTS) show, in the face or in its twin;
    every other part is drawn alike in both, so a pixel outside this region is the same in both."""
    _check_attribute(attribute)
    parts = REGION_PARTS[attribute]
    return visible_mask(face, parts) | visible_mask(twin, parts)


def render_twin(seed: int, k: int, attribute: str, value: int | None = None) -> Twin:
    """Image k (1-based) of the synthetic dataset of `seed`, drawn with `attribute` = `value` (1 or -1; default:
    flipped) and everything else as drawn; with the face's own value, the face itself, pixel for pixel.
    A UserError where the dataset defines no such flip (`twin_labels`)."""
    labels, face, twin_lab, twin = twin_params(seed, k, attribute, value)
    if twin is None:
        raise UserError(f"face {k} has no {attribute} twin: "
                        + ("facial hair is drawn on men only" if attribute in _MEN_ONLY else "lipstick is drawn on women only"))
    return Twin(attribute, render_params(twin).image, twin_lab, _with_labels(face, labels), attribute_region(face, twin, attribute))


def label_row(labels: dict[str, int]) -> list[int]:
    """40 values -1/1 in the official order."""
    return [labels[a] for a in ATTRIBUTE_NAMES]
