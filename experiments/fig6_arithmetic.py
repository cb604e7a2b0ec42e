"""The paper's Figure 6, measured: attribute vector arithmetic z + alpha * v.

Default rows: +smiling, -smiling (on a smiling face), +eyeglasses on a man, +eyeglasses on a woman,
-eyeglasses; alpha = 0, 0.1, ..., 1. Any attribute and alpha range by flag. Writes OUT.png, OUT.csv
(attribute-classifier probability of every cell) and OUT.json (flip rates at the largest alpha,
share of faces whose other attributes change).

  python experiments/fig6_arithmetic.py --run RUN --data DIR --attributes FILE --out fig6.png \
      [--edit +Smiling --edit=-Eyeglasses:Male] [--alpha-max 1.5 --steps 7]
Works for real CelebA on a GPU and for synthetic faces on a CPU.
The same as `dfc-vae fig6`, with the same flags.
"""

from dfc_vae.commands import fig6
from dfc_vae.cli import script_main


def main(argv=None):
    script_main(fig6, "fig6_arithmetic", __doc__, argv)


if __name__ == "__main__":
    main()
