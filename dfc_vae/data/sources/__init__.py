"""Kinds of face sources, tried in order: each module has `recognises(root) -> bool` and
`open(root, labels, allow_missing, split_seed) -> FaceSet`. A new kind of source is one new module
here and one entry in SOURCES; the folder source takes anything and comes last."""

from dfc_vae.data.sources import celeba, folder

SOURCES = (celeba, folder)
