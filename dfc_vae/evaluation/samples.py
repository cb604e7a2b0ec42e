"""How good random faces are: any sampler's faces measured against held-out faces.

A sampler is a callable n -> (n, 3, S, S) images in [0, 1] (the run's decoded prior samples, or anything else:
held-out faces, blurred faces). Its faces and the same number of held-out reference faces are each described in
two feature spaces that exist offline, and compared there:

  classifier   the run's attribute classifier (evaluation/classifier.py), the input of its linear head: the
               flattened last convolutional stage (its own input normalisation (x - 0.5) / 0.25);
  vgg          VGG19 at the run's loss layers (VAE-123's for a pixel-loss run), ImageNet-normalised, not resized;
               each tapped ReLU map averaged over its positions (global average pooling) and the channel means of
               the layers concatenated (64 + 128 + 256 = 448 numbers at VAE-123's layers).

In each space:

  Frechet distance      ||m_r - m_s||^2 + tr(C_r + C_s - 2 (C_r C_s)^(1/2)) between the Gaussians of the two sets
                        of features (Dowson & Landau 1982; FID's formula, Heusel et al. 2017), 0 for equal sets;
  precision, recall     improved precision and recall (Kynkaenniemi et al. 2019), k = 3: the share of samples
                        inside the real faces' manifold (the union of balls around each real face reaching its
                        3rd nearest real neighbour), and the share of real faces inside the samples' manifold.

And by the classifier's verdicts (p > 0.5) on the samples: the share showing each attribute it scores, beside the
share of the reference faces labelled with it; the attribute gap is the mean absolute difference of the two.

FID with the standard Inception network is added where torch-fidelity (the extra dfc_vae[fid]) and its Inception
weights are both on this machine (they are never downloaded here); otherwise one line says it was skipped and why.
torch-fidelity rather than torchmetrics: its Inception port is the reference FID's (TensorFlow's) to the weights,
torchmetrics calls the same one, and it depends on nothing beyond torch, torchvision, numpy, scipy and pillow.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from dfc_vae.model.losses import LOSS_LAYERS, VGGFeatures, VGG_LAYERS
from dfc_vae.util.errors import UserError
from dfc_vae.runs.prior import PRIORS, PRIOR_TITLES, describe_prior, prior_for
from dfc_vae.evaluation.diagnostics import FAKE_ROW_SALT, measure_rows
from dfc_vae.evaluation.figure5 import FIG5_ROWS, prior_ends
from dfc_vae.evaluation.figures import AttributeJudge, InterpolationRow
from dfc_vae.util.tables import markdown_table, percent
from dfc_vae.evaluation.classifier import FOLDER, load_classifier
from dfc_vae.runs.split import FaceSplit

Sampler = Callable[[int], torch.Tensor]  # n -> (n, 3, S, S) images in [0, 1]
K_NEIGHBOURS = 3  # Kynkaenniemi et al. 2019's k
SAMPLE_FACES = 1000  # faces per sampler, and held-out faces, by default (docs/evaluation.md)
BATCH = 256
SPACES = ("classifier", "vgg")
INCEPTION_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's, in torch.hub's checkpoints


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """The Frechet distance between the Gaussians fitted to the rows of a (N, F) and b (M, F) (module doc).

    tr((C_a C_b)^(1/2)) is the sum of the square roots of the eigenvalues of C_a^(1/2) C_b C_a^(1/2) (symmetric),
    or, where F exceeds the faces, the nuclear norm of A B^T / sqrt((N - 1)(M - 1)) for the centred features A, B
    (the nonzero eigenvalues of C_a C_b are the squared singular values of that N x M matrix): both exact."""
    a, b = a.double(), b.double()
    if len(a) < 2 or len(b) < 2:
        raise UserError("a Frechet distance needs at least 2 faces on each side")
    ma, mb = a.mean(0), b.mean(0)
    ca, cb = a - ma, b - mb
    na, nb = len(a) - 1, len(b) - 1
    if a.shape[1] <= max(len(a), len(b)):
        w, v = torch.linalg.eigh(ca.T @ ca / na)
        root = (v * w.clamp_min(0).sqrt()) @ v.T
        cross = torch.linalg.eigvalsh(root @ (cb.T @ cb / nb) @ root).clamp_min(0).sqrt().sum()
    else:
        cross = torch.linalg.svdvals(ca @ cb.T).sum() / (na * nb) ** 0.5
    value = (ma - mb).pow(2).sum() + ca.pow(2).sum() / na + cb.pow(2).sum() / nb - 2 * cross
    return max(0.0, float(value))


def _kth_neighbour_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    """The distance of each row of x to its k-th nearest other row."""
    return torch.cdist(x, x).kthvalue(k + 1, dim=1).values  # the 1st is the row itself, at 0


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = K_NEIGHBOURS) -> tuple[float, float]:
    """Improved precision and recall (Kynkaenniemi et al. 2019) of (M, F) sample features against (N, F) real ones."""
    if len(real) <= k or len(fake) <= k:
        raise UserError(f"precision and recall with k = {k} need more than {k} faces on each side")
    real, fake = real.double(), fake.double()
    inside_real = (torch.cdist(fake, real) <= _kth_neighbour_radius(real, k)[None]).any(1)
    inside_fake = (torch.cdist(real, fake) <= _kth_neighbour_radius(fake, k)[None]).any(1)
    return float(inside_real.double().mean()), float(inside_fake.double().mean())


class Describer:
    """Images -> their features in each space (module doc) and the classifier's probabilities."""

    def __init__(self, classifier, vgg: VGGFeatures, device):
        self.classifier, self.vgg, self.device = classifier, vgg.to(device).eval(), device

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """(N, 3, S, S) in [0, 1] -> ({space: (N, F) float64 on the CPU}, (N, A) probabilities)."""
        model = self.classifier.model.eval()
        head_inputs = []
        hook = model.head.register_forward_hook(lambda module, inputs, output: head_inputs.append(inputs[0]))
        feats, probs, vggs = [], [], []
        try:
            for i in range(0, len(images), BATCH):
                x = images[i:i + BATCH].to(self.device).float().clamp(0, 1)
                probs.append(torch.sigmoid(model(x)).cpu())
                feats.append(head_inputs.pop().double().cpu())
                vggs.append(torch.cat([m.mean((2, 3)) for m in self.vgg(x)], 1).double().cpu())
        finally:
            hook.remove()
        return {"classifier": torch.cat(feats), "vgg": torch.cat(vggs)}, torch.cat(probs)


