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

The summaries are dataclasses whose fields are the keys of the JSON files beside the PNGs (as_dict).
Diagnostics measured by the same judge (the prior gap) are in dfc_vae.diagnostics.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from dfc_vae.data.celeba import ATTRIBUTE_NAMES
from dfc_vae.evaluation.classifier import MIN_ACCURACY, MIN_BALANCED
from dfc_vae.util.errors import UserError, check_names
from dfc_vae.util.fileio import write_json, write_text
from dfc_vae.util.images import grid, save_figure, to_uint8
from dfc_vae.editing.latent import default_alphas, interpolate
from dfc_vae.runs.split import FaceSplit

MONOTONE_TOL = 0.05


@dataclass(frozen=True)
class InterpolationRow:
    """A Fig. 5 row kind: faces matching `left` -> faces matching `right` (None: z ~ N(0, I), or `prior`'s draws)."""

    name: str
    left: dict | None
    right: dict | None
    attribute: str | None  # the attribute that differs between the ends, if any
    prior: Callable | None = field(default=None, compare=False)  # fake ends: (n, generator) -> (n, D) (runs/prior.py)

    @property
    def labels_needed(self) -> list[str]:
        """The attributes whose labels choose the faces of its ends."""
        return [n for ends in (self.left, self.right) if ends for n in ends]


@dataclass(frozen=True)
class EditRow:
    """A Fig. 6 row kind: z + sign * alpha * v[attribute] on faces matching `faces`."""

    name: str
    attribute: str
    sign: int
    faces: dict

    @property
    def labels_needed(self) -> list[str]:
        """The attributes whose labels choose its faces."""
        return list(self.faces)


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
    check_names(faces, valid, where=f" in edit '{spec}'", listing="the data has")
    return EditRow(spec, attr, sign, faces)


# ----------------------------------------------------------------------------- typed results


def as_dict(result) -> dict:
    """A result (the dataclasses below and dfc_vae.diagnostics') as the plain dict its JSON file holds:
    dataclasses.asdict without the fields left None, the measures a run could not take (Fig. 5's
    own-attribute share when no data row had faces; a flip rate when no face could take the edit)."""
    return dataclasses.asdict(result, dict_factory=lambda items: {k: v for k, v in items if v is not None})


@dataclass
class RowCount:
    """A row kind's number of faces measured: all a Fig. 5 row kind holds when it had none to measure
    (e.g. a tiny test split without eyeglasses)."""

    faces: int


@dataclass
class InterpolationMeasures(RowCount):
    """The Fig. 5 measures of a row kind's rows (module docstring)."""

    monotone: float  # share of the rows with changing scores along which those move monotonically (nan: none)
    rows_with_changing_scores: int
    monotone_all_attributes: float  # share of rows along which every trusted attribute's score is monotone
    failing_scores: dict[str, int]  # attribute -> rows where its changing score is not monotone, most first


@dataclass
class OwnAttributeMeasures(InterpolationMeasures):
    """The Fig. 5 measures of a data row kind, whose ends differ in `own_attribute`."""

    monotone_own_attribute: float
    own_attribute: str
    classifier_trusted: bool  # whether the classifier predicts own_attribute well enough to judge it


@dataclass
class EditRowCount(RowCount):
    """A Fig. 6 row kind's faces measured and its edit: all it holds when it had no faces."""

    attribute: str
    sign: int


@dataclass
class EditMeasures(EditRowCount):
    """The Fig. 6 measures of an edit row kind (edit_measures)."""

    classifier_trusted: bool
    flip_rate: float
    at_start: float
    others_changed: float
    others_changed_max: float
    others_changed_max_attribute: str


@dataclass
class Figure5Summary:
    rows: dict[str, RowCount]  # row kind -> its measures (InterpolationMeasures where it had faces)
    method: str
    alphas: list[float]
    scored_attributes: list[str]  # the attributes the classifier is trusted on
    monotone_tolerance: float
    monotone_rows: float  # all row kinds pooled, weighted by their rows with changing scores
    monotone_rows_all_attributes: float
    monotone_rows_own_attribute: float | None = None  # the data rows pooled; None when none had faces


@dataclass
class Figure6Summary:
    rows: dict[str, EditRowCount]  # row kind -> its measures (EditMeasures where it had faces)
    alphas: list[float]
    scored_attributes: list[str]
    vectors: dict  # the attribute vectors' provenance (AttributeVectors.meta)


