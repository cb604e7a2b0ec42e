"""`python -m dfc_vae`: the dfc-vae command (what torchrun runs for multi-process training)."""

import os
import sys

from dfc_vae.cli import main

status = main()
if int(os.environ.get("WORLD_SIZE", "1")) > 1:
    # A torchrun worker leaves without finalizing the interpreter: Gloo's worker threads may still be
    # releasing the tensors of the last collective, which takes the GIL, and a thread that asks for the
    # GIL while the interpreter finalizes aborts the process (SIGABRT, after a finished run). Every
    # file is written and closed by now; only the terminal's buffers are left to flush.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
sys.exit(status)