@dataclass
class SampleScores:
    """One sampler's measures (module doc)."""

    name: str
    faces: int
    frechet: dict[str, float]  # space -> distance
    precision: dict[str, float]
    recall: dict[str, float]
    shares: dict[str, float]  # attribute -> share of samples the classifier says show it
    attribute_gap: float  # mean over the attributes of |share of samples - share of reference faces labelled|
    inception_fid: float | None = None


@dataclass
class Reference:
    """The held-out faces the samplers are measured against, described once."""

    features: dict[str, torch.Tensor]
    labels: dict[str, float]  # attribute -> share of the reference faces labelled with it
    classified: dict[str, float]  # attribute -> share the classifier says show it (its bias, for comparison)
    faces: int
    inception: torch.Tensor | None = None


@dataclass
class SampleQuality:
    """Samplers measured against one reference (a table of SampleScores) and how."""

    reference: Reference
    scores: list[SampleScores] = field(default_factory=list)
    preprocessing: str = ""
    inception_note: str = ""
    attributes: list[str] = field(default_factory=list)


def _shares(probs: torch.Tensor, columns: list[int], names: list[str]) -> dict[str, float]:
    return {n: float((probs[:, c] > 0.5).double().mean()) for n, c in zip(names, columns)}


def inception_extractor(device) -> tuple[Callable | None, str]:
    """torch-fidelity's Inception (2048-d pool features of uint8 images), where it and its weights are on this
    machine; else None and the line saying why FID was skipped."""
    weights = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS
    if importlib.util.find_spec("torch_fidelity") is None:
        return None, 'FID (Inception) skipped: torch-fidelity is not installed (pip install "dfc_vae[fid]")'
    if not weights.is_file():
        return None, (f"FID (Inception) skipped: the Inception weights {INCEPTION_WEIGHTS} are not in {weights.parent} "
                      "(they are never downloaded here; put torch-fidelity's file there)")
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3  # the optional extra `fid`

    net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights))
    net = net.to(device).eval()

    @torch.no_grad()
    def extract(images: torch.Tensor) -> torch.Tensor:  # torch-fidelity resizes to 299 x 299 itself
        return torch.cat([net((images[i:i + BATCH].clamp(0, 1) * 255).round().to(torch.uint8).to(device))[0]
                          .double().cpu() for i in range(0, len(images), BATCH)])

    return extract, "FID (Inception): torch-fidelity's inception-v3-compat, 2048-d pool features, images resized to 299"


