"""The paper's Figure 5 (linear interpolation) and Figure 6 (attribute arithmetic), drawn and measured.

Each row kind of a figure is run on many test faces (n_faces, chosen by their labels,
deterministically per seed); the first n_show of them are drawn. Every decoded cell is scored by
the run's attribute classifier (dfc_vae.classifier), only on the attributes it predicts well, and
the scores go to a CSV beside the PNG. The summary measures are:

* flip rate (Fig. 6, +attribute rows on faces labelled without it; -attribute rows on faces with it):
  the share of faces whose decoded image at the largest alpha is predicted to have (not have) it;
* others changed (every Fig. 6 row): the share of faces for which ANY other scored attribute's
  predicted label differs between alpha = 0 (the reconstruction) and the largest alpha; the
  largest single-attribute share is reported too;
* monotone (Fig. 5 rows): the share of rows along which the scores that change move monotonically
  from one end to the other, allowing wiggles of at most MONOTONE_TOL (classifier noise on
  near-identical neighbouring cells). The scores that change are those of the scored attributes
  whose predicted label differs between the two ends, plus the row's own attribute (Smiling,
  Eyeglasses, Male) on data rows; rows where no label changes are left out. Reported too: the
  share for the own attribute alone, and the stricter share where EVERY scored attribute's
  probability is monotone (also those that stay on one side of 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .celeba import ATTRIBUTE_NAMES
from .data import to_tensor
from .faces import encode_rows, open_faces_for_run
from .errors import UserError
from .fileio import write_json, write_text
from .images import grid, provenance, save_png, to_uint8
from .latent import default_alphas, interpolate, walk

MONOTONE_TOL = 0.05


@dataclass(frozen=True)
class InterpolationRow:
    """A Fig. 5 row kind: faces matching `left` -> faces matching `right` (None: z ~ N(0, I))."""

    name: str
    left: dict | None
    right: dict | None
    attribute: str | None  # the attribute that differs between the ends, if any


@dataclass(frozen=True)
class EditRow:
    """A Fig. 6 row kind: z + sign * alpha * v[attribute] on faces matching `faces`."""

    name: str
    attribute: str
    sign: int
    faces: dict


FIG5_ROWS = (
    InterpolationRow("non-smiling woman -> smiling woman", {"Male": False, "Smiling": False},
                     {"Male": False, "Smiling": True}, "Smiling"),
    InterpolationRow("man without eyeglasses -> man with eyeglasses", {"Male": True, "Eyeglasses": False},
                     {"Male": True, "Eyeglasses": True}, "Eyeglasses"),
    InterpolationRow("man -> woman", {"Male": True}, {"Male": False}, "Male"),
    InterpolationRow("fake -> fake (z ~ N(0, I))", None, None, None),
)
FIG6_ROWS = (
    EditRow("+Smiling", "Smiling", +1, {"Smiling": False}),
    EditRow("-Smiling", "Smiling", -1, {"Smiling": True}),
    EditRow("+Eyeglasses on a man", "Eyeglasses", +1, {"Male": True, "Eyeglasses": False}),
    EditRow("+Eyeglasses on a woman", "Eyeglasses", +1, {"Male": False, "Eyeglasses": False}),
    EditRow("-Eyeglasses", "Eyeglasses", -1, {"Eyeglasses": True}),
)


def parse_edit(spec: str, valid=ATTRIBUTE_NAMES) -> EditRow:
    """'+Smiling', '-Eyeglasses', '+Eyeglasses:Male', '+Eyeglasses:~Male' -> an EditRow on faces
    without (for +) or with (for -) the attribute, optionally also with (Name) / without (~Name)
    other attributes, checked against `valid`: the attribute names the data has (default CelebA's 40)."""
    head, *conds = spec.split(":")
    if len(head) < 2 or head[0] not in "+-":
        raise UserError(f"edit '{spec}' should look like +Smiling, -Eyeglasses or +Eyeglasses:~Male")
    sign, attr = (1 if head[0] == "+" else -1), head[1:]
    faces = {attr: sign < 0}
    for c in conds:
        faces[c.lstrip("~")] = not c.startswith("~")
    unknown = [n for n in faces if n not in valid]
    if unknown:
        raise UserError(f"unknown attribute '{unknown[0]}' in edit '{spec}'; the data has: {', '.join(valid)}")
    return EditRow(spec, attr, sign, faces)


# ----------------------------------------------------------------------------- faces and scoring


class _Faces:
    """The faces of one split of a FaceSet as the run sees them (its cache: size and crop), and their labels."""

    def __init__(self, run, data, split: str = "test", cache_dir=None, progress: bool = True, needs=()):
        self.run = run
        self.set = open_faces_for_run(run, data)
        self.set.check_attributes(needs)
        self.ann = self.set.labels
        cfg = run.config
        self.cache = self.set.cache(cfg.image_size, cfg.crop, cache_dir or cfg.cache_dir, None, progress)
        self.pool = self.set.indices(split)
        if len(self.pool) == 0:
            raise UserError(f"the {split} split of {self.set.root} is empty; choose another split")
        self.split = split

    def select(self, conditions: dict, n: int, seed: int, salt: int) -> np.ndarray:
        """Up to n cache rows of the split whose labels match `conditions`, in a seeded random order."""
        mask = np.ones(len(self.pool), bool)
        for name, value in conditions.items():
            mask &= self.ann[name].to_numpy()[self.pool] == bool(value)
        rows = self.pool[mask]
        rng = np.random.default_rng([seed, salt])
        return rows[rng.permutation(len(rows))[:n]]

    def by_id(self, image_id: str) -> int:
        try:
            return int(self.ann.index.get_loc(image_id))
        except KeyError:
            raise UserError(f"image id {image_id} is not in {self.set.root}; give a name such as "
                            f"{self.ann.index[self.pool[0]]}") from None

    def images(self, rows: np.ndarray) -> torch.Tensor:
        """(B, 3, S, S) floats in [0, 1]."""
        order = np.argsort(rows)  # read the memory map in file order
        x = to_tensor(self.cache.images[rows[order]])
        return x[torch.from_numpy(np.argsort(order))]

    def posterior(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, D) posterior means and (B, D) log-variances, eval mode, on the CPU."""
        return encode_rows(self.run.model, self.cache.images, rows, self.run.device, batch_size=256)

    def encode(self, rows: np.ndarray) -> torch.Tensor:
        """(B, D) posterior means, eval mode."""
        return self.posterior(rows)[0]

    def ids(self, rows: np.ndarray) -> list[str]:
        return [str(self.ann.index[r]) for r in rows]


@torch.no_grad()
def _decode_and_score(run, z: torch.Tensor, classifier, columns: list[int], keep: int):
    """Decode (B, K, D) latents; returns probabilities (B, K, len(columns)) and the decoded images
    (keep, K, 3, S, S) in [0, 1] of the first `keep` rows."""
    b, k, d = z.shape
    flat = z.reshape(b * k, d)
    probs, kept = [], []
    for i in range(0, b * k, 256):
        img = run.model.decode(flat[i:i + 256].to(run.device)).float().clamp(0, 1).cpu()
        probs.append(classifier.predict(img)[:, columns])
        if i < keep * k:
            kept.append(img)
    probs = torch.cat(probs).view(b, k, len(columns))
    shown = torch.cat(kept)[: keep * k].view(-1, k, *kept[0].shape[1:]) if keep and kept else None
    return probs, shown


def _monotone(p: torch.Tensor, tol: float = MONOTONE_TOL) -> torch.Tensor:
    """p: (B, K) scores along rows -> (B,) bool: non-decreasing, or non-increasing, within tol."""
    d = p[:, 1:] - p[:, :-1]
    return (d >= -tol).all(1) | (d <= tol).all(1)


def _prior_ends(n: int, dim: int, seed: int, salt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The two ends of n fake -> fake rows, z ~ N(0, I), deterministic per (seed, salt)."""
    g = torch.Generator().manual_seed(seed * 1000 + salt)
    return torch.randn(n, dim, generator=g), torch.randn(n, dim, generator=g)


def interpolation_measures(probs: torch.Tensor, scored: list[str], trusted: list[str], attribute: str | None = None) -> dict:
    """The Fig. 5 measures (module docstring) of B rows of scores, probs (B, K, len(scored))."""
    good = [scored.index(n) for n in trusted]
    per_attr = _monotone(probs.permute(0, 2, 1).reshape(-1, probs.shape[1])).view(len(probs), -1)  # (B, A)
    pred = probs > 0.5
    # the scores that change along a row: attributes whose predicted label differs at the ends,
    # and the row's own attribute; rows where nothing changes are left out of this share
    moving = pred[:, 0] != pred[:, -1]
    if attribute:
        moving[:, scored.index(attribute)] = True
    moving[:, [i for i in range(len(scored)) if i not in good and scored[i] != attribute]] = False
    has_moving = moving.any(1)
    mono_moving = (per_attr | ~moving).all(1)
    failing = (moving & ~per_attr).sum(0)
    info = {"faces": int(len(probs)),
            "monotone": float(mono_moving[has_moving].float().mean()) if has_moving.any() else float("nan"),
            "rows_with_changing_scores": int(has_moving.sum()),
            "monotone_all_attributes": float(per_attr[:, good].all(1).float().mean()),
            "failing_scores": {scored[i]: int(failing[i]) for i in failing.argsort(descending=True).tolist()
                               if failing[i]}}
    if attribute:
        t = scored.index(attribute)
        info["monotone_own_attribute"] = float(per_attr[:, t].float().mean())
        info["own_attribute"] = attribute
        info["classifier_trusted"] = attribute in trusted
    return info


@dataclass
class FigureResult:
    png: Path | None
    csv: Path | None
    summary: dict
    table: pd.DataFrame = field(repr=False, default=None)


def _table(fig: str, row_name: str, ids_left: list[str], ids_right: list[str] | None, alphas, probs, names) -> pd.DataFrame:
    b, k, _ = probs.shape
    df = pd.DataFrame(probs.reshape(b * k, -1).numpy(), columns=[f"p_{n}" for n in names])
    df.insert(0, "figure", fig)
    df.insert(1, "row", row_name)
    df.insert(2, "face", np.repeat(np.arange(b), k))
    df.insert(3, "image", np.repeat(ids_left, k))
    df.insert(4, "image_right", np.repeat(ids_right, k) if ids_right is not None else "")
    df.insert(5, "alpha", np.tile(np.asarray(alphas, dtype=float), b).round(4))
    return df


def _columns(classifier, wanted: list[str]) -> list[str]:
    """The attributes to score: those the classifier predicts well, plus the rows' own attributes
    (scored even when it does not, so the figure can still be drawn; their verdicts are flagged)."""
    scored = classifier.scored()
    return [n for n in classifier.names if n in scored or n in wanted]


# ----------------------------------------------------------------------------- Figure 5


def figure5(run, data, classifier, out: str | Path | None = None, n_faces: int = 200, n_show: int = 1, seed: int = 0,
            steps: int = 11, method: str = "linear", endpoints: dict[str, tuple[str, str]] | None = None,
            split: str = "test", cache_dir=None, progress: bool = True, rows=FIG5_ROWS) -> FigureResult:
    """Rows of interpolations (1 - a) z_left + a z_right, a = 0, 1/(steps-1), ..., 1 (the paper's Fig. 5).

    Data rows: n_faces (left, right) pairs of test faces drawn by their labels; the drawn rows stand
    the real input images at both ends. `endpoints` maps a row's name (or its attribute, e.g. 'Smiling')
    to image ids (left, right) for its first drawn row. Writes out (PNG) and out.csv (scores of every
    cell) when `out` is given; returns the summary.
    """
    faces = _Faces(run, data, split, cache_dir, progress,
                   needs=[n for r in rows for ends in (r.left, r.right) if ends for n in ends])
    scored = _columns(classifier, [r.attribute for r in rows if r.attribute])
    trusted = classifier.scored()
    cols = [classifier.column(n) for n in scored]
    alphas = default_alphas(steps)
    size = run.config.image_size
    blank = np.full((size, size, 3), 255, np.uint8)
    cells, tables, summary = [], [], {"rows": {}, "method": method, "alphas": [round(float(a), 4) for a in alphas],
                                      "scored_attributes": trusted, "monotone_tolerance": MONOTONE_TOL}
    endpoints = endpoints or {}
    for salt, row in enumerate(rows):
        if row.left is None:  # fake -> fake: both ends from the prior
            z0, z1 = _prior_ends(n_faces, run.config.latent_dim, seed, salt)
            left_ids = [f"z{i}a" for i in range(n_faces)]
            right_ids = [f"z{i}b" for i in range(n_faces)]
            ends = None
        else:
            left = faces.select(row.left, n_faces, seed, 2 * salt)
            right = faces.select(row.right, n_faces, seed, 2 * salt + 1)
            pick = endpoints.get(row.name) or endpoints.get(row.attribute)
            if pick:
                left = np.r_[faces.by_id(pick[0]), left][:n_faces]
                right = np.r_[faces.by_id(pick[1]), right][:n_faces]
            m = min(len(left), len(right))
            if m == 0:  # e.g. a tiny test split without eyeglasses: nothing to draw or measure
                summary["rows"][row.name] = {"faces": 0}
                continue
            left, right = left[:m], right[:m]
            z0, z1 = faces.encode(left).cpu(), faces.encode(right).cpu()
            left_ids, right_ids = faces.ids(left), faces.ids(right)
            ends = (to_uint8(faces.images(left[:n_show])), to_uint8(faces.images(right[:n_show])))
        z = interpolate(z0, z1, alphas, method)  # (B, K, D)
        probs, shown = _decode_and_score(run, z, classifier, cols, n_show)
        tables.append(_table("fig5", row.name, left_ids, right_ids, alphas, probs, scored))
        summary["rows"][row.name] = interpolation_measures(probs, scored, trusted, row.attribute)
        for i in range(min(n_show, len(z))):
            decoded = to_uint8(shown[i])
            lcell, rcell = (ends[0][i], ends[1][i]) if ends else (blank, blank)
            cells.append(np.concatenate([lcell[None], decoded, rcell[None]]))
    measured = [r for r in summary["rows"].values() if r["faces"]]
    changing = [r for r in measured if r["rows_with_changing_scores"]]
    summary["monotone_rows"] = (sum(r["rows_with_changing_scores"] * r["monotone"] for r in changing)
                                / max(1, sum(r["rows_with_changing_scores"] for r in changing)))
    summary["monotone_rows_all_attributes"] = (sum(r["faces"] * r["monotone_all_attributes"] for r in measured)
                                               / max(1, sum(r["faces"] for r in measured)))
    data_rows = [r for r in measured if "monotone_own_attribute" in r]
    if data_rows:
        summary["monotone_rows_own_attribute"] = (sum(r["faces"] * r["monotone_own_attribute"] for r in data_rows)
                                                  / sum(r["faces"] for r in data_rows))
    title = f"Fig. 5 ({method} interpolation, alpha = 0 ... 1 in {steps} steps; real inputs at the ends of data rows), rows:"
    return _finish(run, faces, out, title, [r.name for r in rows], n_show, cells, tables, summary)


# ----------------------------------------------------------------------------- the prior gap


def aggregate_posterior(mu: torch.Tensor, logvar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance of the aggregate posterior, the equal mixture of the faces' posteriors
    N(mu_i, diag exp(logvar_i)): E[mu] and Cov(mu) (over the faces) + the mean of the variances."""
    mean = mu.mean(0)
    centred = mu - mean
    return mean, centred.T @ centred / len(mu) + torch.diag(logvar.exp().mean(0))


def prior_gap(run, data, classifier, n_faces: int = 300, fit_faces: int = 4000, seed: int = 0, steps: int = 11,
              split: str = "train", cache_dir=None, progress: bool = True) -> dict:
    """Fig. 5's fake -> fake measure with the rows' ends drawn four ways, from the prior to where the
    encoder puts faces: z ~ N(0, I) (the same ends as figure5's fake rows at this seed); the Gaussian
    fitted to the aggregate posterior of `fit_faces` faces of `split` (the same normal draws, mapped);
    posterior samples, and posterior means, of random faces of `split`. Where the last rows score far
    above the first, fake rows fail because prior samples land where the encoder puts no faces (the
    'prior hole' problem), not because of the interpolation or of the decoder on faces."""
    if n_faces < 1 or fit_faces < 2:
        raise UserError(f"need at least 1 row and 2 fitted faces (got {n_faces} and {fit_faces})")
    faces = _Faces(run, data, split, cache_dir, progress)
    scored = _columns(classifier, [])
    cols = [classifier.column(n) for n in scored]
    fit = np.sort(faces.pool[np.random.default_rng([seed, 7]).permutation(len(faces.pool))[:fit_faces]])
    mu, logvar = (t.cpu() for t in faces.posterior(fit))
    mean, cov = aggregate_posterior(mu, logvar)
    d = run.config.latent_dim
    p0, p1 = _prior_ends(n_faces, d, seed, next(i for i, r in enumerate(FIG5_ROWS) if r.left is None))
    root = torch.linalg.cholesky(cov)
    g = torch.Generator().manual_seed(seed * 1000 + 99)
    i0, i1 = torch.randint(len(mu), (n_faces,), generator=g), torch.randint(len(mu), (n_faces,), generator=g)
    sample = lambda i: mu[i] + (0.5 * logvar[i]).exp() * torch.randn(len(i), d, generator=g)  # noqa: E731
    ends = {"N(0, I) (the figure's fake -> fake rows)": (p0, p1),
            "Gaussian fitted to the aggregate posterior": (mean + p0 @ root.T, mean + p1 @ root.T),
            "posterior samples of random faces": (sample(i0), sample(i1)),
            "posterior means of random faces": (mu[i0], mu[i1])}
    sources = {}
    for name, (z0, z1) in ends.items():
        probs, _ = _decode_and_score(run, interpolate(z0, z1, default_alphas(steps)), classifier, cols, 0)
        sources[name] = interpolation_measures(probs, scored, classifier.scored()) | {
            "mean_norm_of_ends": round(float(torch.cat([z0, z1]).norm(dim=1).mean()), 3)}
    eig = torch.linalg.eigvalsh(cov)
    moment = cov.diagonal() + mean ** 2  # E[z_j^2] per latent dimension; 1 under N(0, I)
    return {"sources": sources, "split": split, "fit_faces": len(fit), "seed": seed, "scored_attributes": scored,
            "aggregate_posterior": {
                "covariance_eigenvalues": {"min": float(eig[0]), "median": float(eig.median()), "max": float(eig[-1])},
                "second_moment_per_dimension": {"min": float(moment.min()), "median": float(moment.median()),
                                                "max": float(moment.max())},
                "norm_of_mean": float(mean.norm())}}


def script_parser(description: str):
    """An argument parser with the flags both figure scripts share (experiments/fig5_interpolation.py,
    experiments/fig6_arithmetic.py); usage errors are one line and exit status 2, as the CLI's."""
    from .cli import ArgumentParser

    p = ArgumentParser(description=description)
    p.add_argument("--run", required=True, help="run directory made by `dfc-vae train`")
    p.add_argument("--data", help="the faces: CelebA, a labelled folder or synthetic faces (default: the run's data)")
    p.add_argument("--labels", help="labels file of a folder of images (default: DIR/labels.csv, or the run's)")
    p.add_argument("--out", required=True, help="PNG path; .csv and .json are written beside it")
    p.add_argument("--faces", type=int, default=200, help="faces (rows) measured per row kind (default 200)")
    p.add_argument("--show", type=int, default=1, help="rows drawn per row kind (default 1)")
    p.add_argument("--steps", type=int, default=11, help="columns from the first to the last alpha (default 11)")
    p.add_argument("--split", default="test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--cache-dir")
    return p


# ----------------------------------------------------------------------------- Figure 6


def figure6(run, data, vectors, classifier, out: str | Path | None = None, edits=FIG6_ROWS, alphas=None,
            n_faces: int = 200, n_show: int = 1, seed: int = 0, faces_by_id: dict[str, str] | None = None,
            split: str = "test", cache_dir=None, progress: bool = True) -> FigureResult:
    """Rows z + sign * a * v_attribute for a in `alphas` (default 0, 0.1, ..., 1: the paper's Fig. 6)
    on n_faces test faces per row kind, chosen by their labels; each drawn row starts with the
    input image. `vectors` is an AttributeVectors; `faces_by_id` maps a row name to an image id
    for its first drawn row. Writes out (PNG) and out.csv when `out` is given; returns the summary.
    """
    faces = _Faces(run, data, split, cache_dir, progress, needs=[n for e in edits for n in e.faces])
    scored = _columns(classifier, [e.attribute for e in edits])
    trusted = classifier.scored()
    cols = [classifier.column(n) for n in scored]
    alphas = default_alphas() if alphas is None else torch.as_tensor(alphas, dtype=torch.float32)
    summary = {"rows": {}, "alphas": [round(float(a), 4) for a in alphas], "scored_attributes": trusted,
               "vectors": vectors.meta}
    cells, tables = [], []
    faces_by_id = faces_by_id or {}
    for salt, edit in enumerate(edits):
        rows = faces.select(edit.faces, n_faces, seed, 100 + salt)
        if edit.name in faces_by_id:
            rows = np.r_[faces.by_id(faces_by_id[edit.name]), rows][:n_faces]
        if len(rows) == 0:  # e.g. a tiny test split without eyeglasses: nothing to draw or measure
            summary["rows"][edit.name] = {"faces": 0, "attribute": edit.attribute, "sign": edit.sign}
            continue
        z = walk(faces.encode(rows).cpu(), edit.sign * vectors.vector(edit.attribute), alphas)  # (B, K, D)
        probs, shown = _decode_and_score(run, z, classifier, cols, n_show)
        tables.append(_table("fig6", edit.name, faces.ids(rows), None, alphas, probs, scored))
        summary["rows"][edit.name] = edit_measures(probs, scored, edit.attribute, edit.sign, trusted)
        inputs = to_uint8(faces.images(rows[:n_show]))
        for i in range(min(n_show, len(rows))):
            cells.append(np.concatenate([inputs[i][None], to_uint8(shown[i])]))
    title = f"Fig. 6: input, then z + alpha * v_attribute for alpha = {summary['alphas'][0]:g} ... {summary['alphas'][-1]:g}, rows:"
    return _finish(run, faces, out, title, [e.name for e in edits], n_show, cells, tables, summary)


def edit_measures(probs: torch.Tensor, names: list[str], attribute: str, sign: int, trusted=None) -> dict:
    """Summary of one edit row kind. probs: (B, K, A) classifier probabilities of B faces along K
    alphas (first: alpha = 0, the reconstruction; last: the largest alpha) for attributes `names`.

    flip_rate: share of faces predicted to have (sign +1) / not have (sign -1) `attribute` at the
    last alpha; at_start: the same share at alpha = 0; others_changed: share of faces for which any
    other attribute's predicted label differs between the first and last alpha; others_changed_max:
    the largest such share for a single other attribute, and which one. Only attributes in
    `trusted` (default: all of `names`) count as others; classifier_trusted says whether
    `attribute` itself is among them.
    """
    trusted = names if trusted is None else trusted
    t = names.index(attribute)
    pred = probs > 0.5
    want = pred[:, :, t] if sign > 0 else ~pred[:, :, t]
    others = [i for i, n in enumerate(names) if i != t and n in trusted]
    changed = pred[:, -1, others] != pred[:, 0, others]  # (B, A-1)
    per_attr = changed.float().mean(0)
    worst = int(per_attr.argmax()) if others else 0
    return {"faces": int(probs.shape[0]), "attribute": attribute, "sign": sign, "classifier_trusted": attribute in trusted,
            "flip_rate": float(want[:, -1].float().mean()), "at_start": float(want[:, 0].float().mean()),
            "others_changed": float(changed.any(1).float().mean()) if others else 0.0,
            "others_changed_max": float(per_attr.max()) if others else 0.0,
            "others_changed_max_attribute": names[others[worst]] if others else ""}


# ----------------------------------------------------------------------------- shared


def measure_edits(run, data, vectors, classifier, n_faces: int = 200, alphas=None, seed: int = 0,
                  method: str = "linear", cache_dir=None, progress: bool = False) -> dict:
    """The summary numbers of Figs. 5 and 6 for one run, without drawing anything.

    run: a dfc_vae.run.LoadedRun; data: the dataset folder (its test split is used); vectors: an
    AttributeVectors of that run (dfc_vae.attributes); classifier: an AttributeClassifier
    (dfc_vae.classifier; e.g. classifier_for_run(run, data)); n_faces: faces per row kind.

    Returns a flat dict of floats in [0, 1] (higher is better for flip/monotone, lower for changed):
      'flip_Smiling', 'flip_Eyeglasses': share of faces labelled without the attribute whose
          decoded +attribute edit at alpha = max is predicted to have it (Eyeglasses: men and women
          pooled);
      'others_changed_max_edit': over the five Fig. 6 edits, the largest share of faces for which
          any other scored attribute changes predicted label;
      'monotone_rows': share of Fig. 5 rows (all four kinds pooled) whose changing scores move
          monotonically (within MONOTONE_TOL; see the module docstring);
    plus 'fig5' and 'fig6': the full per-row summaries (see figure5 / figure6).
    """
    f5 = figure5(run, data, classifier, None, n_faces=n_faces, seed=seed, method=method, cache_dir=cache_dir,
                 progress=progress).summary
    f6 = figure6(run, data, vectors, classifier, None, alphas=alphas, n_faces=n_faces, seed=seed, cache_dir=cache_dir,
                 progress=progress).summary
    return {**headline(f5, f6), "fig5": f5, "fig6": f6}


def headline(f5: dict, f6: dict) -> dict:
    """The demo's target numbers from the summaries of figure5 and figure6."""
    out = {}
    for attr in ("Smiling", "Eyeglasses"):
        rows = [r for r in f6["rows"].values() if r["attribute"] == attr and r["sign"] > 0 and r["faces"]]
        if rows:
            out[f"flip_{attr}"] = sum(r["faces"] * r["flip_rate"] for r in rows) / sum(r["faces"] for r in rows)
            out[f"faces_{attr}"] = sum(r["faces"] for r in rows)
            out[f"trusted_{attr}"] = all(r["classifier_trusted"] for r in rows)
    out["others_changed_max_edit"] = max((r["others_changed"] for r in f6["rows"].values() if r["faces"]), default=0.0)
    out["monotone_rows"] = f5["monotone_rows"]
    return out


def compose(cells: list[np.ndarray], pad: int = 2) -> np.ndarray:
    """Rows of equal length (each (C, S, S, 3) uint8) -> one grid image
    (R * (S + pad) + pad, C * (S + pad) + pad, 3)."""
    if not cells:
        raise UserError("nothing to draw: no rows")
    ncol = cells[0].shape[0]
    return grid(np.concatenate(cells), ncol, pad)


def _caption(run, faces: _Faces) -> list[str]:
    return provenance(faces.set.synthetic is not None, run.meta.get("vgg_weights", "")) + [
        f"{faces.set.description}, {faces.split} split; model {Path(run.path).name} step {run.step}"]


def _finish(run, faces, out, title: str, row_names: list[str], n_show: int, cells, tables, summary) -> FigureResult:
    """A figure's result; with `out`, also its PNG (captioned with the rows drawn), CSV and JSON."""
    result = FigureResult(None, None, summary, pd.concat(tables, ignore_index=True))
    if out is not None:
        drawn = [f"  {name}" for name in row_names for _ in range(min(n_show, summary["rows"][name]["faces"]))]
        result.png, result.csv = _write(out, compose(cells), _caption(run, faces) + [title] + drawn, result.table, summary)
    return result


def _write(out, image: np.ndarray, caption: list[str], table: pd.DataFrame, summary: dict):
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise UserError(f"--out {out} should end in .png")
    csv_path, json_path = out.with_suffix(".csv"), out.with_suffix(".json")
    write_text(csv_path, table.to_csv(index=False, float_format="%.4f"))
    write_json(json_path, summary)
    save_png(out, image, caption, {"summary": json_path.name})
    return out, csv_path
