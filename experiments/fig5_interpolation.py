"""The paper's Figure 5, measured: linear interpolation between latent vectors.

Rows: non-smiling woman -> smiling woman, man without -> with eyeglasses, man -> woman, and
fake -> fake (both ends z ~ N(0, I)); columns alpha = 0, 0.1, ..., 1 with the real inputs at the
ends of data rows. Writes OUT.png, OUT.csv (attribute-classifier probability of every cell) and
OUT.json (summary: share of rows whose scores move monotonically).

  python experiments/fig5_interpolation.py --run RUN --data DIR --out fig5.png [--pairs Smiling=ID1,ID2]
Works for real CelebA on a GPU and for synthetic faces on a CPU.
"""

import json
import sys

from dfc_vae.argtypes import require
from dfc_vae.classifier import classifier_for_run
from dfc_vae.errors import UserError
from dfc_vae.faces import open_faces_for_run, report_notes
from dfc_vae.figures import FIG5_ROWS, figure5, script_parser
from dfc_vae.run import load_run
from dfc_vae.runlock import run_lock


def main(argv=None):
    p = script_parser(__doc__.splitlines()[0])
    p.add_argument("--attributes", help="(unused by Fig. 5; accepted so both figure scripts take the same flags)")
    p.add_argument("--method", default="linear", choices=("linear", "spherical"))
    p.add_argument("--pairs", action="append", default=[], metavar="ROW=LEFT_ID,RIGHT_ID",
                   help="endpoints of a row's first drawn row; ROW is Smiling, Eyeglasses or Male")
    args = p.parse_args(argv)
    try:
        require(args.faces, "--faces", "int", min=1)
        require(args.show, "--show", "int", min=1, max=args.faces)
        require(args.steps, "--steps", "int", min=2, max=101)
        require(args.seed, "--seed", "int", min=0, max=2**32 - 1)
        endpoints = {}
        for item in args.pairs:
            row, _, ids = item.partition("=")
            left, sep, right = ids.partition(",")
            if not sep:
                raise UserError(f"--pairs {item!r} should look like Smiling=000123.jpg,000456.jpg")
            endpoints[row] = (left, right)
        with run_lock(args.run, "fig5", create=False):  # the run's classifier may be trained and written
            run = load_run(args.run, args.device)
            faces = open_faces_for_run(run, args.data, args.labels)
            report_notes(faces)
            faces.check_attributes([n for row in FIG5_ROWS for ends in (row.left, row.right) if ends for n in ends])
            clf = classifier_for_run(run, faces, args.cache_dir)
            res = figure5(run, faces, clf, args.out, n_faces=args.faces, n_show=args.show, seed=args.seed,
                          steps=args.steps, method=args.method, endpoints=endpoints, split=args.split, cache_dir=args.cache_dir)
    except UserError as e:  # one line, exit status 2, as the CLI
        print(f"fig5_interpolation: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps({k: v for k, v in res.summary.items() if k != "alphas"}, indent=1))
    print(f"wrote {res.png} and {res.csv}")


if __name__ == "__main__":
    main()