def measure_samples(samplers: dict[str, Sampler], reference_images: torch.Tensor, reference_labels, classifier,
                    vgg: VGGFeatures, n: int, device="cpu", attributes: list[str] | None = None,
                    preprocessing: str = "", inception: bool = True) -> SampleQuality:
    """Each sampler's n faces against the (N, 3, S, S) reference faces (module doc). `reference_labels`: a bool
    DataFrame of the reference faces' labels (None: no label shares); `attributes`: those whose shares are
    reported (default: those the classifier scores that the labels have)."""
    if n < K_NEIGHBOURS + 1 or len(reference_images) < K_NEIGHBOURS + 1:
        raise UserError(f"measuring samples needs more than {K_NEIGHBOURS} faces on each side; use more faces")
    describe = Describer(classifier, vgg, device)
    features, probs = describe(reference_images)
    names = attributes if attributes is not None else [
        a for a in classifier.scored() if reference_labels is None or a in reference_labels.columns]
    columns = [classifier.column(a) for a in names]
    labels = ({a: float(reference_labels[a].to_numpy(bool).mean()) for a in names}
              if reference_labels is not None else {})
    extract, note = inception_extractor(device) if inception else (None, "FID (Inception) not asked for")
    reference = Reference(features, labels, _shares(probs, columns, names), len(reference_images),
                          extract(reference_images) if extract else None)
    quality = SampleQuality(reference, preprocessing=preprocessing, inception_note=note, attributes=names)
    for name, sampler in samplers.items():
        images = sampler(n)
        feats, p = describe(images)
        shares = _shares(p, columns, names)
        pr = {space: precision_recall(features[space], feats[space]) for space in SPACES}
        gap = float(np.mean([abs(shares[a] - labels.get(a, reference.classified[a])) for a in names])) if names else float("nan")
        quality.scores.append(SampleScores(
            name, len(images), {s: frechet_distance(features[s], feats[s]) for s in SPACES},
            {s: pr[s][0] for s in SPACES}, {s: pr[s][1] for s in SPACES}, shares, gap,
            frechet_distance(reference.inception, extract(images)) if extract else None))
    return quality


# ----------------------------------------------------------------------------- a run's samplers


def decoded(run, draw, seed: int, batch: int = BATCH) -> Sampler:
    """The sampler of a run's decoded latents z = draw(n, generator seeded by `seed`), clamped to [0, 1]."""

    @torch.no_grad()
    def sample(n: int) -> torch.Tensor:
        z = draw(n, torch.Generator().manual_seed(seed))
        return torch.cat([run.model.decode(z[i:i + batch].to(run.device)).float().clamp(0, 1).cpu()
                          for i in range(0, n, batch)])

    return sample


def run_vgg(run, weights: str | None = None) -> VGGFeatures:
    """VGG19 at the run's loss layers (VAE-123's for a pixel-loss run), with the run's weights unless `weights`."""
    layers = LOSS_LAYERS[run.config.loss] or LOSS_LAYERS["vae123"]
    return VGGFeatures(layers, weights or run.config.vgg_weights)


def preprocessing_note(run, vgg: VGGFeatures, classifier_width: int) -> str:
    """The preprocessing these distances depend on, in words (written beside the numbers)."""
    layers = ", ".join(n for n, i in sorted(_taps(vgg).items(), key=lambda t: t[1]))
    return (f"faces at the run's {run.config.image_size}x{run.config.image_size} px and {run.config.crop} crop, floats in "
            "[0, 1] (decoded samples clamped); classifier features: the input of its linear head "
            f"({classifier_width} numbers), after its own normalisation (x - 0.5) / 0.25; VGG19 features "
            f"({vgg.weights_description} weights): ImageNet mean/std normalisation, no resizing, each of {layers} "
            "averaged over its positions and the channel means concatenated")


def _taps(vgg: VGGFeatures) -> dict[str, int]:
    return {n: i for n, i in VGG_LAYERS.items() if i in vgg.taps}


def reference_faces(faces, n: int, seed: int) -> np.ndarray:
    """Up to n cache rows of a FaceSplit (the held-out faces), chosen at random (seeded), ascending."""
    return np.sort(faces.rows[np.random.default_rng([seed, 41]).permutation(len(faces.rows))[:n]])


def prior_samplers(run, prior, seed: int, temperature: float = 1.0) -> dict[str, Sampler]:
    """N(0, I) and, with a fitted prior (runs/prior.py), its Gaussian and its mixture: the run's decoded samples,
    each from its own generator seeded by `seed`."""
    kinds = PRIORS if prior is not None else ("normal",)
    normal = lambda n, g: torch.randn(n, run.config.latent_dim, generator=g) * temperature  # noqa: E731
    return {PRIOR_TITLES[k]: decoded(run, prior.draw(k, temperature) if prior is not None else normal, seed)
            for k in kinds}


