"""The paper's Figure 5, measured: linear interpolation between latent vectors.

Rows: non-smiling woman -> smiling woman, man without -> with eyeglasses, man -> woman, and
fake -> fake (both ends z ~ N(0, I)); columns alpha = 0, 0.1, ..., 1 with the real inputs at the
ends of data rows. Writes OUT.png, OUT.csv (attribute-classifier probability of every cell) and
OUT.json (summary: share of rows whose scores move monotonically).

  python experiments/fig5_interpolation.py --run RUN --data DIR --out fig5.png [--pairs Smiling=ID1,ID2]
Works for real CelebA on a GPU and for synthetic faces on a CPU.
The same as `dfc-vae fig5`, with the same flags.
"""

from dfc_vae.commands import fig5
from dfc_vae.cli import script_main


def main(argv=None):
    script_main(fig5, "fig5_interpolation", __doc__, argv)


if __name__ == "__main__":
    main()
