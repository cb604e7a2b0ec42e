"""`python -m dfc_vae`: the dfc-vae command (what torchrun runs for multi-process training)."""

import sys

from dfc_vae.cli import main

sys.exit(main())
