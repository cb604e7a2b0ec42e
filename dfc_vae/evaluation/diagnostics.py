"""Diagnostics of a run's latent space, measured by the figures' own judge (dfc_vae.evaluation.figures).

The prior gap: Figure 5's fake -> fake rows interpolate between two draws from the prior N(0, I).
Run with their ends drawn from where the encoder puts faces instead, the same rows and scores say
whether fake rows fail because of the interpolation and the decoder, or because prior samples land
where the encoder puts no faces (the 'prior hole' problem).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dfc_vae.util.errors import UserError
from dfc_vae.evaluation.figure5 import FIG5_ROWS, interpolation_measures, prior_ends
from dfc_vae.evaluation.figures import AttributeJudge, InterpolationMeasures
from dfc_vae.editing.latent import default_alphas, interpolate
from dfc_vae.runs.split import FaceSplit

# the salt of Figure 5's fake -> fake rows: the same N(0, I) ends as the figure's at a seed
FAKE_ROW_SALT = next(i for i, r in enumerate(FIG5_ROWS) if r.left is None)


@dataclass
class Spread:
    min: float
    median: float
    max: float


@dataclass
class AggregatePosteriorMoments:
    covariance_eigenvalues: Spread
    second_moment_per_dimension: Spread  # E[z_j^2] per latent dimension; all 1 under N(0, I)
    norm_of_mean: float


@dataclass
class EndsMeasures(InterpolationMeasures):
    """Fig. 5's measures of rows between one kind of ends, and how far those ends lie from 0."""

    mean_norm_of_ends: float


@dataclass
class PriorGap:
    sources: dict[str, EndsMeasures]  # kind of ends -> the measures of the rows between them
    split: str
    fit_faces: int
    seed: int
    scored_attributes: list[str]
    aggregate_posterior: AggregatePosteriorMoments


def aggregate_posterior(mu: torch.Tensor, logvar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance of the aggregate posterior, the equal mixture of the faces' posteriors
    N(mu_i, diag exp(logvar_i)): E[mu] and Cov(mu) (over the faces) + the mean of the variances."""
    mean = mu.mean(0)
    centred = mu - mean
    return mean, centred.T @ centred / len(mu) + torch.diag(logvar.exp().mean(0))


def prior_gap(run, data, classifier, n_faces: int = 300, fit_faces: int = 4000, seed: int = 0, steps: int = 11,
              split: str = "train", cache_dir=None, progress: bool = True) -> PriorGap:
    """Fig. 5's fake -> fake measure with the rows' ends drawn four ways, from the prior to where the
    encoder puts faces: z ~ N(0, I) (the same ends as figure5's fake rows at this seed); the Gaussian
    fitted to the aggregate posterior of `fit_faces` faces of `split` (the same normal draws, mapped);
    posterior samples, and posterior means, of random faces of `split`. Where the last rows score far
    above the first, fake rows fail because prior samples land where the encoder puts no faces (the
    'prior hole' problem), not because of the interpolation or of the decoder on faces."""
    if n_faces < 1 or fit_faces < 2:
        raise UserError(f"need at least 1 row and 2 fitted faces (got {n_faces} and {fit_faces})")
    faces = FaceSplit.of_run(run, data, split, cache_dir, progress)
    judge = AttributeJudge.for_rows(classifier)
    fit = np.sort(faces.rows[np.random.default_rng([seed, 7]).permutation(len(faces.rows))[:fit_faces]])
    mu, logvar = (t.cpu() for t in faces.encode(fit, batch_size=256))
    mean, cov = aggregate_posterior(mu, logvar)
    ends = _four_kinds_of_ends(mu, logvar, mean, cov, n_faces, seed)
    sources = {name: measure_rows(run, judge, z0, z1, steps) for name, (z0, z1) in ends.items()}
    return PriorGap(sources, split, len(fit), seed, judge.scored, _moments(mean, cov))


def _four_kinds_of_ends(mu, logvar, mean, cov, n: int, seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """n pairs of ends (each (n, D)) of each kind, from the faces' posteriors (mu, logvar) and their
    aggregate's moments (mean, cov); deterministic per seed."""
    d = mu.shape[1]
    p0, p1 = prior_ends(n, d, seed, FAKE_ROW_SALT)
    root = torch.linalg.cholesky(cov)
    g = torch.Generator().manual_seed(seed * 1000 + 99)
    i0, i1 = torch.randint(len(mu), (n,), generator=g), torch.randint(len(mu), (n,), generator=g)

    def sample(i):  # z = mu + sigma * eps from the posteriors of faces i
        return mu[i] + (0.5 * logvar[i]).exp() * torch.randn(len(i), d, generator=g)

    return {"N(0, I) (the figure's fake -> fake rows)": (p0, p1),
            "Gaussian fitted to the aggregate posterior": (mean + p0 @ root.T, mean + p1 @ root.T),
            "posterior samples of random faces": (sample(i0), sample(i1)),
            "posterior means of random faces": (mu[i0], mu[i1])}


def measure_rows(run, judge: AttributeJudge, z0: torch.Tensor, z1: torch.Tensor, steps: int) -> EndsMeasures:
    """Fig. 5's measures of the rows from z0 to z1 ((n, D) each), and how far their ends lie from 0."""
    probs, _ = judge.decode_and_score(run, interpolate(z0, z1, default_alphas(steps)), keep=0)
    measures = interpolation_measures(probs, judge.scored, judge.trusted)
    return EndsMeasures(**vars(measures), mean_norm_of_ends=round(float(torch.cat([z0, z1]).norm(dim=1).mean()), 3))


def _moments(mean: torch.Tensor, cov: torch.Tensor) -> AggregatePosteriorMoments:
    eig = torch.linalg.eigvalsh(cov)  # ascending
    moment = cov.diagonal() + mean ** 2  # E[z_j^2] per latent dimension
    return AggregatePosteriorMoments(
        covariance_eigenvalues=Spread(float(eig[0]), float(eig.median()), float(eig[-1])),
        second_moment_per_dimension=Spread(float(moment.min()), float(moment.median()), float(moment.max())),
        norm_of_mean=float(mean.norm()))
