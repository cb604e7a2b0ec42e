"""How far the prior is from where the encoder puts faces, measured by Figure 5's own judge.

Figure 5's fake -> fake rows interpolate between two draws from the prior N(0, I). This script runs
the same rows, scored the same way (the run's attribute classifier; monotone within the figures'
tolerance), with the ends drawn four ways: N(0, I) (the figure's ends at this seed), the Gaussian
fitted to the aggregate posterior of training faces, posterior samples of random training faces, and
their posterior means. It prints the monotone share of each and writes them to --out (JSON).

  python experiments/prior_gap.py --run RUN --data DIR [--faces 300] [--fit-faces 4000] [--out gap.json]
"""

import sys

from dfc_vae.classifier import classifier_for_run
from dfc_vae.cli import ArgumentParser
from dfc_vae.errors import UserError
from dfc_vae.faces import open_faces_for_run, report_notes
from dfc_vae.fileio import write_json
from dfc_vae.figures import prior_gap
from dfc_vae.run import load_run


def main(argv=None):
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="run directory made by `dfc-vae train`")
    p.add_argument("--data", help="the faces: CelebA, a labelled folder or synthetic faces (default: the run's data)")
    p.add_argument("--labels", help="labels file of a folder of images (default: DIR/labels.csv, or the run's)")
    p.add_argument("--faces", type=int, default=300, help="rows per kind of ends (default 300, as the demo's Fig. 5)")
    p.add_argument("--fit-faces", type=int, default=4000, help="faces whose posteriors are encoded (default 4000)")
    p.add_argument("--split", default="train", help="split the faces come from (default train)")
    p.add_argument("--seed", type=int, default=0, help="the figure's seed: the same N(0, I) ends as its fake rows")
    p.add_argument("--out", help="JSON file for the measures")
    p.add_argument("--device", default="auto")
    p.add_argument("--cache-dir")
    args = p.parse_args(argv)
    try:
        run = load_run(args.run, args.device)
        faces = open_faces_for_run(run, args.data, args.labels)
        report_notes(faces)
        clf = classifier_for_run(run, faces, args.cache_dir)
        res = prior_gap(run, faces, clf, n_faces=args.faces, fit_faces=args.fit_faces, seed=args.seed,
                        split=args.split, cache_dir=args.cache_dir)
    except UserError as e:  # one line, exit status 2, as the CLI
        print(f"prior_gap: error: {e}", file=sys.stderr)
        sys.exit(2)
    agg = res["aggregate_posterior"]
    ev, mo = agg["covariance_eigenvalues"], agg["second_moment_per_dimension"]
    print(f"aggregate posterior of {res['fit_faces']} {res['split']} faces: covariance eigenvalues {ev['min']:.2f} .. "
          f"{ev['max']:.2f} (median {ev['median']:.2f}); E[z_j^2] {mo['min']:.2f} .. {mo['max']:.2f}; N(0, I): all 1")
    print(f"{'ends of the rows':45s} {'monotone':>9s} {'rows':>5s}  most frequent failing scores")
    for name, r in res["sources"].items():
        top = ", ".join(f"{k} {v}" for k, v in list(r["failing_scores"].items())[:3])
        print(f"{name:45s} {100 * r['monotone']:8.1f}% {r['rows_with_changing_scores']:5d}  {top}")
    if args.out:
        write_json(args.out, res)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
