"""One face's 40 labels: which attributes are drawn, the sampling at CelebA's rates, and the rules
tying them together (hair colours exclusive; facial hair and lipstick follow Male)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from dfc_vae.data.celeba import ATTRIBUTE_NAMES, CELEBA_RATES

# Attributes that change the pixels. Everything else in ATTRIBUTE_NAMES is a label only.
VISIBLE_ATTRIBUTES: tuple[str, ...] = (
    "Smiling", "Mouth_Slightly_Open", "Eyeglasses", "Male", "Black_Hair", "Blond_Hair",
    "Brown_Hair", "Gray_Hair", "Bangs", "Wearing_Hat", "Pale_Skin", "Mustache", "No_Beard",
    "Wearing_Lipstick",
)
# Drawn independently of every other attribute: attribute-vector edits along these are checked
# for leaking into other attributes, so they must not be correlated with anything.
INDEPENDENT_VISIBLE: tuple[str, ...] = (
    "Smiling", "Eyeglasses", "Mouth_Slightly_Open", "Bangs", "Wearing_Hat", "Pale_Skin",
)
LABEL_ONLY: tuple[str, ...] = tuple(a for a in ATTRIBUTE_NAMES if a not in VISIBLE_ATTRIBUTES)

HAIR_COLOURS = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")
# Among males: P(mustache) = 0.1 gives CelebA's overall 0.042; a beard (independent of the
# mustache) with P = 0.329 makes P(beard or mustache | male) = 0.396, so No_Beard is 0.835.
P_MUSTACHE_MALE = CELEBA_RATES["Mustache"] / CELEBA_RATES["Male"]
P_BEARD_MALE = 1 - (1 - (1 - CELEBA_RATES["No_Beard"]) / CELEBA_RATES["Male"]) / (1 - P_MUSTACHE_MALE)
# Lipstick on females only (as good as true in CelebA): 0.472 / 0.583 = 0.81 of females.
P_LIPSTICK_FEMALE = CELEBA_RATES["Wearing_Lipstick"] / (1 - CELEBA_RATES["Male"])


def sample_attributes(rng: np.random.Generator) -> dict[str, int]:
    """Draw one face's 40 labels (values -1/1, keys in official order) at CelebA's rates.

    Always consumes exactly 40 uniform numbers from `rng`, one per attribute slot. Male drives
    hair length (in the renderer), facial hair and lipstick; the four hair colours are exclusive
    (a face with none of them gets red/auburn hair); everything else is independent.
    """
    u = dict(zip(ATTRIBUTE_NAMES, rng.random(len(ATTRIBUTE_NAMES))))
    on = {a: bool(u[a] < CELEBA_RATES[a]) for a in ATTRIBUTE_NAMES}  # independent Bernoulli draws
    male = on["Male"]
    # One categorical draw for the exclusive hair colours (uses the Black_Hair slot).
    edge, colour = 0.0, None
    for a in HAIR_COLOURS:
        edge += CELEBA_RATES[a]
        if u["Black_Hair"] < edge:
            colour = a
            break
    for a in HAIR_COLOURS:
        on[a] = a == colour
    on["Mustache"] = male and u["Mustache"] < P_MUSTACHE_MALE
    beard = male and u["No_Beard"] < P_BEARD_MALE
    on["No_Beard"] = not (beard or on["Mustache"])
    on["Wearing_Lipstick"] = (not male) and u["Wearing_Lipstick"] < P_LIPSTICK_FEMALE
    return {a: 1 if on[a] else -1 for a in ATTRIBUTE_NAMES}


def flags(labels: Mapping[str, int] | Sequence[int]) -> dict[str, bool]:
    """Labels as name -> bool. Accepts a mapping (-1/1, 0/1 or bools; missing names are off) or
    a sequence of 40 values in official order."""
    if not isinstance(labels, Mapping):
        values = list(labels)
        if len(values) != len(ATTRIBUTE_NAMES):
            raise ValueError(f"expected {len(ATTRIBUTE_NAMES)} attribute values, got {len(values)}")
        labels = dict(zip(ATTRIBUTE_NAMES, values))
    unknown = [k for k in labels if k not in ATTRIBUTE_NAMES]
    if unknown:
        raise ValueError(f"unknown attribute {unknown[0]!r}")
    return {a: bool(labels.get(a, -1) > 0) for a in ATTRIBUTE_NAMES}
