"""A prior fitted to the faces (ex-post density estimation, Ghosh et al. 2020, "From Variational to
Deterministic Autoencoders", Sec. 4): after training, a density fitted to the posterior means of the
training faces, to draw random faces from where the encoder puts faces instead of from N(0, I).

Two densities are fitted to the posterior means (FaceSplit.encode, the calibrated latent) of at most
`max_faces` training faces chosen at random (seeded):

  gaussian   one full-covariance Gaussian N(m, C): the faces' mean and covariance;
  mixture    a Gaussian mixture with full covariances (scikit-learn's GaussianMixture, EM), its number of
             components chosen among COMPONENTS by the mean log-likelihood of the valid split's posterior
             means (up to `max_faces` of them; where the valid split has fewer than MIN_VALID faces, by
             BIC on the training faces).

A draw at temperature T is m + T L eps with eps ~ N(0, I) and C = L L^T (the mixture: a component k
drawn by its weight, then its own m_k, L_k); N(0, I) ("normal", the paper's prior) is T eps.

Faces drawn to order (`conditional`): a Gaussian fitted to the stored posterior means of the faces
whose labels match, its covariance shrunk towards its diagonal by Ledoit and Wolf's (2004) rule, so
that a combination with fewer faces than latent dimensions still has a positive definite one.

The prior is kept with the run as RUN/prior.safetensors (and in `dfc-vae export`):

  gaussian.mean (D,), gaussian.covariance (D, D)                    float32
  mixture.weights (K,), mixture.means (K, D), mixture.covariances (K, D, D)   float32
  faces.means (N, D) float32, faces.labels (N, A) uint8             the faces it was fitted on
  metadata: format "dfc_vae.prior/1", names (JSON list of the A label columns), meta (JSON: the step
            of the model it was fitted for, the faces and the split, the seed, the components tried
            with their valid log-likelihoods, the one chosen)

A prior fitted for another step of the model (the run trained further) is not used: it is fitted again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save
from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

from dfc_vae.runs.split import FaceSplit
from dfc_vae.util.choices import PRIORS
from dfc_vae.util.errors import UserError
from dfc_vae.util.fileio import write_bytes

FILE = "prior.safetensors"
FORMAT = "dfc_vae.prior/1"
PRIOR_TITLES = {"normal": "N(0, I)", "gaussian": "fitted Gaussian", "mixture": "fitted mixture"}
COMPONENTS = (1, 2, 4, 8)  # the mixture sizes tried
MAX_FIT_FACES = 3000  # training faces fitted (and as many valid faces scored): bounds the cost (docs/benchmarks.md)
MIN_VALID = 20  # fewer valid faces than this: the mixture's size is chosen by BIC on the training faces
MIN_WHERE_FACES = 20  # faces a label combination needs before a Gaussian is fitted to them
REG = 1e-5  # added to every covariance's diagonal (scikit-learn's reg_covar): a collapsed dimension stays invertible

Draw = Callable[[int, torch.Generator], torch.Tensor]  # (n, generator) -> (n, D) latents


@dataclass
class Gaussian:
    """N(mean, covariance) in the latent space, float64."""

    mean: torch.Tensor  # (D,)
    covariance: torch.Tensor  # (D, D)

    def __post_init__(self):
        self.mean, self.covariance = self.mean.double(), self.covariance.double()
        self.root = torch.linalg.cholesky(self.covariance)

    def draw(self, eps: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """mean + T L eps for (n, D) standard normal eps."""
        return (self.mean + temperature * eps.double() @ self.root.T).float()


@dataclass
class FittedPrior:
    """The densities fitted to a run's training faces (module doc) and the faces they were fitted on."""

    gaussian: Gaussian
    weights: torch.Tensor  # (K,) the mixture's
    components: list[Gaussian]
    means: torch.Tensor  # (N, D) posterior means of the fitted faces
    labels: np.ndarray  # (N, A) bool
    names: list[str]  # the A label columns
    meta: dict = field(default_factory=dict)

    @property
    def latent_dim(self) -> int:
        return len(self.gaussian.mean)

    def draw(self, kind: str, temperature: float = 1.0) -> Draw:
        """The sampler of `kind` (PRIORS) at `temperature`: (n, generator) -> (n, D)."""
        dim = self.latent_dim
        if kind == "normal":
            return lambda n, g: torch.randn(n, dim, generator=g) * temperature
        if kind == "gaussian":
            return lambda n, g: self.gaussian.draw(torch.randn(n, dim, generator=g), temperature)
        if kind == "mixture":
            return lambda n, g: self._mixture_draw(n, g, temperature)
        raise UserError(f"unknown prior {kind!r}; choose one of {', '.join(PRIORS)}")

    def _mixture_draw(self, n: int, g: torch.Generator, temperature: float) -> torch.Tensor:
        which = torch.multinomial(self.weights.double(), n, replacement=True, generator=g) if n else torch.zeros(0, dtype=torch.long)
        eps = torch.randn(n, self.latent_dim, generator=g)
        z = torch.empty(n, self.latent_dim)
        for k, component in enumerate(self.components):
            chosen = which == k
            z[chosen] = component.draw(eps[chosen], temperature)
        return z

    def conditional(self, where: dict[str, bool]) -> tuple[Gaussian, int]:
        """The Gaussian of the stored faces whose labels match `where` ({name: value}), and how many matched
        (module doc); a UserError for a name the faces are not labelled with, or too few matching faces."""
        from sklearn.covariance import ledoit_wolf  # imported where used, as in fit_densities

        if not self.names:
            raise UserError("the faces the prior was fitted on carry no labels, so faces cannot be drawn to order; "
                            "train on labelled faces (CelebA, or a folder with labels.csv)")
        unknown = [name for name in where if name not in self.names]
        if unknown:
            raise UserError(f"unknown attribute {unknown[0]!r}; the faces are labelled with "
                            f"{', '.join(self.names)}")
        match = np.ones(len(self.labels), bool)
        for name, value in where.items():
            match &= self.labels[:, self.names.index(name)] == bool(value)
        count = int(match.sum())
        asked = ", ".join(f"{k}={int(v)}" for k, v in where.items())
        if count < MIN_WHERE_FACES:
            raise UserError(f"only {count} of the {len(self.labels)} faces the prior was fitted on have {asked}; "
                            f"drawing to order needs at least {MIN_WHERE_FACES}: ask for fewer attributes")
        mu = self.means[torch.from_numpy(match)].double()
        cov, _ = ledoit_wolf(mu.numpy())
        return Gaussian(mu.mean(0), torch.from_numpy(cov) + REG * torch.eye(mu.shape[1], dtype=torch.float64)), count

    def save(self, path: str | Path) -> Path:
        tensors = {"gaussian.mean": self.gaussian.mean, "gaussian.covariance": self.gaussian.covariance,
                   "mixture.weights": self.weights, "mixture.means": torch.stack([c.mean for c in self.components]),
                   "mixture.covariances": torch.stack([c.covariance for c in self.components]),
                   "faces.means": self.means, "faces.labels": torch.from_numpy(self.labels.astype(np.uint8))}
        tensors = {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
        write_bytes(path, save(tensors, metadata={"format": FORMAT, "names": json.dumps(self.names),
                                                  "meta": json.dumps(self.meta)}))
        return Path(path)


def load_prior(path: str | Path) -> FittedPrior:
    """Read a file written by FittedPrior.save (a UserError for anything else)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            if metadata.get("format") != FORMAT:
                raise ValueError("not a prior file")
            t = {k: f.get_tensor(k) for k in f.keys()}
        means, covs = t["mixture.means"], t["mixture.covariances"]
        prior = FittedPrior(Gaussian(t["gaussian.mean"], t["gaussian.covariance"]), t["mixture.weights"].double(),
                            [Gaussian(m, c) for m, c in zip(means, covs)], t["faces.means"].float(),
                            t["faces.labels"].numpy().astype(bool), json.loads(metadata["names"]),
                            json.loads(metadata.get("meta", "{}")))
    except Exception as e:
        raise UserError(f"{path} is not a prior file of dfc_vae ({type(e).__name__}); fit one with "
                        "`dfc-vae fit-prior --run RUN`") from e
    return prior


def stored_prior(run) -> FittedPrior | None:
    """The prior kept with a run or an export (RUN/prior.safetensors), when it was fitted for this model
    (its latent size and step); None where there is none or it is stale."""
    path = Path(run.path) / FILE
    if not path.is_file():
        return None
    prior = load_prior(path)
    if prior.latent_dim != run.config.latent_dim or prior.meta.get("step") != run.step:
        return None
    return prior


def _gaussian_of(x: np.ndarray) -> Gaussian:
    mean = x.mean(0)
    cov = np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1]) if len(x) > 1 else np.zeros((x.shape[1],) * 2)
    return Gaussian(torch.from_numpy(mean), torch.from_numpy(cov) + REG * torch.eye(x.shape[1], dtype=torch.float64))


def _log_likelihood(gaussian: Gaussian, x: np.ndarray) -> float:
    """Mean log-density of the rows of x under `gaussian`."""
    dist = torch.distributions.MultivariateNormal(gaussian.mean, scale_tril=gaussian.root)
    return float(dist.log_prob(torch.from_numpy(x)).mean())


def fit_densities(train: torch.Tensor, valid: torch.Tensor, seed: int = 0, components=COMPONENTS) -> tuple:
    """The Gaussian and the chosen mixture of (N, D) posterior means `train`, the mixture's size chosen on
    `valid` (module doc); returns (gaussian, weights, components, a record of the choice)."""
    # scikit-learn takes over a second to import, and every loaded run imports this module (runs/run.py): only here
    from sklearn.mixture import GaussianMixture

    x, v = train.double().numpy(), valid.double().numpy()
    gaussian = _gaussian_of(x)
    by_valid = len(v) >= MIN_VALID
    scores, fits = {}, {}
    for k in [k for k in components if k == 1 or 10 * k <= len(x)]:  # ten faces a component at least
        # one BLAS thread: EM's many small products ran 10x slower on two threads of a busy 2-core machine
        with threadpool_limits(1):
            gm = GaussianMixture(k, covariance_type="full", reg_covar=REG, random_state=seed, max_iter=100,
                                 init_params="k-means++").fit(x)
        scores[k], fits[k] = (float(gm.score(v)) if by_valid else -float(gm.bic(x))), gm
    best = max(scores, key=scores.get)
    gm = fits[best]
    mixture = [Gaussian(torch.from_numpy(m), torch.from_numpy(c)) for m, c in zip(gm.means_, gm.covariances_)]
    choice = {"components": best, "chosen_by": "valid log-likelihood" if by_valid else "BIC on the training faces",
              "scores": {str(k): round(s, 4) for k, s in scores.items()}}
    if by_valid:
        normal = Gaussian(torch.zeros(x.shape[1]), torch.eye(x.shape[1]))
        choice["valid_log_likelihood"] = {"normal": round(_log_likelihood(normal, v), 4),
                                          "gaussian": round(_log_likelihood(gaussian, v), 4),
                                          "mixture": round(scores[best], 4)}
    return gaussian, torch.from_numpy(gm.weights_), mixture, choice


def _chosen(rows: np.ndarray, n: int, seed: int, salt: int) -> np.ndarray:
    """Up to n of `rows`, chosen at random (seeded), in ascending order."""
    return np.sort(rows[np.random.default_rng([seed, salt]).permutation(len(rows))[:n]])


def fit_prior(run, data=None, cache_dir=None, max_faces: int = MAX_FIT_FACES, seed: int = 0,
              progress: bool = False) -> FittedPrior:
    """Fit the prior (module doc) to the posterior means of `run`'s training faces (`data`: a FaceSet or a
    folder; default the run's). Draws its random numbers from its own generators only."""
    if max_faces < 2:
        raise UserError(f"--max-faces {max_faces}: the prior needs at least 2 faces")
    faces = FaceSplit.of_run(run, data, "train", cache_dir, progress, empty_hint="fit the prior on data with one")
    train_rows = _chosen(faces.rows, max_faces, seed, 31)
    valid_rows = _chosen(faces.faces.indices("valid"), max_faces, seed, 32)
    train, valid = faces.encode(train_rows, batch_size=256)[0], faces.encode(valid_rows, batch_size=256)[0]
    gaussian, weights, mixture, choice = fit_densities(train, valid, seed)
    names = list(faces.faces.attribute_names)
    labels = faces.labels[names].to_numpy(bool)[train_rows] if names else np.zeros((len(train_rows), 0), bool)
    meta = {"step": run.step, "split": "train", "faces": len(train_rows), "valid_faces": len(valid_rows),
            "seed": seed, "data_description": faces.faces.description,
            "synthetic": faces.faces.synthetic is not None, "mixture": choice}
    return FittedPrior(gaussian, weights, mixture, train, labels, names, meta)


def prior_for(run, data=None, cache_dir=None, say=None, progress: bool = False) -> FittedPrior:
    """The run's stored prior, or where it has none (or a stale one) one fitted now and not stored (`say`,
    when given, is told so)."""
    prior = stored_prior(run)
    if prior is None:
        if say:
            say(f"{run.name} has no prior fitted for step {run.step}: fitting one now (`dfc-vae fit-prior` keeps one)")
        prior = fit_prior(run, data, cache_dir, progress=progress)
    return prior


def describe_prior(prior: FittedPrior) -> str:
    """One line: what the prior was fitted to and which mixture was chosen."""
    m, c = prior.meta, prior.meta.get("mixture", {})
    return (f"fitted to the posterior means of {m.get('faces', len(prior.means))} {m.get('split', 'train')} faces "
            f"(step {m.get('step', '?')}); mixture of {c.get('components', len(prior.components))} full-covariance "
            f"Gaussians, chosen by {c.get('chosen_by', '?')}")


def parse_where(items: list[str], flag: str = "--where") -> dict[str, bool]:
    """NAME=0|1 items (of `flag`) -> {NAME: bool}; a UserError for any other form or value."""
    where = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UserError(f"{flag} {item!r} should look like Smiling=1 (with) or Eyeglasses=0 (without)")
        if value.strip() not in ("0", "1"):
            raise UserError(f"{flag} {item!r}: the value must be 1 (with the attribute) or 0 (without), not {value!r}")
        where[name.strip()] = value.strip() == "1"
    return where


def drawn_to_order(prior: FittedPrior, where: dict[str, bool], temperature: float = 1.0) -> tuple[Draw, str]:
    """The sampler of faces with the labels `where` (FittedPrior.conditional) and the words saying so."""
    gaussian, count = prior.conditional(where)
    asked = ", ".join(f"{k}={int(v)}" for k, v in where.items())
    return (lambda n, g: gaussian.draw(torch.randn(n, prior.latent_dim, generator=g), temperature),
            f"z from the Gaussian of the {count} training faces with {asked} at temperature {temperature:g}")
