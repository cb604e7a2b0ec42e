"""The evaluation report's pictures of the latent space: the attribute vectors' correlation
heatmap, a PCA of the latent means, the KL per dimension, and the t-SNE of the test faces with each
face drawn at its point (in the manner of the paper's Figure 7)."""

from __future__ import annotations
import io
import numpy as np
import torch
from PIL import Image
from threadpoolctl import threadpool_limits  # a dependency of scikit-learn
from dfc_vae.model.losses import ACTIVE_UNIT_THRESHOLD

# matplotlib (half a second to import, and its Agg backend chosen first) and scikit-learn's t-SNE (over a second)
# are imported where a picture is drawn or an embedding computed: evaluate.py imports this module, and
# measure_reconstruction should not pay for them.
TSNE_FACES = 500  # default number of test faces in the t-SNE picture: enough to see clusters, seconds on a CPU
TSNE_CANVAS = 1024  # pixels per side of the t-SNE picture (before its caption)
TSNE_THUMB = 32  # pixels per side of each face drawn on it
TSNE_PERPLEXITY = 30.0  # scikit-learn's default; lowered below (n - 1) / 3 for fewer faces


def _figure_to_array(fig) -> np.ndarray:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def correlation_figure(corr: np.ndarray, names: list[str], title: str) -> np.ndarray:
    """(A, A) correlation matrix -> heatmap image (H, W, 3) uint8."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 10))
    im = ax.imshow(corr, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return _figure_to_array(fig)


def pca_figure(mu: torch.Tensor, labels: np.ndarray, attribute: str, title: str) -> np.ndarray:
    """2-D PCA of (N, D) latent means, points coloured by a bool (N,) attribute -> image."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = mu.double() - mu.double().mean(0)
    _, s, v = torch.linalg.svd(x, full_matrices=False)
    xy = (x @ v[:2].T).numpy()
    share = (s.pow(2) / s.pow(2).sum()).numpy()
    fig, ax = plt.subplots(figsize=(6.5, 6))
    for value, color, label in ((False, "tab:blue", f"not {attribute}"), (True, "tab:orange", attribute)):
        m = labels == value
        ax.scatter(xy[m, 0], xy[m, 1], s=6, alpha=0.6, c=color, label=f"{label} ({m.sum()})", linewidths=0)
    ax.set_xlabel(f"PC 1 ({share[0]:.1%} of variance)")
    ax.set_ylabel(f"PC 2 ({share[1]:.1%} of variance)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="best", fontsize=8, markerscale=3)
    return _figure_to_array(fig)


def kl_figure(kl_per_dim: np.ndarray, title: str, threshold: float = ACTIVE_UNIT_THRESHOLD) -> np.ndarray:
    """Bar plot of the mean KL per latent dimension, largest first -> image."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = np.argsort(-kl_per_dim)
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.bar(range(len(order)), kl_per_dim[order], color="tab:blue", width=1.0)
    ax.set_xlabel("latent dimension (sorted by KL)")
    ax.set_ylabel("mean KL (nats)")
    ax.set_title(title, fontsize=10)
    return _figure_to_array(fig)


def tsne_embedding(mu: torch.Tensor, seed: int = 0) -> np.ndarray:
    """(N, D) latent means -> (N, 2) t-SNE coordinates (scikit-learn's Barnes-Hut t-SNE, initialised by
    PCA, random_state `seed`): the same for the same means and seed. N >= 2."""
    from sklearn.manifold import TSNE

    perplexity = min(TSNE_PERPLEXITY, (len(mu) - 1) / 3)  # scikit-learn needs perplexity < N
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed)
    # One thread: at a few hundred points each of t-SNE's 1,000 gradient steps is tiny, so OpenMP threads
    # mostly wait for each other, and on a machine shared with other jobs that wait dominates.
    with threadpool_limits(limits=1):
        return tsne.fit_transform(mu.double().numpy())


def tsne_figure(xy: np.ndarray, faces: np.ndarray, canvas: int = TSNE_CANVAS, thumb: int = TSNE_THUMB) -> np.ndarray:
    """(N, 2) coordinates and (N, S, S, 3) uint8 faces -> (canvas, canvas, 3) uint8: each face shrunk
    to thumb x thumb pixels and drawn at its point on white (later faces over earlier ones), y up."""
    lo, span = xy.min(0), np.ptp(xy, 0)
    unit = (xy - lo) / np.where(span > 0, span, 1.0)  # [0, 1]^2
    left = np.round(unit[:, 0] * (canvas - thumb)).astype(int)
    top = np.round((1 - unit[:, 1]) * (canvas - thumb)).astype(int)
    out = np.full((canvas, canvas, 3), 255, np.uint8)
    for x, y, face in zip(left, top, faces):
        if face.shape[0] != thumb:
            face = np.asarray(Image.fromarray(face).resize((thumb, thumb), Image.LANCZOS))
        out[y:y + thumb, x:x + thumb] = face
    return out
