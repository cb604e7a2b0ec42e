"""Evaluate a trained run: the paper's attribute-prediction table, reconstruction quality, the
posterior, and pictures of the latent space, as a markdown report with CSVs and PNGs.

`evaluate(run_dir, data)` computes everything first and writes only at the end, so a bad input
(a folder that is not a run, data without labels or without a split, an unknown attribute) stops
it before any file is made. The attributes are the data's own (CelebA's 40, or a labels file's). Files, all in `out` (default RUN/eval/):

  report.md                    everything below, in words and tables
  summary.json                 the key numbers (what experiments/compare_losses.py reads)
  attributes.csv               per attribute: probe test accuracy, majority baseline, gain, chosen L2, ...
  reconstruction.csv           per test image: mse, psnr, ssim, vgg_distance
  posterior.csv                per latent dimension: mean KL over the test split, variance of mu, active
  attribute_correlation.csv    A x A correlation of the attribute vectors
  latent_tsne.csv              per embedded test image: its t-SNE coordinates x, y
  samples.csv                  per prior: its random faces' quality against test faces (evaluation/samples.py)
  attribute_correlation.png, latent_pca.png, latent_tsne.png, kl_per_dim.png, samples.png, reconstructions.png
  edits.png, edits.csv, edits.json   synthetic faces with twins only: edits against their twins (evaluation/edits.py)

latent_tsne.png is the paper's Figure 7 kind of picture: the latent means of the first `tsne_faces`
test faces embedded in 2-D by t-SNE (van der Maaten & Hinton 2008; scikit-learn's Barnes-Hut), each
face's thumbnail drawn at its point.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from dfc_vae.util.argtypes import require
from dfc_vae.editing.attributes import attribute_vectors, encode_split
from dfc_vae.data.celeba import ATTRIBUTE_NAMES
from dfc_vae.model.losses import ACTIVE_UNIT_THRESHOLD
from dfc_vae.util.choices import SPLIT_NAMES
from dfc_vae.util.images import to_tensor
from dfc_vae.data.faces import FaceSet, report_notes
from dfc_vae.runs.split import FaceSplit, open_faces_for_run
from dfc_vae.util.errors import UserError
from dfc_vae.util.fileio import output_folder
from dfc_vae.runs.provenance import provenance
from dfc_vae.model.losses import LOSS_LAYERS, DFCLoss, active_units
from dfc_vae.evaluation.likelihood import LL_FACES, log_likelihood, require_pixel_loss
from dfc_vae.evaluation.metrics import LABEL_ONLY_MAX_GAP, VISIBLE_MIN_ACCURACY, ProbeResult, linear_probe, mse, psnr, ssim
from dfc_vae.runs.run import LoadedRun, load_run
from dfc_vae.evaluation.edits_report import edits_section, evaluation_edits, write_edit_benchmark
from dfc_vae.evaluation.samples import SAMPLE_FACES, evaluate_samples
from dfc_vae.evaluation.report import render_report, write_evaluation
from dfc_vae.evaluation.plots import (TSNE_FACES, correlation_figure, kl_figure, pca_figure, tsne_embedding, tsne_figure)
from dfc_vae.data.synth import VISIBLE_ATTRIBUTES

# LNets+ANet (Liu et al. 2015, "Deep Learning Face Attributes in the Wild") test accuracies in %,
# ATTRIBUTE_NAMES order, as the official DFC-VAE repository's analysis script lists them.
LNETS_ANET: dict[str, float] = dict(zip(ATTRIBUTE_NAMES, (
    91, 79, 81, 79, 98, 95, 68, 78, 88, 95, 84, 80, 90, 91, 92, 99, 95, 97, 90, 87,
    98, 92, 95, 81, 95, 66, 91, 72, 89, 90, 96, 92, 73, 80, 82, 99, 93, 71, 93, 87)))

@dataclass
class Reconstruction:
    per_image: pd.DataFrame  # columns mse, psnr, ssim, vgg_distance; one row per test image
    vgg_weights: str  # description of the weights used for the distance
    mu: torch.Tensor  # (N_test, D) posterior means
    kl_per_dim: np.ndarray  # (D,) mean over the test split of KL(q(z_d | x) || N(0, 1))


def _check_splits(faces: FaceSet) -> None:
    for split in SPLIT_NAMES:
        if not faces.split_mask(split).any():
            raise UserError(f"the {split} split of {faces.root} is empty ({faces.split_source}); evaluation needs train, "
                            "valid and test images")


def _vgg_layers(loss: str) -> tuple[str, ...]:
    """The run's own loss layers; a pixel-loss (pvae) run is measured at VAE-123's layers."""
    return LOSS_LAYERS[loss] or LOSS_LAYERS["vae123"]


@torch.no_grad()
def measure_reconstruction(run: LoadedRun, images: np.ndarray, vgg: DFCLoss, batch_size: int = 256,
                           progress: bool = True) -> Reconstruction:
    """Decode the posterior mean of every image (eval mode) and score it.

    images: (N, S, S, 3) uint8 (a cache slice). vgg_distance is the per-image sum over the tapped
    layers of squared feature differences, the run's training reconstruction term for VGG runs.
    """
    run.model.eval()
    rows, mus, kls = [], [], []
    for i in tqdm(range(0, len(images), batch_size), desc="reconstructing test", unit="batch", disable=not progress):
        x = to_tensor(images[i:i + batch_size]).to(run.device)
        mu, logvar = run.model.encode(x)
        recon = run.model.decode(mu).clamp(0, 1)  # pixel scores on displayable images
        rows.append(pd.DataFrame({
            "mse": mse(x, recon).cpu().numpy(), "psnr": psnr(x, recon).cpu().numpy(),
            "ssim": ssim(x, recon).cpu().numpy(), "vgg_distance": vgg.reconstruction(x, recon).float().cpu().numpy(),
        }))
        mu, logvar = mu.float().cpu(), logvar.float().cpu()
        mus.append(mu)
        # KL(N(mu_d, sigma_d^2) || N(0, 1)) per dimension (Kingma & Welling 2014, Appendix B)
        kls.append(0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar))
    return Reconstruction(pd.concat(rows, ignore_index=True), vgg.vgg_weights_description,
                          torch.cat(mus), torch.cat(kls).mean(0).numpy())


def honesty_checks(probe: pd.DataFrame, visible: tuple[str, ...]) -> dict:
    """Synthetic faces only: visible attributes >= 95% probe test accuracy; label-only attributes
    within 2 points of their majority baseline. Returns the failures and a pass flag."""
    vis = probe[probe.attribute.isin(visible)]
    hidden = probe[~probe.attribute.isin(visible)]
    low = vis[vis.test_accuracy < VISIBLE_MIN_ACCURACY].attribute.tolist()
    leak = hidden[(hidden.test_accuracy - hidden.majority_baseline).abs() > LABEL_ONLY_MAX_GAP].attribute.tolist()
    return {"visible_below_95": low, "label_only_off_baseline": leak, "passed": not low and not leak,
            "visible_min_accuracy": float(vis.test_accuracy.min()) if len(vis) else None,
            "label_only_max_abs_gap": float((hidden.test_accuracy - hidden.majority_baseline).abs().max()) if len(hidden) else None}


def evaluate(run_dir: str | Path | LoadedRun, data=None, out: str | Path | None = None,
             color_by: str = "Smiling", vgg_weights: str | None = None, device: str = "auto",
             cache_dir: str | Path | None = None, seed: int = 0, progress: bool = True, labels=None,
             allow_missing: bool | None = None, tsne_faces: int = TSNE_FACES, log_likelihood_k: int = 0,
             samples: int = SAMPLE_FACES) -> Path:
    """Evaluate the run in `run_dir` (or a model already loaded, e.g. an exported one) on `data` (a FaceSet
    or a folder; default: the data it was trained on, with its labels); returns `out`.

    vgg_weights: for the VGG feature distance; default the run's own setting. color_by: the
    attribute that colours the latent PCA (default Smiling; with data that lacks it, its first).
    tsne_faces: how many test faces the t-SNE picture embeds (the first ones; 0: no picture).
    seed: of the prior samples grid, the t-SNE and the samples measured. log_likelihood_k: for a pixel-loss run, the
    importance samples per face of an estimate of log p(x) on the first LL_FACES test faces (evaluation/likelihood.py;
    0: none). samples: random faces per prior measured against as many test faces (evaluation/samples.py; 0: none).
    """
    require(tsne_faces, "--tsne-faces", "int", min=0)
    require(log_likelihood_k, "--log-likelihood", "int", min=0)
    require(samples, "--samples", "int", min=0)
    inputs = _check_inputs(run_dir, data, out, color_by, vgg_weights, device, cache_dir, labels, allow_missing)
    if log_likelihood_k:
        require_pixel_loss(inputs.run)
    run = inputs.run
    probe = _attribute_prediction(inputs, progress)
    test_images = FaceSplit(inputs.faces, "test", run.config.image_size, run.config.crop, inputs.cache_dir, progress,
                            run=run).uint8()
    rec = measure_reconstruction(run, test_images, inputs.vgg, progress=progress)
    n_active = active_units(rec.mu)
    posterior = posterior_table(rec)
    corr = attribute_correlation(probe.z["train"], probe.y["train"])
    pictures = _latent_pictures(inputs, probe, rec, corr, n_active)
    n_tsne = min(tsne_faces, len(rec.mu)) if len(rec.mu) >= 2 else 0
    if n_tsne:
        xy = tsne_embedding(rec.mu[:n_tsne], seed)
        pictures["latent_tsne.png"] = (tsne_figure(xy, test_images[:n_tsne]), inputs.caption + [
            f"{_who(run)}: t-SNE of the latent means of the first {n_tsne} test faces (seed {seed})"])
    summary = _summary(inputs, probe, rec, n_active)
    summary["tsne_faces"] = n_tsne
    if log_likelihood_k:
        summary["log_likelihood"] = log_likelihood(run, test_images[:LL_FACES], log_likelihood_k, seed=seed).summary()
    tables = {
        "attributes.csv": probe.table.to_csv(index=False, float_format="%.6g"),
        "reconstruction.csv": rec.per_image.to_csv(index_label="test_image", float_format="%.6g"),
        "posterior.csv": posterior.to_csv(index=False, float_format="%.6g"),
        "attribute_correlation.csv": pd.DataFrame(corr, index=inputs.names, columns=inputs.names)
                                     .to_csv(float_format="%.4f"),
    }
    if n_tsne:
        tables["latent_tsne.csv"] = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1]}).to_csv(
            index_label="test_image", float_format="%.6g")
    sample_lines, tables["samples.csv"], summary["samples"] = evaluate_samples(
        run, inputs.faces, inputs.vgg.vgg, samples, seed, inputs.cache_dir, progress)
    tables = {name: text for name, text in tables.items() if text is not None}
    report = render_report(summary, probe.table, posterior, inputs.color_by) + "\n".join(sample_lines)
    edits = evaluation_edits(run, inputs.faces, vgg_weights, inputs.cache_dir, progress)  # None without twins
    if edits is not None:
        report += "\n".join(["", *edits_section(edits, "edits.png"), ""])
    write_evaluation(inputs, tables, pictures, summary, report, seed, progress)
    if edits is not None:
        write_edit_benchmark(edits, inputs.out)
    return inputs.out


@dataclass
class _Inputs:
    """Everything `evaluate` reads, checked before anything is computed or written."""

    run: LoadedRun
    faces: FaceSet
    names: list[str]  # the data's attributes
    color_by: str
    out: Path
    vgg: DFCLoss  # for the VGG feature distance
    layers: tuple[str, ...]  # where that distance is measured
    synthetic: bool
    real_celeba: bool  # real CelebA with its own 40 attributes: LNets+ANet's published column applies
    caption: list[str]  # how the pictures were made
    cache_dir: str | Path | None


def _check_inputs(run_dir, data, out, color_by, vgg_weights, device, cache_dir, labels, allow_missing) -> _Inputs:
    """Open the run and the data and check every input (a bad one is a UserError before any file is made)."""
    run = run_dir if isinstance(run_dir, LoadedRun) else load_run(run_dir, device)
    faces = open_faces_for_run(run, data, labels, allow_missing)
    report_notes(faces)
    faces.require_labels()
    _check_splits(faces)
    names = faces.attribute_names
    if color_by not in names and color_by == "Smiling":
        color_by = names[0]  # the default, on data labelled otherwise
    faces.check_attributes([color_by])
    out = output_folder(out or run.path / "eval", purpose=" for the report")
    vgg = DFCLoss(run.config.loss if LOSS_LAYERS[run.config.loss] else "vae123",
                  vgg_weights=vgg_weights or run.config.vgg_weights).to(run.device)
    synthetic = faces.synthetic is not None
    return _Inputs(run, faces, names, color_by, out, vgg, _vgg_layers(run.config.loss), synthetic,
                   real_celeba=faces.kind == "celeba" and not synthetic and names == list(ATTRIBUTE_NAMES),
                   caption=_caption(run, vgg, synthetic), cache_dir=cache_dir or run.config.cache_dir)


def _caption(run: LoadedRun, vgg: DFCLoss, synthetic: bool) -> list[str]:
    """Caption lines: the faces and the run's loss weights, and the weights of the VGG distance
    where they say something more."""
    caption = provenance(synthetic or bool(run.meta.get("synthetic")), run.meta.get("vgg_weights", ""))
    for line in provenance(False, vgg.vgg_weights_description):
        if line not in caption:
            caption.append(f"{line} (for the VGG feature distance)")
    return caption


@dataclass
class _Probe:
    z: dict[str, torch.Tensor]  # split -> (N, D) posterior means
    y: dict[str, np.ndarray]  # split -> (N, A) bool labels
    result: ProbeResult
    table: pd.DataFrame  # attributes.csv
    visible: tuple[str, ...]  # synthetic faces: the attributes synth.py draws


def _attribute_prediction(inputs: _Inputs, progress: bool) -> _Probe:
    """The paper's protocol: train -> fit, valid -> choose L2, test -> accuracy."""
    z, y = {}, {}
    for split in SPLIT_NAMES:
        z[split], rows = encode_split(inputs.run, inputs.faces, split, inputs.cache_dir, progress=progress)
        y[split] = rows[inputs.names].to_numpy(bool).copy()  # writable, for torch
    probe = linear_probe(z["train"], y["train"], z["valid"], y["valid"], z["test"], y["test"], inputs.names)
    table = probe.table()
    if inputs.real_celeba:
        table["lnets_anet"] = [LNETS_ANET[a] / 100 for a in inputs.names]
    visible = ()
    if inputs.synthetic:
        visible = VISIBLE_ATTRIBUTES
        table["visible"] = table.attribute.isin(visible)
    return _Probe(z, y, probe, table, visible)