def measure_run_samples(run, faces, classifier, prior, n: int = SAMPLE_FACES, seed: int = 0,
                        vgg: VGGFeatures | None = None, inception: bool = True) -> SampleQuality:
    """A run's random faces from each prior against up to n faces of `faces` (a FaceSplit of held-out faces, the
    test split), n of each; `vgg` default: run_vgg(run)."""
    vgg = vgg if vgg is not None else run_vgg(run)
    rows = reference_faces(faces, n, seed)
    labels = faces.labels.iloc[rows] if faces.faces.attribute_names else None
    width = classifier.model.head[-1].in_features
    return measure_samples(prior_samplers(run, prior, seed), faces.images(rows), labels, classifier, vgg, len(rows),
                           run.device, preprocessing=preprocessing_note(run, vgg, width), inception=inception)


def fake_rows_by_prior(run, classifier, prior, n_rows: int = 300, seed: int = 0, steps: int = 11,
                       kinds=None) -> dict[str, object]:
    """Figure 5's fake -> fake rows with their ends drawn from each prior (`kinds`, default all; N(0, I) alone
    without a fitted prior): the same judge and measures, the same generator (the ends of N(0, I) are the figure's
    own at this seed; the fitted Gaussian's, those draws mapped)."""
    judge = AttributeJudge.for_rows(classifier)
    dim = run.config.latent_dim
    out = {}
    for kind in kinds or (PRIORS if prior is not None else ("normal",)):
        draw = prior.draw(kind) if prior is not None else None
        z0, z1 = prior_ends(n_rows, dim, seed, FAKE_ROW_SALT, draw)
        out[PRIOR_TITLES[kind]] = measure_rows(run, judge, z0, z1, steps)
    return out


# ----------------------------------------------------------------------------- tables


def _f(x: float | None, digits: int = 3) -> str:
    return "-" if x is None or x != x else f"{x:.1f}" if abs(x) >= 100 else f"{x:.{digits}f}"


def sample_table_rows(quality: SampleQuality) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the measures' table: one row per sampler."""
    header = ["faces from", "faces", "FD classifier", "precision classifier", "recall classifier", "FD VGG",
              "precision VGG", "recall VGG", "attribute gap"]
    has_fid = any(s.inception_fid is not None for s in quality.scores)
    header += ["FID (Inception)"] if has_fid else []
    rows = []
    for s in quality.scores:
        rows.append([s.name, str(s.faces), _f(s.frechet["classifier"], 2), _f(s.precision["classifier"]),
                     _f(s.recall["classifier"]), _f(s.frechet["vgg"], 2), _f(s.precision["vgg"]), _f(s.recall["vgg"]),
                     _f(s.attribute_gap)] + ([_f(s.inception_fid, 2)] if has_fid else []))
    return header, rows


def share_table_rows(quality: SampleQuality) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the attribute shares: one row per attribute, the data's share then each sampler's."""
    ref = quality.reference
    header = ["attribute", "held-out faces (labels)", "held-out faces (classifier)"] + [s.name for s in quality.scores]
    rows = [[a, f"{100 * ref.labels[a]:.1f}%" if a in ref.labels else "-", f"{100 * ref.classified[a]:.1f}%"]
            + [f"{100 * s.shares[a]:.1f}%" for s in quality.scores] for a in quality.attributes]
    return header, rows


def sample_csv(quality: SampleQuality) -> str:
    """samples.csv: one row per sampler, every measure and attribute share."""
    rows = []
    for s in quality.scores:
        row = {"sampler": s.name, "faces": s.faces, "reference_faces": quality.reference.faces}
        for space in SPACES:
            row |= {f"frechet_{space}": s.frechet[space], f"precision_{space}": s.precision[space],
                    f"recall_{space}": s.recall[space]}
        row |= {"attribute_gap": s.attribute_gap, "inception_fid": s.inception_fid}
        row |= {f"share_{a}": v for a, v in s.shares.items()}
        rows.append(row)
    return pd.DataFrame(rows).to_csv(index=False, float_format="%.6g")


def sample_section(quality: SampleQuality, fake_rows: dict | None = None, level: str = "##",
                   picture: str | None = None) -> list[str]:
    """The markdown section of the samples' quality (evaluate's report and the demo's)."""
    ref = quality.reference
    lines = [f"{level} Random faces: sample quality", "",
             f"Each prior's {quality.scores[0].faces if quality.scores else 0} decoded samples against {ref.faces} "
             "held-out (test) faces. FD: Frechet distance of the features' Gaussians (lower is better); precision: "
             "share of samples inside the held-out faces' manifold, recall: share of held-out faces inside the "
             f"samples' (Kynkaenniemi et al. 2019, k = {K_NEIGHBOURS}; higher is better); attribute gap: mean over "
             "the scored attributes of |share of samples the classifier says show it - share of held-out faces "
             "labelled with it| (lower is better).", ""]
    lines += markdown_table(*sample_table_rows(quality)) + [""]
    lines += [f"Preprocessing: {quality.preprocessing}.", ""] if quality.preprocessing else []
    lines += [f"{quality.inception_note}.", ""]
    if quality.attributes:
        lines += ["Share of faces showing each attribute the classifier scores:", ""]
        lines += markdown_table(*share_table_rows(quality)) + [""]
    if fake_rows:
        lines += ["Figure 5's fake -> fake rows with their ends drawn from each prior (the same judge and tolerance; "
                  "rows whose scores change):", ""]
        lines += markdown_table(["ends of the rows", "monotone (rows)"],
                                [[name, f"{percent(r.monotone)} ({r.rows_with_changing_scores})"]
                                 for name, r in fake_rows.items()]) + [""]
    if picture:
        lines += [f"![random faces from each prior]({picture})", ""]
    return lines