@dataclass(kw_only=True)
class Headline:
    """The demo's target numbers (headline); an attribute's flip rate, faces and trust are None
    when no face could take its edit."""

    flip_Smiling: float | None = None
    faces_Smiling: int | None = None
    trusted_Smiling: bool | None = None
    flip_Eyeglasses: float | None = None
    faces_Eyeglasses: int | None = None
    trusted_Eyeglasses: bool | None = None
    others_changed_max_edit: float
    monotone_rows: float


@dataclass(kw_only=True)
class MeasuredEdits(Headline):
    """measure_edits: the headline numbers and the full summaries they come from."""

    fig5: Figure5Summary
    fig6: Figure6Summary


@dataclass
class FigureResult:
    png: Path | None
    csv: Path | None
    summary: Figure5Summary | Figure6Summary
    table: pd.DataFrame = field(repr=False, default=None)


# ----------------------------------------------------------------------------- faces and scoring


@dataclass(frozen=True)
class AttributeJudge:
    """The run's attribute classifier as the figures score decoded cells with. `trusted`: the attributes
    it predicts well; `scored`: those plus the rows' own attributes (scored even where it does not, so
    the figure can still be drawn; their verdicts are flagged); `columns`: their classifier outputs."""

    classifier: object
    scored: list[str]
    trusted: list[str]
    columns: list[int]

    @classmethod
    def for_rows(cls, classifier, own=()) -> AttributeJudge:
        trusted = classifier.scored()
        scored = [n for n in classifier.names if n in trusted or n in own]
        return cls(classifier, scored, trusted, [classifier.column(n) for n in scored])

    @torch.no_grad()
    def decode_and_score(self, run, z: torch.Tensor, keep: int):
        """Decode (B, K, D) latents; returns probabilities (B, K, len(scored)) and the decoded images
        (keep, K, 3, S, S) in [0, 1] of the first `keep` rows."""
        b, k, d = z.shape
        flat = z.reshape(b * k, d)
        probs, kept = [], []
        for i in range(0, b * k, 256):
            img = run.model.decode(flat[i:i + 256].to(run.device)).float().clamp(0, 1).cpu()
            probs.append(self.classifier.predict(img)[:, self.columns])
            if i < keep * k:
                kept.append(img)
        probs = torch.cat(probs).view(b, k, len(self.columns))
        shown = torch.cat(kept)[: keep * k].view(-1, k, *kept[0].shape[1:]) if keep and kept else None
        return probs, shown


def untrusted_note(classifier, attribute: str, advice: str = "train longer") -> str:
    """Why the figures do not measure `attribute`: the test-split accuracy (or balanced accuracy) of the run's
    classifier on it is below what AttributeClassifier.scored asks, so its verdicts on decoded faces would be
    noise; `advice`: what to do about it."""
    accuracy, balanced = classifier.report["accuracy"][attribute], classifier.report["balanced_accuracy"][attribute]
    why = (f"test accuracy on {attribute} is {accuracy:.0%} < {MIN_ACCURACY:.0%}" if accuracy < MIN_ACCURACY else
           f"balanced test accuracy on {attribute} is {balanced:.0%} < {MIN_BALANCED:.0%}")
    return f"{attribute} not measured: the classifier's {why}; {advice}"


def _monotone(p: torch.Tensor, tol: float = MONOTONE_TOL) -> torch.Tensor:
    """p: (B, K) scores along rows -> (B,) bool: non-decreasing, or non-increasing, within tol."""
    d = p[:, 1:] - p[:, :-1]
    return (d >= -tol).all(1) | (d <= tol).all(1)


