"""The report of `dfc-vae evaluate` (evaluation/evaluate.py measures, this module renders): report.md in words and
tables from the summary, and every file of the evaluation written into its folder."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pandas as pd

from dfc_vae.evaluation.likelihood import likelihood_lines
from dfc_vae.evaluation.metrics import LABEL_ONLY_MAX_GAP, VISIBLE_MIN_ACCURACY
from dfc_vae.model.losses import ACTIVE_UNIT_THRESHOLD
from dfc_vae.runs.run import reconstruct_grid, sample_grid
from dfc_vae.util.fileio import write_json, write_text
from dfc_vae.util.images import save_png
from dfc_vae.util.tables import markdown_table, percent

# the report's percentages: the number alone (its column or sentence says "%"), blank where not measured
_percent = functools.partial(percent, unit="", missing="")


def write_evaluation(inputs, tables: dict[str, str], pictures: dict[str, tuple[np.ndarray, list[str]]],
                     summary: dict, report: str, seed: int, progress: bool) -> None:
    """Write every file of `evaluate` into `inputs.out` (all inputs were good; each file is written atomically)."""
    out, run = inputs.out, inputs.run
    out.mkdir(parents=True, exist_ok=True)
    for name, text in tables.items():
        write_text(out / name, text)
    for name, (image, caption) in pictures.items():
        save_png(out / name, image, caption)
    sample_grid(run, out / "samples.png", n=64, seed=seed)
    reconstruct_grid(run, inputs.faces, out / "reconstructions.png", "test", 32, inputs.cache_dir, progress)
    write_json(out / "summary.json", summary)
    write_text(out / "report.md", report)


def render_report(s: dict, attrs: pd.DataFrame, posterior: pd.DataFrame, color_by: str) -> str:
    """report.md of `evaluate` from its summary (summary.json), the probe's table and the posterior's."""
    lines = _report_header(s) + _attribute_section(s, attrs)
    if "honesty" in s:
        lines += _honesty_section(s)
    lines += _reconstruction_section(s) + _posterior_section(s, posterior)
    lines += (likelihood_lines(s["log_likelihood"]) if "log_likelihood" in s else []) + _pictures_section(s, color_by)
    return "\n".join(lines)


def _report_header(s: dict) -> list[str]:
    lines = [f"# Evaluation of {Path(s['run']).name}", ""]
    if s["caption"]:
        lines += ["**How this was made:** " + "; ".join(s["caption"]) + ".", ""]
    return lines + [
        f"- run: `{s['run']}`, step {s['step']}, loss `{s['loss']}`, {s['image_size']}x{s['image_size']}, latent dim {s['latent_dim']}",
        f"- trained on: {s['trained_on']}; evaluated on: {s['data_description']} (`{s['data']}`)",
        f"- splits: {s['n_train']} train, {s['n_valid']} valid, {s['n_test']} test images",
        "",
    ]


def _attribute_section(s: dict, attrs: pd.DataFrame) -> list[str]:
    real, drawn = "lnets_anet" in attrs, "visible" in attrs
    lines = [
        "## Attribute prediction (paper's protocol)",
        "",
        "One L2-regularized logistic regression per attribute on the posterior means of the train split "
        "(standardized); the L2 strength is chosen per attribute on the valid split (one-standard-error rule, "
        "intercept-only model included); accuracy on the test split. Majority baseline: test accuracy of "
        "always predicting the train split's majority label.",
        "",
    ]
    header = ["attribute", "probe acc. %", "majority %", "gain (points)", *(["LNets+ANet %"] if real else []),
              *(["drawn"] if drawn else []), "L2"]
    rows = [[r.attribute, _percent(r.test_accuracy), _percent(r.majority_baseline), f"{100 * r.gain:+.1f}",
             *([_percent(r.lnets_anet)] if real else []), *(["yes" if r.visible else "no"] if drawn else []),
             "majority" if math.isinf(r.l2) else f"{r.l2:g}"] for r in attrs.itertuples()]
    # the mean row's blank cells are written "| |"
    mean_row = f"| **mean** | **{_percent(s['mean_accuracy'])}** | {_percent(s['mean_majority_baseline'])} | " \
               f"{100 * (s['mean_accuracy'] - s['mean_majority_baseline']):+.1f} |"
    if real:
        mean_row += f" {_percent(s['mean_lnets_anet'])} |"
    if drawn:
        mean_row += " |"
    lines += markdown_table(header, rows) + [mean_row + " |", ""]
    if real:
        lines += ["LNets+ANet: Liu et al. 2015, published test accuracies (face-attribute CNNs trained on the labels).", ""]
    return lines


def _honesty_section(s: dict) -> list[str]:
    h = s["honesty"]
    return [
        "### Honesty checks (synthetic faces)",
        "",
        f"- drawn attributes reach >= {VISIBLE_MIN_ACCURACY:.0%} test accuracy: "
        f"{'yes' if not h['visible_below_95'] else 'NO: ' + ', '.join(h['visible_below_95'])} "
        f"(lowest {_percent(h['visible_min_accuracy'])}%; mean over drawn attributes {_percent(s['mean_accuracy_visible'])}%)",
        f"- label-only attributes stay within {100 * LABEL_ONLY_MAX_GAP:.0f} points of the majority baseline: "
        f"{'yes' if not h['label_only_off_baseline'] else 'NO: ' + ', '.join(h['label_only_off_baseline'])} "
        f"(largest gap {100 * h['label_only_max_abs_gap']:.1f} points)",
        "",
    ]


def _reconstruction_section(s: dict) -> list[str]:
    layer_note = "the run's own loss layers" if s["loss"] != "pvae" else "VAE-123's layers (a pvae run has no VGG loss)"
    scores = [f"{s['mse']:.5f}", f"{s['psnr']:.2f}", f"{s['ssim']:.4f}", f"{s['vgg_distance']:.4g}"]
    return [
        "## Reconstruction (test split, posterior mean decoded in eval mode, clamped to [0, 1])",
        "",
        *markdown_table(["MSE", "PSNR (dB)", "SSIM", "VGG feature distance"], [scores]),
        "",
        f"Means over test images of per-image scores. SSIM: Gaussian window 11, sigma 1.5 (Wang et al. 2004). "
        f"VGG feature distance: per-image sum of squared differences at {', '.join(s['vgg_layers'])} "
        f"({layer_note}), VGG19 weights: {s['eval_vgg_weights']}. Per image: reconstruction.csv.",
        "",
    ]


def _posterior_section(s: dict, posterior: pd.DataFrame) -> list[str]:
    return [
        "## Posterior",
        "",
        f"- active units (variance of the posterior mean over the test split > {ACTIVE_UNIT_THRESHOLD}, Burda et al. 2016): "
        f"**{s['active_units']} / {s['latent_dim']}**",
        f"- KL(q(z|x) || N(0, I)) averaged over the test split: {s['kl_total']:.2f} nats in all; "
        f"largest per dimension {posterior.kl.max():.3f}, smallest {posterior.kl.min():.3f} (posterior.csv, kl_per_dim.png)",
        "",
    ]


def _pictures_section(s: dict, color_by: str) -> list[str]:
    n_tsne = s["tsne_faces"]
    tsne = (f"- `latent_tsne.png`: the latent means of the first {n_tsne} test faces embedded in 2-D by t-SNE "
            "(van der Maaten & Hinton 2008, initialised by PCA, the evaluation's seed), each face drawn at its point, "
            "as the paper's Figure 7 (coordinates: latent_tsne.csv)" if n_tsne else
            "- no t-SNE picture (`--tsne-faces 0`, or fewer than 2 test faces)")
    return [
        "## Pictures",
        "",
        "- `attribute_correlation.png`: correlation of the attribute vectors (mean latent of faces with the "
        "attribute minus mean of faces without, train split): which attributes the latent space ties together",
        f"- `latent_pca.png`: the test split's latent means on their first two principal components, coloured by {color_by}",
        tsne,
        "- `kl_per_dim.png`: mean KL per latent dimension",
        "- `samples.png`: decoded z ~ N(0, I); `reconstructions.png`: test faces (odd rows) and reconstructions (even rows)",
        "",
        "![attribute correlation](attribute_correlation.png)",
        "![latent PCA](latent_pca.png)",
        *(["![latent t-SNE](latent_tsne.png)"] if n_tsne else []),
        "![KL per dimension](kl_per_dim.png)",
        "![samples](samples.png)",
        "![reconstructions](reconstructions.png)",
        "",
    ]