def fig5_rows_with_prior(prior, kind: str):
    """Figure 5's row kinds with the fake -> fake rows' ends drawn from `kind` of the fitted `prior` (the same place
    in the figure, so the same generator as the N(0, I) rows at a seed)."""
    if kind == "normal":
        return FIG5_ROWS
    return tuple(InterpolationRow(f"fake -> fake (z ~ {PRIOR_TITLES[kind]})", None, None, None, prior.draw(kind))
                 if row.left is None else row for row in FIG5_ROWS)


# ----------------------------------------------------------------------------- faces drawn to order


def run_classifier(run):
    """The attribute classifier kept with a run or an export (RUN/classifier/), or None where none was trained."""
    return load_classifier(run.path, run.device) if (Path(run.path) / FOLDER / "classifier.json").is_file() else None


@torch.no_grad()
def request_scores(run, classifier, z: torch.Tensor, where: dict[str, bool]) -> list[str]:
    """One line per requested attribute: how many of the faces decoded from z the classifier says match it."""
    images = decoded(run, lambda n, g: z, 0)(len(z))
    probs = classifier.predict(images)
    trusted = classifier.scored()
    lines = []
    for name, value in where.items():
        if name not in classifier.names:
            lines.append(f"  {name}={int(value)}: the classifier does not predict it")
            continue
        p = probs[:, classifier.column(name)]
        hits = int(((p > 0.5) == value).sum())
        note = "" if name in trusted else " (the classifier is not trusted on it: a rough verdict)"
        lines.append(f"  {name}={int(value)}: {hits}/{len(z)} drawn faces match by the classifier "
                     f"(mean p({name}) {float(p.mean()):.2f}){note}")
    return lines


def evaluate_samples(run, faces, vgg: VGGFeatures, n: int = SAMPLE_FACES, seed: int = 0, cache_dir=None,
                     progress: bool = False) -> tuple[list[str], str | None, dict]:
    """`dfc-vae evaluate`'s part: each prior's random faces against the test split, with the classifier kept with
    the run (none: a line saying how to train one) and its fitted prior (fitted now where it has none). Returns
    the report's section, samples.csv (None where nothing was measured) and the summary's numbers."""
    clf = run_classifier(run)
    if n == 0 or clf is None:
        why = ("`--samples 0`" if n == 0 else "no attribute classifier is kept with the model (`dfc-vae attributes "
               "--run RUN --classifier` trains one)")
        return ["## Random faces: sample quality", "", f"Not measured: {why}.", ""], None, {}
    prior = prior_for(run, faces, cache_dir, progress=progress)
    test = FaceSplit(faces, "test", run.config.image_size, run.config.crop, cache_dir, progress, run=run)
    quality = measure_run_samples(run, test, clf, prior, n, seed, vgg)
    lines = sample_section(quality) + [f"The fitted prior: {describe_prior(prior)}.", ""]
    summary = {"reference_faces": quality.reference.faces, "preprocessing": quality.preprocessing,
               "inception": quality.inception_note, "samplers": {s.name: asdict(s) for s in quality.scores}}
    return lines, sample_csv(quality), summary
