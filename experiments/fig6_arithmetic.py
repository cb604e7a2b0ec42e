"""The paper's Figure 6, measured: attribute vector arithmetic z + alpha * v.

Default rows: +smiling, -smiling (on a smiling face), +eyeglasses on a man, +eyeglasses on a woman,
-eyeglasses; alpha = 0, 0.1, ..., 1. Any attribute and alpha range by flag. Writes OUT.png, OUT.csv
(attribute-classifier probability of every cell) and OUT.json (flip rates at the largest alpha,
share of faces whose other attributes change).

  python experiments/fig6_arithmetic.py --run RUN --data DIR --attributes FILE --out fig6.png \
      [--edit +Smiling --edit=-Eyeglasses:Male] [--alpha-max 1.5 --steps 7]
Works for real CelebA on a GPU and for synthetic faces on a CPU.
"""

import json
import math
import sys

import torch

from dfc_vae.argtypes import require
from dfc_vae.attributes import load_attribute_vectors
from dfc_vae.classifier import classifier_for_run
from dfc_vae.errors import UserError
from dfc_vae.faces import open_faces_for_run, report_notes
from dfc_vae.figures import FIG6_ROWS, figure6, parse_edit, script_parser
from dfc_vae.run import load_run
from dfc_vae.runlock import run_lock


def main(argv=None):
    p = script_parser(__doc__.splitlines()[0])
    p.add_argument("--attributes", required=True, help="file from `dfc-vae attributes`")
    p.add_argument("--edit", action="append", default=[], metavar="+NAME[:COND]",
                   help="a row kind such as +Smiling, +Eyeglasses:Male, +Bangs:~Male; write removals as --edit=-Eyeglasses (default: the paper's five)")
    p.add_argument("--alpha-min", type=float, default=0.0)
    p.add_argument("--alpha-max", type=float, default=1.0)
    p.add_argument("--face", action="append", default=[], metavar="EDIT=ID", help="image id for an edit's first drawn row")
    args = p.parse_args(argv)
    try:
        require(args.faces, "--faces", "int", min=1)
        require(args.show, "--show", "int", min=1, max=args.faces)
        if args.steps < 2:
            raise UserError("--steps must be at least 2")
        require(args.steps, "--steps", "int", min=2, max=101)
        require(args.seed, "--seed", "int", min=0, max=2**32 - 1)
        if not (math.isfinite(args.alpha_min) and math.isfinite(args.alpha_max)) or args.alpha_min >= args.alpha_max:
            raise UserError(f"alpha range {args.alpha_min}..{args.alpha_max} is malformed; give finite values with "
                            "--alpha-min below --alpha-max (e.g. --alpha-min 0 --alpha-max 1)")
        faces_by_id = dict(item.split("=", 1) for item in args.face if "=" in item)
        with run_lock(args.run, "fig6", create=False):  # the run's classifier may be trained and written
            run = load_run(args.run, args.device)
            faces = open_faces_for_run(run, args.data, args.labels)
            report_notes(faces)
            edits = [parse_edit(e, faces.attribute_names) for e in args.edit] or list(FIG6_ROWS)
            faces.check_attributes([n for e in edits for n in e.faces])
            vectors = load_attribute_vectors(args.attributes, run.config.latent_dim)
            clf = classifier_for_run(run, faces, args.cache_dir)
            res = figure6(run, faces, vectors, clf, args.out, edits=edits,
                          alphas=torch.linspace(args.alpha_min, args.alpha_max, args.steps), n_faces=args.faces,
                          n_show=args.show, seed=args.seed, faces_by_id=faces_by_id, split=args.split, cache_dir=args.cache_dir)
    except UserError as e:  # one line, exit status 2, as the CLI
        print(f"fig6_arithmetic: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(res.summary["rows"], indent=1))
    print(f"wrote {res.png} and {res.csv}")


if __name__ == "__main__":
    main()
