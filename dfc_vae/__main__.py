import sys

from dfc_vae.cli import main

sys.exit(main())
