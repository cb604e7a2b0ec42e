"""`python -m dfc_vae`: the dfc-vae command (what torchrun runs for multi-process training)."""

from dfc_vae.cli import run

run()