def posterior_table(rec: Reconstruction) -> pd.DataFrame:
    """posterior.csv: per latent dimension its mean KL, the variance of its posterior mean, and
    whether it is active (Burda et al. 2016)."""
    mu_var = rec.mu.var(0).numpy() if len(rec.mu) > 1 else np.zeros(rec.mu.shape[1])
    return pd.DataFrame({"dim": np.arange(len(rec.kl_per_dim)), "kl": rec.kl_per_dim,
                         "mu_variance": mu_var, "active": mu_var > ACTIVE_UNIT_THRESHOLD})


def attribute_correlation(mu: torch.Tensor, labels: np.ndarray) -> np.ndarray:
    """(A, A) correlation over the latent dimensions of the attribute vectors of (N, D) posterior
    means with (N, A) bool labels; 0 for an attribute whose vector is zero."""
    vectors, _, _ = attribute_vectors(mu, labels)
    v = vectors.double().numpy()
    norms = np.linalg.norm(v - v.mean(1, keepdims=True), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(v)
    corr[~np.isfinite(corr)] = 0.0  # an attribute with a zero vector (all or none of train have it)
    corr[norms == 0, norms == 0] = 0.0
    return corr


def _latent_pictures(inputs: _Inputs, probe: _Probe, rec: Reconstruction, corr: np.ndarray,
                     n_active: int) -> dict[str, tuple[np.ndarray, list[str]]]:
    """File name -> (image, caption) of the pictures of the latent space."""
    run, names, caption = inputs.run, inputs.names, inputs.caption
    who = _who(run)
    corr_png = correlation_figure(corr, names, f"{who}: correlation of attribute vectors over "
                                               f"{probe.z['train'].shape[1]} latent dims")
    color_labels = probe.y["test"][:, names.index(inputs.color_by)]
    pca_png = pca_figure(rec.mu, color_labels, inputs.color_by, f"{who}: PCA of test-split latent means")
    kl_png = kl_figure(rec.kl_per_dim, f"{who}: mean KL per latent dimension, test split ({n_active} active units)")
    return {"attribute_correlation.png": (corr_png, caption),
            "latent_pca.png": (pca_png, caption + [f"coloured by {inputs.color_by} (test split labels)"]),
            "kl_per_dim.png": (kl_png, caption)}


def _who(run: LoadedRun) -> str:
    return f"{run.name} ({run.config.loss}, step {run.step})"


def _summary(inputs: _Inputs, probe: _Probe, rec: Reconstruction, n_active: int) -> dict:
    """summary.json: the key numbers (what experiments/compare_losses.py reads)."""
    run, faces, y, per = inputs.run, inputs.faces, probe.y, rec.per_image
    summary = {
        "run": str(run.path), "step": run.step, "loss": run.config.loss, "image_size": run.config.image_size,
        "latent_dim": run.config.latent_dim, "data": str(faces.root), "data_description": faces.description,
        "synthetic": inputs.synthetic, "trained_on": run.meta.get("data_description", ""),
        "run_vgg_weights": run.meta.get("vgg_weights", ""), "eval_vgg_weights": rec.vgg_weights,
        "vgg_layers": list(inputs.layers), "caption": inputs.caption,
        "n_train": len(y["train"]), "n_valid": len(y["valid"]), "n_test": len(y["test"]),
        "mean_accuracy": float(probe.result.test_accuracy.mean()),
        "mean_majority_baseline": float(probe.result.majority_baseline.mean()),
        "mse": float(per.mse.mean()), "psnr": float(per.psnr.mean()), "ssim": float(per.ssim.mean()),
        "vgg_distance": float(per.vgg_distance.mean()),
        "active_units": n_active, "kl_total": float(rec.kl_per_dim.sum()),
    }
    if inputs.synthetic:
        summary["honesty"] = honesty_checks(probe.table, probe.visible)
        summary["mean_accuracy_visible"] = float(probe.table[probe.table.visible].test_accuracy.mean())
    elif inputs.real_celeba:
        summary["mean_lnets_anet"] = float(np.mean(list(LNETS_ANET.values()))) / 100
    return summary
