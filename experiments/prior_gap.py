"""How far the prior is from where the encoder puts faces, measured by Figure 5's own judge.

Figure 5's fake -> fake rows interpolate between two draws from the prior N(0, I). This script runs
the same rows, scored the same way (the run's attribute classifier; monotone within the figures'
tolerance), with the ends drawn four ways: N(0, I) (the figure's ends at this seed), the Gaussian
fitted to the aggregate posterior of training faces, posterior samples of random training faces, and
their posterior means. It prints the monotone share of each and writes them to --out (JSON).

  python experiments/prior_gap.py --run RUN --data DIR [--faces 300] [--fit-faces 4000] [--out gap.json]
The same as `dfc-vae gap`, with the same flags.
"""

from dfc_vae.commands import gap
from dfc_vae.cli import script_main


def main(argv=None):
    script_main(gap, "prior_gap", __doc__, argv)


if __name__ == "__main__":
    main()