def prior_ends(n: int, dim: int, seed: int, salt: int, draw=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The two ends of n fake -> fake rows, z ~ N(0, I) (or `draw`'s: (n, generator) -> (n, D), a fitted prior's),
    deterministic per (seed, salt)."""
    g = torch.Generator().manual_seed(seed * 1000 + salt)
    if draw is not None:
        return draw(n, g), draw(n, g)
    return torch.randn(n, dim, generator=g), torch.randn(n, dim, generator=g)


def interpolation_measures(probs: torch.Tensor, scored: list[str], trusted: list[str],
                           attribute: str | None = None) -> InterpolationMeasures:
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
    measures = InterpolationMeasures(
        faces=int(len(probs)),
        monotone=float(mono_moving[has_moving].float().mean()) if has_moving.any() else float("nan"),
        rows_with_changing_scores=int(has_moving.sum()),
        monotone_all_attributes=float(per_attr[:, good].all(1).float().mean()),
        failing_scores={scored[i]: int(failing[i]) for i in failing.argsort(descending=True).tolist() if failing[i]})
    if not attribute:
        return measures
    own = float(per_attr[:, scored.index(attribute)].float().mean())
    return OwnAttributeMeasures(**vars(measures), monotone_own_attribute=own, own_attribute=attribute,
                                classifier_trusted=attribute in trusted)


# ----------------------------------------------------------------------------- drawing and writing


def _rounded(alphas) -> list[float]:
    return [round(float(a), 4) for a in alphas]


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


def compose(cells: list[np.ndarray], pad: int = 2) -> np.ndarray:
    """Rows of equal length (each (C, S, S, 3) uint8) -> one grid image
    (R * (S + pad) + pad, C * (S + pad) + pad, 3)."""
    if not cells:
        raise UserError("nothing to draw: no rows")
    ncol = cells[0].shape[0]
    return grid(np.concatenate(cells), ncol, pad, min_size=0)


class _Sheet:
    """A figure being made, row kind by row kind: the scores of every decoded cell (its CSV) and the
    rows drawn (its PNG)."""

    def __init__(self, figure: str, faces: FaceSplit, judge: AttributeJudge, alphas, n_show: int):
        self.figure, self.faces, self.judge, self.alphas, self.n_show = figure, faces, judge, alphas, n_show
        self.tables, self.cells = [], []

    def decode_and_score(self, row_name: str, z: torch.Tensor, ids: list[str], ids_right: list[str] | None = None):
        """Decode and score a row kind's (B, K, D) latents, keeping the scores for the CSV; returns them
        (B, K, A) and the decoded images of the first n_show rows (see AttributeJudge.decode_and_score)."""
        probs, shown = self.judge.decode_and_score(self.faces.run, z, self.n_show)
        self.tables.append(_table(self.figure, row_name, ids, ids_right, self.alphas, probs, self.judge.scored))
        return probs, shown

    def draw(self, rows: list[np.ndarray]) -> None:
        self.cells.extend(rows)

    def finish(self, out, title: str, row_names: list[str], summary, ends=None) -> FigureResult:
        """The figure's result; with `out`, also its PNG, CSV and JSON. The PNG is drawn as a paper's figure: each
        row's name at its left, alpha above the columns (`ends`: (left, right), the labels of the input columns at
        either end, None where there is none), the
        provenance in one line under it; its text chunks hold the whole caption."""
        result = FigureResult(None, None, summary, pd.concat(self.tables, ignore_index=True))
        if out is not None:
            if not self.cells:
                raise UserError("nothing to draw: no rows")
            drawn = [name for name in row_names for _ in range(min(self.n_show, summary.rows[name].faces))]
            left, right = ends or (None, None)
            columns = [left] * bool(left) + [f"{a:g}" for a in _rounded(self.alphas)] + [right] * bool(right)
            caption = self.faces.caption() + [title] + [f"  {name}" for name in drawn]
            result.png, result.csv = _write(out, self.cells, caption, result.table, summary,
                                            dict(row_labels=drawn, column_labels=columns, footer=self.faces.footer(),
                                                 corner="alpha ="))
        return result


def _write(out, rows: list[np.ndarray], caption: list[str], table: pd.DataFrame, summary, layout: dict):
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise UserError(f"--out {out} should end in .png")
    csv_path, json_path = out.with_suffix(".csv"), out.with_suffix(".json")
    write_text(csv_path, table.to_csv(index=False, float_format="%.4f"))
    write_json(json_path, as_dict(summary))
    save_figure(out, rows, caption, metadata={"summary": json_path.name}, **layout)
    return out, csv_path


# ----------------------------------------------------------------------------- Figure 5


@dataclass
class _Ends:
    """The ends of a Fig. 5 row kind's rows: latents (B, D), image ids, and the real input images
    (left, right) of the rows drawn; None for ends drawn from the prior."""

    z0: torch.Tensor
    z1: torch.Tensor
    left_ids: list[str]
    right_ids: list[str]
    images: tuple[np.ndarray, np.ndarray] | None = None


def _interpolation_ends(faces: FaceSplit, row: InterpolationRow, salt: int, n_faces: int, n_show: int, seed: int,
                        endpoints: dict) -> _Ends | None:
    """A row kind's ends: n_faces pairs of faces drawn by their labels (the first pair from
    `endpoints` where it names the row), or of prior samples; None when the split has no such faces."""
    if row.left is None:  # fake -> fake: both ends from the prior
        z0, z1 = prior_ends(n_faces, faces.run.config.latent_dim, seed, salt, row.prior)
        return _Ends(z0, z1, [f"z{i}a" for i in range(n_faces)], [f"z{i}b" for i in range(n_faces)])
    left = faces.select(row.left, n_faces, seed, 2 * salt)
    right = faces.select(row.right, n_faces, seed, 2 * salt + 1)
    pick = endpoints.get(row.name) or endpoints.get(row.attribute)
    if pick:
        left = np.r_[faces.by_id(pick[0]), left][:n_faces]
        right = np.r_[faces.by_id(pick[1]), right][:n_faces]
    m = min(len(left), len(right))
    if m == 0:
        return None
    left, right = left[:m], right[:m]
    return _Ends(faces.encode(left, batch_size=256)[0], faces.encode(right, batch_size=256)[0], faces.ids(left), faces.ids(right),
                 (to_uint8(faces.images(left[:n_show])), to_uint8(faces.images(right[:n_show]))))


def _interpolation_cells(ends: _Ends, shown: torch.Tensor, n_rows: int, size: int) -> list[np.ndarray]:
    """The drawn rows: the left input, the decoded row, the right input (blank where the ends are prior samples)."""
    blank = np.full((size, size, 3), 255, np.uint8)
    cells = []
    for i in range(n_rows):
        left, right = (ends.images[0][i], ends.images[1][i]) if ends.images else (blank, blank)
        cells.append(np.concatenate([left[None], to_uint8(shown[i]), right[None]]))
    return cells


def _figure5_summary(rows: dict[str, RowCount], method: str, alphas, trusted: list[str]) -> Figure5Summary:
    """The row kinds' measures, and their pooled shares (weighted by rows with changing scores, or faces)."""
    measured = [r for r in rows.values() if r.faces]
    changing = [r for r in measured if r.rows_with_changing_scores]
    monotone = (sum(r.rows_with_changing_scores * r.monotone for r in changing)
                / max(1, sum(r.rows_with_changing_scores for r in changing)))
    monotone_all = (sum(r.faces * r.monotone_all_attributes for r in measured) / max(1, sum(r.faces for r in measured)))
    data_rows = [r for r in measured if isinstance(r, OwnAttributeMeasures)]
    own = (sum(r.faces * r.monotone_own_attribute for r in data_rows) / sum(r.faces for r in data_rows)
           if data_rows else None)
    return Figure5Summary(rows, method, _rounded(alphas), trusted, MONOTONE_TOL, monotone, monotone_all, own)


