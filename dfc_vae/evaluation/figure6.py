"""The paper's Figure 6, measured: attribute vector arithmetic z + alpha * v on faces chosen by their
labels, each cell scored by the attribute classifier, and the demo's headline numbers drawn from Figures 5 and 6.

Its measures:

* flip rate (+attribute rows on faces labelled without it; -attribute rows on faces with it):
  the share of faces whose decoded image at the largest alpha is predicted to have (not have) it;
* others changed (every row): the share of faces for which ANY other scored attribute's
  predicted label differs between alpha = 0 (the reconstruction) and the largest alpha; the
  largest single-attribute share is reported too.

What both figures share (the row kinds, the typed results, the judge, the sheet) is in dfc_vae.evaluation.figures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dfc_vae.data.celeba import ATTRIBUTE_NAMES
from dfc_vae.editing.latent import default_alphas, walk
from dfc_vae.evaluation.figure5 import figure5
from dfc_vae.evaluation.figures import (AttributeJudge, EditMeasures, EditRow, EditRowCount, Figure5Summary,
                                        Figure6Summary, FigureResult, Headline, MeasuredEdits, _rounded, _Sheet)
from dfc_vae.runs.split import FaceSplit
from dfc_vae.util.errors import UserError, check_names
from dfc_vae.util.images import to_uint8

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
    check_names(faces, valid, where=f" in edit '{spec}'", listing="the data has")
    return EditRow(spec, attr, sign, faces)


def figure6(run, data, vectors, classifier, out: str | Path | None = None, edits=FIG6_ROWS, alphas=None,
            n_faces: int = 200, n_show: int = 1, seed: int = 0, faces_by_id: dict[str, str] | None = None,
            split: str = "test", cache_dir=None, progress: bool = True) -> FigureResult:
    """Rows z + sign * a * v_attribute for a in `alphas` (default 0, 0.1, ..., 1: the paper's Fig. 6)
    on n_faces test faces per row kind, chosen by their labels; each drawn row starts with the
    input image. `vectors` is an AttributeVectors; `faces_by_id` maps a row name to an image id
    for its first drawn row. Writes out (PNG) and out.csv when `out` is given; returns the summary.
    """
    faces = FaceSplit.of_run(run, data, split, cache_dir, progress, needs=[n for e in edits for n in e.labels_needed])
    judge = AttributeJudge.for_rows(classifier, [e.attribute for e in edits])
    alphas = default_alphas() if alphas is None else torch.as_tensor(alphas, dtype=torch.float32)
    sheet = _Sheet("fig6", faces, judge, alphas, n_show)
    measured = {}
    faces_by_id = faces_by_id or {}
    for salt, edit in enumerate(edits):
        rows = faces.select(edit.faces, n_faces, seed, 100 + salt)
        if edit.name in faces_by_id:
            rows = np.r_[faces.by_id(faces_by_id[edit.name]), rows][:n_faces]
        if len(rows) == 0 or edit.attribute in vectors.constant:  # e.g. a tiny test split without eyeglasses, or
            # labels all one value (no vector to add): nothing to draw or measure
            measured[edit.name] = EditRowCount(0, edit.attribute, edit.sign)
            continue
        z = walk(faces.encode(rows, batch_size=256)[0], edit.sign * vectors.vector(edit.attribute), alphas)  # (B, K, D)
        probs, shown = sheet.decode_and_score(edit.name, z, faces.ids(rows))
        measured[edit.name] = edit_measures(probs, judge.scored, edit.attribute, edit.sign, judge.trusted)
        inputs = to_uint8(faces.images(rows[:n_show]))
        sheet.draw([np.concatenate([inputs[i][None], to_uint8(shown[i])]) for i in range(min(n_show, len(rows)))])
    summary = Figure6Summary(measured, _rounded(alphas), judge.trusted, vectors.meta)
    title = (f"Fig. 6: input, then z + alpha * v_attribute (vectors of step {vectors.meta.get('step', '?')}) for "
             f"alpha = {summary.alphas[0]:g} ... {summary.alphas[-1]:g}, rows:")
    return sheet.finish(out, title, [e.name for e in edits], summary, ends=("input", None))


def edit_measures(probs: torch.Tensor, names: list[str], attribute: str, sign: int, trusted=None) -> EditMeasures:
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
    return EditMeasures(faces=int(probs.shape[0]), attribute=attribute, sign=sign, classifier_trusted=attribute in trusted,
                        flip_rate=float(want[:, -1].float().mean()), at_start=float(want[:, 0].float().mean()),
                        others_changed=float(changed.any(1).float().mean()) if others else 0.0,
                        others_changed_max=float(per_attr.max()) if others else 0.0,
                        others_changed_max_attribute=names[others[worst]] if others else "")


# ----------------------------------------------------------------------------- both figures' numbers


def measure_edits(run, data, vectors, classifier, n_faces: int = 200, alphas=None, seed: int = 0,
                  method: str = "linear", cache_dir=None, progress: bool = False) -> MeasuredEdits:
    """The summary numbers of Figs. 5 and 6 for one run, without drawing anything.

    run: a dfc_vae.runs.run.LoadedRun; data: the dataset folder (its test split is used); vectors: an
    AttributeVectors of that run (dfc_vae.editing.attributes); classifier: an AttributeClassifier
    (dfc_vae.evaluation.classifier; e.g. classifier_for_run(run, data)); n_faces: faces per row kind.

    Returns the headline numbers, floats in [0, 1] (higher is better for flip/monotone, lower for changed):
      flip_Smiling, flip_Eyeglasses: share of faces labelled without the attribute whose
          decoded +attribute edit at alpha = max is predicted to have it (Eyeglasses: men and women
          pooled);
      others_changed_max_edit: over the five Fig. 6 edits, the largest share of faces for which
          any other scored attribute changes predicted label;
      monotone_rows: share of Fig. 5 rows (all four kinds pooled) whose changing scores move
          monotonically (within MONOTONE_TOL; see dfc_vae.evaluation.figure5);
    plus fig5 and fig6: the full per-row summaries (see figure5 / figure6).
    """
    f5 = figure5(run, data, classifier, None, n_faces=n_faces, seed=seed, method=method, cache_dir=cache_dir,
                 progress=progress).summary
    f6 = figure6(run, data, vectors, classifier, None, alphas=alphas, n_faces=n_faces, seed=seed, cache_dir=cache_dir,
                 progress=progress).summary
    return MeasuredEdits(**vars(headline(f5, f6)), fig5=f5, fig6=f6)


def headline(f5: Figure5Summary, f6: Figure6Summary) -> Headline:
    """The demo's target numbers from the summaries of figure5 and figure6."""
    flips = {}
    for attr in ("Smiling", "Eyeglasses"):
        rows = [r for r in f6.rows.values() if r.attribute == attr and r.sign > 0 and r.faces]
        if rows:
            flips[f"flip_{attr}"] = sum(r.faces * r.flip_rate for r in rows) / sum(r.faces for r in rows)
            flips[f"faces_{attr}"] = sum(r.faces for r in rows)
            flips[f"trusted_{attr}"] = all(r.classifier_trusted for r in rows)
    worst = max((r.others_changed for r in f6.rows.values() if r.faces), default=0.0)
    return Headline(**flips, others_changed_max_edit=worst, monotone_rows=f5.monotone_rows)
