"""What the paper's Figure 5 (interpolation, dfc_vae.evaluation.figure5) and Figure 6 (attribute arithmetic,
dfc_vae.evaluation.figure6) share: the row kinds, the typed results, the judge and the sheet they are drawn on.

Each row kind of a figure is run on many test faces (n_faces, chosen by their labels,
deterministically per seed); the first n_show of them are drawn. Every decoded cell is scored by
the run's attribute classifier (dfc_vae.evaluation.classifier), only on the attributes it predicts well, and
the scores go to a CSV beside the PNG; each figure's module says which summary measures it takes.

The summaries are dataclasses whose fields are the keys of the JSON files beside the PNGs (as_dict).
Diagnostics measured by the same judge (the prior gap) are in dfc_vae.evaluation.diagnostics.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from dfc_vae.evaluation.classifier import MIN_ACCURACY, MIN_BALANCED
from dfc_vae.util.errors import UserError
from dfc_vae.util.fileio import write_json, write_text
from dfc_vae.util.images import grid, save_figure
from dfc_vae.runs.split import FaceSplit


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


# ----------------------------------------------------------------------------- typed results


def as_dict(result) -> dict:
    """A result (the dataclasses below and dfc_vae.evaluation.diagnostics') as the plain dict its JSON file holds:
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
    """The Fig. 5 measures of a row kind's rows (dfc_vae.evaluation.figure5)."""

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
