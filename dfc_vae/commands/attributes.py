import argparse

HELP = "attribute vectors: mean posterior mean with minus without each of the 40 CelebA attributes"
ORDER = 60


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run directory made by `dfc-vae train`")
    parser.add_argument("--data", required=True, help="the CelebA (or synthetic) folder whose labels to use")
    parser.add_argument("--split", default="train", choices=("train", "valid", "test", "all"),
                        help="images to average over (default: train)")
    parser.add_argument("--out", help="output file (default: RUN/attributes_SPLIT.safetensors)")
    parser.add_argument("--classifier", action="store_true",
                        help="also train the run's attribute classifier (RUN/classifier/) that scores Figs. 5 and 6")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--cache-dir", help="folder of the decoded-image cache (default: the run's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> None:
    from ..runlock import run_lock

    with run_lock(args.run, "attributes", create=False):  # writes the run's attribute vectors and classifier
        _run(args)


def _run(args: argparse.Namespace) -> None:
    from pathlib import Path

    from ..attributes import compute_attribute_vectors
    from ..run import load_run

    loaded = load_run(args.run, args.device)
    out = Path(args.out) if args.out else Path(args.run) / f"attributes_{args.split}.safetensors"
    vectors = compute_attribute_vectors(loaded, args.data, args.split, args.cache_dir, not args.no_progress)
    vectors.save(out)
    print(f"{len(vectors.names)} attribute vectors from {vectors.meta['images']} {args.split} images written to {out}")
    if args.classifier:
        from ..classifier import classifier_for_run

        clf = classifier_for_run(loaded, args.data, args.cache_dir, retrain=True, progress=not args.no_progress)
        scored = clf.scored()
        print(f"attribute classifier in {Path(args.run) / 'classifier'}: scores {len(scored)} attributes "
              f"(test accuracy >= 0.95): {', '.join(scored)}")
