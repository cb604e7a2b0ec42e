"""The paper's Figure 5 (linear interpolation between the latents of two faces, or of two prior draws), drawn and
measured.

Its measure, monotone: the share of rows along which the scores that change move monotonically
from one end to the other, allowing wiggles of at most MONOTONE_TOL (classifier noise on
near-identical neighbouring cells). The scores that change are those of the scored attributes
whose predicted label differs between the two ends, plus the row's own attribute (Smiling,
Eyeglasses, Male) on data rows; rows where no label changes are left out. Reported too: the
share for the own attribute alone, and the stricter share where EVERY scored attribute's
probability is monotone (also those that stay on one side of 0.5).

What both figures share (the row kinds, the typed results, the judge, the sheet) is in dfc_vae.evaluation.figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dfc_vae.editing.latent import default_alphas, interpolate
from dfc_vae.evaluation.figures import (AttributeJudge, Figure5Summary, FigureResult, InterpolationMeasures,
                                        InterpolationRow, OwnAttributeMeasures, RowCount, _rounded, _Sheet)
from dfc_vae.runs.split import FaceSplit
from dfc_vae.util.images import to_uint8

MONOTONE_TOL = 0.05
FIG5_ROWS = (
    InterpolationRow("non-smiling woman -> smiling woman", {"Male": False, "Smiling": False},
                     {"Male": False, "Smiling": True}, "Smiling"),
    InterpolationRow("man without eyeglasses -> man with eyeglasses", {"Male": True, "Eyeglasses": False},
                     {"Male": True, "Eyeglasses": True}, "Eyeglasses"),
    InterpolationRow("man -> woman", {"Male": True}, {"Male": False}, "Male"),
    InterpolationRow("fake -> fake (z ~ N(0, I))", None, None, None),
)


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
