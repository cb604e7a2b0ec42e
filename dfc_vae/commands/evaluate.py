"""`dfc-vae evaluate`: its flags and the call into evaluation/evaluate.py, and the one line it prints."""

import argparse
import json

from dfc_vae.commands._common import add_device_argument, add_run_arguments, default_output, open_model
from dfc_vae.util.argtypes import nonnegative_int, seed

# The library modules that do the work are imported in the functions that use them: cli.py imports every
# command to build the parser, and `dfc-vae --help` should not load them (commands/__init__.py).

HELP = ("evaluate a run: the paper's attribute linear-probe table, reconstruction MSE/PSNR/SSIM/VGG distance, "
        "KL per latent dimension, and pictures of the latent space (PCA, t-SNE of faces)")
ORDER = 70
# dfc_vae.evaluation.plots.TSNE_FACES, repeated so that building the command line imports no pandas (a test checks they agree)
TSNE_FACES = 500
LL_FACES = 1000  # dfc_vae.evaluation.likelihood.LL_FACES, repeated for the same reason
SAMPLE_FACES = 1000  # dfc_vae.evaluation.samples.SAMPLE_FACES, repeated for the same reason (the same test checks it)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser, model=True)
    parser.add_argument("--allow-missing", action="store_true",
                        help="use the images present when the labels list some that are not there")
    parser.add_argument("--out", help="folder for report.md, CSVs and PNGs (default: RUN/eval; with --model: eval here)")
    parser.add_argument("--color-by", default="Smiling",
                        help="attribute that colours the latent PCA plot (default: Smiling, or the data's first)")
    parser.add_argument("--vgg-weights", help="VGG19 weights for the feature distance: imagenet, random or PATH (default: the run's)")
    parser.add_argument("--cache-dir", help="folder of the decoded-image cache (default: the run's)")
    add_device_argument(parser)
    parser.add_argument("--tsne-faces", type=nonnegative_int, default=TSNE_FACES,
                        help=f"test faces drawn at their t-SNE positions in latent_tsne.png (default {TSNE_FACES}; 0: none)")
    parser.add_argument("--log-likelihood", type=nonnegative_int, default=0, metavar="K",
                        help=f"pixel-loss (pvae) runs: also estimate log p(x) on the first {LL_FACES:,} test faces with K "
                             "importance samples each (Burda et al. 2016), beside the ELBO (default 0: not done)")
    parser.add_argument("--samples", type=nonnegative_int, default=SAMPLE_FACES,
                        help=f"random faces per prior whose quality is measured against as many test faces (default "
                             f"{SAMPLE_FACES}; 0: none)")
    parser.add_argument("--seed", type=seed, default=0,
                        help="seed of the prior samples grid, the t-SNE, the log p(x) draws and the samples measured")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> None:
    from dfc_vae.evaluation.evaluate import evaluate

    out = evaluate(open_model(args) if args.model else args.run, args.data, args.out or default_output(args, "eval"), args.color_by, args.vgg_weights, args.device, args.cache_dir,
                   args.seed, progress=not args.no_progress, labels=args.labels,
                   allow_missing=args.allow_missing or None, tsne_faces=args.tsne_faces,
                   log_likelihood_k=args.log_likelihood, samples=args.samples)
    s = json.loads((out / "summary.json").read_text())
    print(f"wrote {out / 'report.md'}: mean attribute accuracy {100 * s['mean_accuracy']:.1f}% "
          f"(majority {100 * s['mean_majority_baseline']:.1f}%), PSNR {s['psnr']:.2f} dB, SSIM {s['ssim']:.3f}, "
          f"active units {s['active_units']}/{s['latent_dim']}")
    if "log_likelihood" in s:
        ll = s["log_likelihood"]
        print(f"log p(x) with k = {args.log_likelihood}: {ll['log_px'][str(args.log_likelihood)]:.2f} nats per image "
              f"(ELBO {ll['elbo']:.2f}) over {ll['faces']} test faces")
