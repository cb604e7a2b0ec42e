"""The paper's comparison of losses: PVAE (pixels), VAE-123 and VAE-345 trained on the same data
with the same budget, each evaluated by `dfc_vae.evaluation.evaluate`, their key numbers in one table, at one
or both loss scales (`--reductions sum paper`: model/losses.py).

    python experiments/compare_losses.py --data DIR --out DIR [--image-size 64] [--epochs 5]
        [--max-steps 0] [--batch-size 64] [--reductions sum paper] [--vgg-weights imagenet|random|PATH]
        [--cache-dir DIR]

Writes one run per loss and reduction, OUT/LOSS (sum) or OUT/LOSS-paper, each with eval/;
OUT/comparison.csv and OUT/comparison.md; OUT/reconstructions.png (the same test faces through every
run, one row each, the paper's reconstruction comparison) and OUT/samples_RUN.png (decoded prior
samples, the same z for every run). With CelebA and ImageNet VGG on a GPU this is the paper's
comparison; with synthetic faces or random VGG weights the table and pictures say so.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd

from dfc_vae.cli import ArgumentParser
from dfc_vae.evaluation.evaluate import evaluate
from dfc_vae.model.losses import LOSS_NAMES, REDUCTIONS
from dfc_vae.runs.config import TrainConfig
from dfc_vae.runs.run import compare_reconstructions, load_run, sample_grid
from dfc_vae.training.loop import train
from dfc_vae.model.losses import ACTIVE_UNIT_THRESHOLD
from dfc_vae.util.choices import DEVICES, IMAGE_SIZES
from dfc_vae.util.device import resolve_device
from dfc_vae.util.errors import exit_status
from dfc_vae.util.fileio import output_folder, write_text
from dfc_vae.util.tables import markdown_table

COLUMNS = {  # summary.json key -> table heading
    "mean_accuracy": "mean attr. acc. %", "mean_majority_baseline": "majority %", "mse": "MSE", "psnr": "PSNR dB",
    "ssim": "SSIM", "vgg_distance": "VGG dist.", "active_units": "active units", "kl_total": "KL nats",
}


def edit_scores(run_dir: Path, data: str, classifier, args) -> dict:
    """The figure scripts' attribute-edit scores (dfc_vae.evaluation.figure6.measure_edits): how often a +Smiling /
    +Eyeglasses edit flips the classifier's verdict, how often it changes other attributes, and how
    many interpolation rows move monotonically. Only the flat float headline numbers are kept."""
    from dfc_vae.editing.attributes import compute_attribute_vectors
    from dfc_vae.evaluation.figure6 import measure_edits

    run = load_run(run_dir, args.device)
    vectors = compute_attribute_vectors(run, data, "train", cache_dir=args.cache_dir, progress=not args.no_progress)
    scores = measure_edits(run, data, vectors, classifier, seed=args.seed, cache_dir=args.cache_dir)
    return {f"edit: {k}": v for k, v in vars(scores).items() if isinstance(v, float) and not isinstance(v, bool)}


def compare(args) -> pd.DataFrame:
    out = Path(args.out)
    rows = []
    classifier = None
    if not args.no_edit_scores:
        # one attribute classifier (dfc_vae.evaluation.classifier) for all runs: it depends on the data and size only
        from dfc_vae.evaluation.classifier import load_classifier, train_classifier

        folder = out / "classifier"
        if args.reuse and (folder / "classifier.json").is_file():
            classifier = load_classifier(folder, resolve_device(args.device))
        else:
            classifier = train_classifier(args.data, args.image_size, cache_dir=args.cache_dir, seed=args.seed,
                                          device=resolve_device(args.device),
                                          progress=not args.no_progress)
            classifier.save(folder)
    names = []
    for loss, reduction in [(loss, reduction) for reduction in args.reductions for loss in args.losses]:
        name = run_name(loss, reduction)
        run_dir = out / name
        names.append(name)
        t0 = time.time()
        if args.reuse and (run_dir / "config.json").is_file():
            print(f"{name}: reusing {run_dir} (step {load_run(run_dir).step})", flush=True)
            train_s = float("nan")
        else:
            cfg = TrainConfig(data=args.data, out=str(run_dir), loss=loss, vgg_weights=args.vgg_weights,
                              reduction=reduction, image_size=args.image_size, latent_dim=args.latent_dim, epochs=args.epochs,
                              batch_size=args.batch_size, max_steps=args.max_steps, seed=args.seed,
                              device=args.device, cache_dir=args.cache_dir, checkpoint_every=0)
            train(cfg, progress=not args.no_progress)
            train_s = time.time() - t0
        t1 = time.time()
        # a pvae run measures its VGG distance at VAE-123's layers with the same VGG weights as the others
        eval_dir = evaluate(run_dir, args.data, vgg_weights=args.vgg_weights, device=args.device,
                            cache_dir=args.cache_dir, progress=not args.no_progress)
        s = json.loads((eval_dir / "summary.json").read_text())
        row = {"loss": loss, "reduction": reduction, "step": int(s["step"]), **{k: s[k] for k in COLUMNS},
               "train_s": round(train_s, 1), "eval_s": round(time.time() - t1, 1)}
        if "honesty" in s:
            h = s["honesty"]
            row["visible attr. acc. %"] = 100 * s["mean_accuracy_visible"]
            row["honesty checks"] = "pass" if h["passed"] else "FAIL"
        if classifier is not None:
            row.update(edit_scores(run_dir, args.data, classifier, args))
        rows.append(row)
        print(f"{name}: mean attribute accuracy {100 * s['mean_accuracy']:.1f}%, PSNR {s['psnr']:.2f} dB, "
              f"active units {s['active_units']}", flush=True)
    table = pd.DataFrame(rows)
    for k in ("mean_accuracy", "mean_majority_baseline"):
        table[k] = 100 * table[k]
    table = table.rename(columns=COLUMNS)
    caption = list(s["caption"])
    pictures(out, names, args)
    write_text(out / "comparison.csv", table.to_csv(index=False, float_format="%.6g"))
    write_text(out / "comparison.md", markdown(table, caption, s, args, names))
    return table


def run_name(loss: str, reduction: str) -> str:
    return loss if reduction == "sum" else f"{loss}-{reduction}"


def pictures(out: Path, names: list[str], args) -> None:
    """OUT/reconstructions.png (the same test faces through every run, one row each) and one grid of
    decoded prior samples per run, OUT/samples_NAME.png, from the same z for every run."""
    runs = {name: load_run(out / name, args.device) for name in names}
    compare_reconstructions(runs, args.data, out / "reconstructions.png", n=8, cache_dir=args.cache_dir,
                            progress=not args.no_progress)
    for name, run in runs.items():
        sample_grid(run, out / f"samples_{name}.png", n=32, seed=args.seed)


def markdown(table: pd.DataFrame, caption: list[str], s, args, names: list[str]) -> str:
    fmt = {"MSE": "{:.5f}", "PSNR dB": "{:.2f}", "SSIM": "{:.4f}", "VGG dist.": "{:.4g}", "KL nats": "{:.1f}",
           "mean attr. acc. %": "{:.1f}", "majority %": "{:.1f}", "visible attr. acc. %": "{:.1f}"}
    lines = markdown_table(list(table.columns), [
        [fmt.get(c, "{:.3g}").format(v) if isinstance(v, float) or c in fmt else str(v) for c, v in r.items()]
        for r in table.to_dict("records")])
    made = "; ".join(caption) if caption else "CelebA, ImageNet VGG19"
    return "\n".join([
        f"# PVAE vs VAE-123 vs VAE-345 ({made})", "",
        f"Data: {s['data_description']} ({s['n_train']} train / {s['n_valid']} valid / {s['n_test']} test); "
        f"{args.image_size}x{args.image_size}, latent {args.latent_dim}, batch {args.batch_size}, "
        f"{args.epochs} epochs" + (f" capped at {args.max_steps} steps" if args.max_steps else "") + f", seed {args.seed}; "
        f"VGG19 weights: {args.vgg_weights}.", "",
        *lines, "",
        "![reconstructions](reconstructions.png)", "",
        f"Top row: test faces; below, their reconstructions by {', '.join(names)}, one row each. Prior samples "
        "(the same z for every run): " + ", ".join(f"[{n}](samples_{n}.png)" for n in names) + ".", "",
        "Mean attribute accuracy: linear probe on posterior means, test split, mean over the 40 attributes "
        "(majority: always the train split's majority label). MSE/PSNR/SSIM: test split, posterior mean decoded. "
        "VGG dist.: per-image sum of squared feature differences at relu1_1, relu2_1, relu3_1 for pvae and vae123, "
        "relu3_1, relu4_1, relu5_1 for vae345 (each run's own layers; not comparable across those two groups). "
        f"Active units: posterior-mean variance > {ACTIVE_UNIT_THRESHOLD}. " + ("edit: columns: dfc_vae.evaluation.figure6.measure_edits with one attribute "
        "classifier (dfc_vae.evaluation.classifier) for all runs: flip_* = share of +attribute edits the classifier then calls "
        "positive, others_changed_max_edit = worst share of faces whose other attributes change, monotone_rows = share "
        "of interpolation rows whose scored attributes move monotonically. " if any(c.startswith("edit:") for c in table.columns)
         else "Attribute-edit scores left out (--no-edit-scores). ") + "Per-run reports: OUT/LOSS/eval/report.md.", "",
        "Command: `" + " ".join(["python"] + sys.argv) + "`", "",
    ])


def main(argv=None) -> int:
    p = ArgumentParser(prog="compare_losses", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="CelebA root or faces from `dfc-vae synth`")
    p.add_argument("--out", required=True, help="folder for the three runs and the comparison table")
    p.add_argument("--losses", nargs="+", default=list(LOSS_NAMES), choices=LOSS_NAMES)
    p.add_argument("--reductions", nargs="+", default=["sum"], choices=REDUCTIONS,
                   help="loss scales to train each loss at (model/losses.py): sum (default), paper, or both")
    p.add_argument("--image-size", type=int, default=64, choices=IMAGE_SIZES)
    p.add_argument("--latent-dim", type=int, default=100)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--max-steps", type=int, default=0, help="cap on optimizer steps per run (0: none)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--vgg-weights", default="imagenet", help="imagenet, random (offline) or a state-dict PATH")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--cache-dir", help="decoded-image cache folder")
    p.add_argument("--reuse", action="store_true", help="evaluate runs already in OUT instead of training them again")
    p.add_argument("--no-edit-scores", action="store_true",
                   help="leave out the attribute-edit scores (they train an attribute classifier first)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    def run_and_print():
        output_folder(args.out, purpose=" for the runs and the comparison")
        table = compare(args)
        print(table.to_string(index=False))
        print(f"wrote {Path(args.out) / 'comparison.md'}")

    return exit_status("compare_losses", run_and_print)


if __name__ == "__main__":
    sys.exit(main())