def figure5(run, data, classifier, out: str | Path | None = None, n_faces: int = 200, n_show: int = 1, seed: int = 0,
            steps: int = 11, method: str = "linear", endpoints: dict[str, tuple[str, str]] | None = None,
            split: str = "test", cache_dir=None, progress: bool = True, rows=FIG5_ROWS) -> FigureResult:
    """Rows of interpolations (1 - a) z_left + a z_right, a = 0, 1/(steps-1), ..., 1 (the paper's Fig. 5).

    Data rows: n_faces (left, right) pairs of test faces drawn by their labels; the drawn rows stand
    the real input images at both ends. `endpoints` maps a row's name (or its attribute, e.g. 'Smiling')
    to image ids (left, right) for its first drawn row. Writes out (PNG) and out.csv (scores of every
    cell) when `out` is given; returns the summary.
    """
    faces = FaceSplit.of_run(run, data, split, cache_dir, progress, needs=[n for r in rows for n in r.labels_needed])
    judge = AttributeJudge.for_rows(classifier, [r.attribute for r in rows if r.attribute])
    alphas = default_alphas(steps)
    sheet = _Sheet("fig5", faces, judge, alphas, n_show)
    measured = {}
    for salt, row in enumerate(rows):
        ends = _interpolation_ends(faces, row, salt, n_faces, n_show, seed, endpoints or {})
        if ends is None:  # e.g. a tiny test split without eyeglasses: nothing to draw or measure
            measured[row.name] = RowCount(0)
            continue
        z = interpolate(ends.z0, ends.z1, alphas, method)  # (B, K, D)
        probs, shown = sheet.decode_and_score(row.name, z, ends.left_ids, ends.right_ids)
        measured[row.name] = interpolation_measures(probs, judge.scored, judge.trusted, row.attribute)
        sheet.draw(_interpolation_cells(ends, shown, min(n_show, len(z)), run.config.image_size))
    title = f"Fig. 5 ({method} interpolation, alpha = 0 ... 1 in {steps} steps; real inputs at the ends of data rows), rows:"
    return sheet.finish(out, title, [r.name for r in rows], _figure5_summary(measured, method, alphas, judge.trusted),
                        ends=("input", "input"))
