"""The demo's last step: the prior fitted to the faces (runs/prior.py), and the random faces of each prior measured
(evaluation/samples.py) and drawn. It runs after everything else the demo measures and draws its random numbers from
its own generators, so the demo's other numbers are those it makes without it.

Its cost is bounded by the faces it uses: FIT_FACES training faces fitted, SAMPLE_FACES samples per prior against as
many test faces, and Figure 5's fake -> fake rows (the demo's faces per row kind) for the two fitted priors (the
N(0, I) rows are Figure 5's own).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dfc_vae.util.fileio import write_json, write_text
from dfc_vae.evaluation.samples import (fake_rows_by_prior, measure_run_samples, prior_samplers, sample_csv,
                                        sample_section)
from dfc_vae.runs.prior import FILE, PRIOR_TITLES, describe_prior, fit_prior
from dfc_vae.runs.split import FaceSplit
from dfc_vae.evaluation.figures import InterpolationMeasures, OwnAttributeMeasures
from dfc_vae.util.images import save_figure, to_uint8

FIT_FACES = 2000  # training faces the demo's prior is fitted to (and as many valid faces choose the mixture's size)
SAMPLE_FACES = 500  # samples per prior, and test faces, measured
PICTURE_FACES = 10  # random faces per prior in the picture
PICTURE = "samples_by_prior.png"


@dataclass
class DemoSamples:
    """What the step made: the measures' section of the report and the files beside the figures."""

    lines: list[str]
    csv: Path
    picture: Path


def demo_samples(run, data, classifier, fig5, figs: Path, seed: int, fake_rows: int, cache_dir,
                 progress: bool = False) -> DemoSamples:
    """Fit the prior (kept with the run), measure each prior's samples, Figure 5's fake -> fake rows with each
    prior's ends, and draw PICTURE_FACES faces of each prior; the files go into `figs`."""
    prior = fit_prior(run, data, cache_dir, FIT_FACES, seed, progress)
    prior.save(run.path / FILE)
    test = FaceSplit.of_run(run, data, "test", cache_dir, progress)
    quality = measure_run_samples(run, test, classifier, prior, SAMPLE_FACES, seed)
    rows = {**_figure5_fake_row(fig5), **fake_rows_by_prior(run, classifier, prior, fake_rows, seed,
                                                             kinds=("gaussian", "mixture"))}
    csv = figs / "samples.csv"
    write_text(csv, sample_csv(quality))
    write_json(figs / "samples.json", {"prior": prior.meta, "fake_rows": {k: vars(v) for k, v in rows.items()},
                                       "preprocessing": quality.preprocessing, "inception": quality.inception_note})
    picture = _picture(run, prior, figs / PICTURE, seed)
    lines = sample_section(quality, rows, level="###", picture=f"figures/{PICTURE}")
    lines += [f"The fitted prior: {describe_prior(prior)}. Per sampler: `figures/samples.csv`.", ""]
    return DemoSamples(lines, csv, picture)


def _figure5_fake_row(fig5) -> dict:
    """Figure 5's own fake -> fake rows (z ~ N(0, I)) under the name the table gives that prior."""
    return {PRIOR_TITLES["normal"]: r for r in fig5.rows.values()
            if isinstance(r, InterpolationMeasures) and not isinstance(r, OwnAttributeMeasures)}


def _picture(run, prior, out: Path, seed: int) -> Path:
    """PICTURE_FACES random faces of each prior, one row each, the prior named at the left."""
    samplers = prior_samplers(run, prior, seed + 1)
    rows = [to_uint8(sample(PICTURE_FACES)) for sample in samplers.values()]
    caption = run.caption + [f"{run.name} step {run.step}: {PICTURE_FACES} random faces from each prior "
                             f"(seed {seed + 1}), one row each"]
    save_figure(out, [np.asarray(r) for r in rows], caption, list(samplers))
    return out
