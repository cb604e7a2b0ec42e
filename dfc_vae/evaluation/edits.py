"""The edit benchmark: attribute edits z + alpha v measured against the ground truth, the faces' counterfactual twins.

A twin (dfc_vae.data.synth.twins) is a synthetic test face drawn again with one attribute flipped and nothing else,
so it is the face an edit of that attribute should produce. For each attribute with twins, each direction ('+': the
twin has the attribute; '-': it has not) and each vector method, the faces are encoded (posterior means z), edited
to z +/- alpha v, decoded, and compared with their twins:

* distances to the twin (pixel MSE, PSNR, SSIM and the VGG feature distance at the run's loss layers) at alpha = 1
  and at the alpha of the grid ALPHAS whose edits come closest in mean MSE (the grid is searched by the pixel
  measures only: the VGG distance costs far more, and is taken at the two alphas reported);
* beside two references: the **floor**, the face's own reconstruction (alpha = 0: an edit that does nothing), and
  the **ceiling**, the twin's own reconstruction (the twin as well as this model can draw it); `position` reads
  each distance between them: 0 at the floor, 1 at the ceiling (below 0: further from the twin than doing nothing;
  above 1: closer than the model's own reconstruction of the twin);
* locality: the share of the change |edit - reconstruction| (summed over the pixels of all faces) that falls
  inside the attribute's region (the pixels the renderer draws the attribute in, in the face or its twin), beside
  the region's share of the pixels (what a change spread evenly would score) and the twin's own share;
* the judge check: the run's attribute classifier's accuracy, against the twins' true labels, on the twins, on
  their reconstructions and on the edited faces at alpha = 1 (against the faces' own labels on their
  reconstructions): where it is wrong on the twins' reconstructions, its verdict on edits is not to be trusted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from PIL import Image

from dfc_vae.data.celeba import ALIGNED_SIZE, ATTRIBUTE_NAMES
from dfc_vae.data.decode import crop_box, load_faces
from dfc_vae.data.synth.twinset import TwinSet, open_twins, twins_folder
from dfc_vae.editing.latent import walk
from dfc_vae.evaluation.metrics import mse, psnr, ssim
from dfc_vae.model.losses import LOSS_LAYERS, DFCLoss
from dfc_vae.runs.split import open_faces_for_run
from dfc_vae.util.errors import UserError, check_names
from dfc_vae.runs.provenance import provenance
from dfc_vae.util.images import to_tensor, to_uint8
from dfc_vae.editing.attributes import attribute_vectors_by_method
from dfc_vae.util.argtypes import require

ALPHAS = (0.0, 0.5, 1.0, 1.5, 2.0)  # the grid searched for the edit closest to the twin
FACES = 50  # faces per attribute and direction
METRICS = ("mse", "psnr", "ssim", "vgg")
# How far from the twin each metric says an image is (larger: further), for the position between floor and ceiling.
_BADNESS = {"mse": lambda v: v, "psnr": lambda v: -v, "ssim": lambda v: 1.0 - v, "vgg": lambda v: v}
_BATCH = 256
_SAME = 1e-6  # relative difference below which the floor and the ceiling are taken as equal


@dataclass
class EditResult:
    """One attribute, direction and vector method, averaged over its faces."""

    attribute: str
    direction: str  # '+' or '-'
    method: str
    faces: int
    floor: dict[str, float]  # metric -> mean over the faces: the reconstruction against the twin
    ceiling: dict[str, float]  # the twin's reconstruction against the twin
    at_one: dict[str, float]  # the edit at alpha = 1
    best_alpha: float
    at_best: dict[str, float]
    position_at_one: dict[str, float | None]  # metric -> 0 floor ... 1 ceiling (None where floor = ceiling)
    position_at_best: dict[str, float | None]
    inside_region: float | None  # share of |edit - reconstruction| at alpha = 1 inside the region
    twin_inside_region: float | None  # the same for |twin's reconstruction - reconstruction|
    region_share: float  # the region's share of the pixels
    judge: dict[str, float | None] = field(default_factory=dict)  # classifier accuracies (module doc)


@dataclass
class EditBenchmark:
    results: list[EditResult]
    alphas: list[float]
    faces_per_direction: int
    vgg_weights: str  # of the VGG feature distance
    caption: list[str]  # how the faces and the distance were made
    classifier_trusted: dict[str, bool]  # attribute -> whether the classifier scores it (None: no classifier)
    shown: dict[tuple[str, str, str], np.ndarray] = field(default_factory=dict, repr=False)  # the picture's cells

    def table(self) -> pd.DataFrame:
        """One row per result: every number flat (edits.csv)."""
        rows = []
        for r in self.results:
            row = {"attribute": r.attribute, "direction": r.direction, "method": r.method, "faces": r.faces,
                   "best_alpha": r.best_alpha}
            for name in ("floor", "ceiling", "at_one", "at_best", "position_at_one", "position_at_best"):
                row.update({f"{name}_{m}": v for m, v in getattr(r, name).items()})
            row.update(inside_region=r.inside_region, twin_inside_region=r.twin_inside_region,
                       region_share=r.region_share, **{f"judge_{k}": v for k, v in r.judge.items()})
            rows.append(row)
        return pd.DataFrame(rows)


@dataclass
class TwinGroup:
    """The faces of one attribute and direction with their twins, at the run's size and crop."""

    attribute: str
    direction: str
    faces: torch.Tensor  # (N, 3, S, S) in [0, 1]
    twins: torch.Tensor
    regions: torch.Tensor  # (N, S, S) 0/1: the pixels the attribute's region reaches, one pixel wider (_widened)
    face_labels: np.ndarray  # (N,) bool: the faces' value of the attribute
    twin_labels: np.ndarray  # (N, 40) bool: the twins' labels


@torch.no_grad()
def decode(run, z: torch.Tensor) -> torch.Tensor:
    """Decoded (N, 3, S, S) in [0, 1] on the CPU, in batches of a fixed size, so equal latents decode equally."""
    out = [run.model.decode(z[i:i + _BATCH].contiguous().to(run.device)).float().clamp(0, 1).cpu()
           for i in range(0, len(z), _BATCH)]
    return torch.cat(out)


class TwinDistance:
    """The run's VGG feature distance (its reconstruction term, by its definition in model/losses.py) of images to
    one group's twins: the twins' features are computed once, however many images are compared with them."""

    def __init__(self, vgg: DFCLoss, twins: torch.Tensor):
        self.vgg, self.device = vgg, vgg.vgg.mean.device
        self.chunks = [t.to(self.device) for t in twins.split(_BATCH)]
        self.features: list = [None] * len(self.chunks)

    def _features(self, j: int, x: torch.Tensor):
        if x is not self.chunks[j]:
            return self.vgg.vgg(x)
        if self.features[j] is None:
            self.features[j] = self.vgg.vgg(x)
        return self.features[j]

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        per_image, reduction = self.vgg.definition.per_image, self.vgg.reduction
        return torch.cat([per_image(lambda x, j=j: self._features(j, x), t, images[j * _BATCH:(j + 1) * _BATCH]
                                    .to(self.device), reduction).float().cpu() for j, t in enumerate(self.chunks)])


@torch.no_grad()
def score(images: torch.Tensor, targets: torch.Tensor, distance: TwinDistance | None = None) -> dict[str, torch.Tensor]:
    """metric -> (N,) of each image against its target; 'vgg' only with `distance` (to these targets)."""
    out = {"mse": mse(images, targets), "psnr": psnr(images, targets), "ssim": ssim(images, targets)}
    if distance is not None:
        out["vgg"] = distance(images)
    return out


def _means(scores: dict[str, torch.Tensor]) -> dict[str, float]:
    return {m: float(v.double().mean()) for m, v in scores.items()}


def position(floor: dict[str, float], ceiling: dict[str, float], edit: dict[str, float]) -> dict[str, float | None]:
    """metric -> where `edit` lies from `floor` (0) to `ceiling` (1), by how far each is from the twin."""
    out = {}
    for m in floor:
        bad = _BADNESS[m]
        f, c, e = bad(floor[m]), bad(ceiling[m]), bad(edit[m])
        # floor and ceiling within float noise of each other (a model that draws every face alike): no scale
        out[m] = None if not np.isfinite(f - c) or abs(f - c) <= _SAME * max(abs(f), abs(c)) else (f - e) / (f - c)
    return out


def _inside(change: torch.Tensor, regions: torch.Tensor) -> float | None:
    """The share of a change (N, 3, S, S) inside the regions (N, S, S), pooled over the faces."""
    total = float(change.abs().sum(1).double().sum())
    return None if total == 0 else float((change.abs().sum(1) * regions).double().sum()) / total


def measure_group(run, group: TwinGroup, edits: dict[str, torch.Tensor], alphas, vgg: DFCLoss | None,
                  classifier=None, encoded=None) -> tuple[list[EditResult], dict[str, list[np.ndarray]]]:
    """Score the edited latents `edits` (method -> (N, K, D), one latent per face and alpha of `alphas`, which
    holds 1) of one group against its twins; `encoded`: the faces' and twins' posterior means, if already known.
    Returns a result per method and, per method, the first face's picture cells."""
    alphas = [float(a) for a in alphas]
    if 1.0 not in alphas:
        raise UserError(f"the alphas {alphas} leave out 1; the benchmark reports every edit at alpha = 1")
    z_face, z_twin = encoded if encoded is not None else (_encode(run, group.faces), _encode(run, group.twins))
    recon, twin_recon = decode(run, z_face), decode(run, z_twin)
    vgg = TwinDistance(vgg, group.twins) if vgg is not None else None
    floor, ceiling = _means(score(recon, group.twins, vgg)), _means(score(twin_recon, group.twins, vgg))
    results, shown = [], {}
    one = alphas.index(1.0)
    for method, latents in edits.items():
        # alpha = 0 is z + 0 v = z, bit for bit: the reconstruction already decoded
        images = [recon if a == 0 else decode(run, latents[:, k]) for k, a in enumerate(alphas)]
        pixels = [_means(score(image, group.twins)) for image in images]  # cheap: every alpha, to find the best
        best = min(range(len(alphas)), key=lambda k: (pixels[k]["mse"], abs(alphas[k] - 1)))
        # the VGG distance (the costly one) at the two alphas reported only
        at_one = _means(score(images[one], group.twins, vgg))
        at_best = at_one if best == one else _means(score(images[best], group.twins, vgg))
        edit = images[one]
        results.append(EditResult(
            group.attribute, group.direction, method, len(group.faces), floor, ceiling, at_one, alphas[best],
            at_best, position(floor, ceiling, at_one), position(floor, ceiling, at_best),
            _inside(edit - recon, group.regions), _inside(twin_recon - recon, group.regions),
            float(group.regions.double().mean()), _judge(classifier, group, recon, twin_recon, edit)))
        shown[method] = _cells(group, recon, edit, twin_recon)
    return results, shown


def _encode(run, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        run.model.eval()
        return torch.cat([run.model.encode(images[i:i + _BATCH].to(run.device))[0].float().cpu()
                          for i in range(0, len(images), _BATCH)])


def _judge(classifier, group: TwinGroup, recon, twin_recon, edit) -> dict[str, float | None]:
    """The classifier's accuracy on the attribute: on the twins, their reconstructions and the edits (against the
    twins' labels), on the faces' reconstructions (against the faces' labels); on every other attribute it scores,
    on the twins' reconstructions; and the share of faces where another scored attribute's label changes from the
    reconstruction to the edit (Figure 6's leak measure) and to the twin's reconstruction (the leak an edit as
    good as this model's drawing of the true twin would show: the judge's and the decoder's share of the leak)."""
    if classifier is None:
        return dict.fromkeys(("twin", "twin_recon", "edit", "face_recon", "twin_recon_others", "others_changed_edit",
                              "others_changed_twin"))
    col = classifier.column(group.attribute)
    truth = group.twin_labels[:, list(ATTRIBUTE_NAMES).index(group.attribute)]
    others = [n for n in classifier.scored() if n != group.attribute]
    other_cols = [classifier.column(n) for n in others]
    said = {name: (classifier.predict(images) > 0.5).numpy()
            for name, images in (("twin", group.twins), ("twin_recon", twin_recon), ("edit", edit), ("recon", recon))}
    other_truth = group.twin_labels[:, [list(ATTRIBUTE_NAMES).index(n) for n in others]]

    def changed(name) -> float | None:  # any other scored label differs from the reconstruction's
        return float((said[name][:, other_cols] != said["recon"][:, other_cols]).any(1).mean()) if others else None

    return {"twin": float((said["twin"][:, col] == truth).mean()),
            "twin_recon": float((said["twin_recon"][:, col] == truth).mean()),
            "edit": float((said["edit"][:, col] == truth).mean()),
            "face_recon": float((said["recon"][:, col] == group.face_labels).mean()),
            "twin_recon_others": float((said["twin_recon"][:, other_cols] == other_truth).mean()) if others else None,
            "others_changed_edit": changed("edit"), "others_changed_twin": changed("twin_recon")}


def _cells(group: TwinGroup, recon, edit, twin_recon) -> list[np.ndarray]:
    """The first face's picture: face, twin, reconstruction, edit, twin's reconstruction (each (S, S, 3) uint8),
    and a heat map of |edit - reconstruction| with the region's edge."""
    images = to_uint8(torch.stack([group.faces[0], group.twins[0], recon[0], edit[0], twin_recon[0]]))
    return list(images) + [heat_map(edit[0] - recon[0], group.regions[0])]


def heat_map(change: torch.Tensor, region: torch.Tensor, full_scale: float = 0.2) -> np.ndarray:
    """(3, S, S) change -> (S, S, 3) uint8: black (none) through red to yellow (a mean change of `full_scale` or
    more over the channels), the region's edge in cyan."""
    t = (change.abs().mean(0) / full_scale).clamp(0, 1).numpy()
    rgb = np.stack([np.clip(2 * t, 0, 1), np.clip(2 * t - 1, 0, 1), np.zeros_like(t)], axis=-1)
    inside = region.numpy() >= 0.5
    edge = inside & ~(np.roll(inside, 1, 0) & np.roll(inside, -1, 0) & np.roll(inside, 1, 1) & np.roll(inside, -1, 1))
    rgb[edge] = (0.0, 0.9, 0.9)
    return (rgb * 255).round().astype(np.uint8)


def _widened(regions: torch.Tensor) -> torch.Tensor:
    """(N, S, S) bool -> float 0/1, one pixel wider each way: the resize to the run's size and the JPEG's 8x8
    blocks carry a change drawn inside a region a pixel or so past its edge."""
    return torch.nn.functional.max_pool2d(regions.float().unsqueeze(1), 3, stride=1, padding=1).squeeze(1)


def load_group(twins: TwinSet, faces, attribute: str, direction: str, size: int, crop: str,
               n: int) -> TwinGroup | None:
    """The first `n` faces with twins of `attribute` in `direction`, with their twins and regions (None: none)."""
    rows = twins.rows(attribute, direction).head(n)
    if rows.empty:
        return None
    where = {name: i for i, name in enumerate(faces.ids)}
    missing = [f for f in rows.face if f not in where]
    if missing:
        raise UserError(f"the twins at {twins.folder} are of face {missing[0]}, which {faces.root} lacks; render "
                        "them again for these faces (dfc-vae synth --twins)")
    face_paths = [faces.paths[where[f]] for f in rows.face]
    box = crop_box(ALIGNED_SIZE, crop)  # the regions are drawn on the aligned image
    regions = []
    for rel in rows.region:
        with Image.open(twins.path(rel)) as im:
            regions.append(np.asarray(im.convert("L").resize((size, size), Image.BOX, box=box)) > 0)
    return TwinGroup(attribute, direction, to_tensor(load_faces(face_paths, size, crop)),
                     to_tensor(load_faces([twins.path(p) for p in rows.file], size, crop)),
                     _widened(torch.from_numpy(np.stack(regions))),
                     faces.labels.loc[list(rows.face), attribute].to_numpy(bool),
                     rows[list(ATTRIBUTE_NAMES)].to_numpy() > 0)


def require_twins(faces, attributes=None) -> TwinSet:
    """The twins of a FaceSet's test faces, with those of `attributes` among them; a UserError saying how to render
    them where there are none."""
    if faces.synthetic is None:
        raise UserError(f"{faces.root} holds no synthetic faces; the edit benchmark needs the twins that only "
                        "`dfc-vae synth --twins` can render")
    twins = open_twins(faces.root)
    if twins is None:
        raise UserError(f"{faces.root} has no twins ({twins_folder(faces.root)}); render them with `dfc-vae synth "
                        f"--out {faces.root} --n {faces.synthetic.get('n')} --seed {faces.synthetic.get('seed')} "
                        "--twins`")
    check_names(list(attributes or ()), twins.attributes, "attribute with twins", listing=f"{twins.folder} has twins of")
    return twins


def edit_benchmark(run, data=None, vectors=None, classifier=None, attributes=None, faces_per_direction: int = FACES,
                   alphas=ALPHAS, vgg_weights: str | None = None, cache_dir=None, progress: bool = False) -> EditBenchmark:
    """Measure the run's attribute edits against the twins of its data's test faces (module doc).

    `run`: a LoadedRun; `data`: a FaceSet or folder (default: the run's); `vectors`: method -> AttributeVectors
    (default: both methods over the training split, from one encoding); `classifier`: the judge (None: no judge
    check); `attributes`: those to measure (default: every one with twins); `faces_per_direction`: at most this many
    faces per attribute and direction; `vgg_weights`: of the VGG distance (default: the run's)."""
    n = int(require(faces_per_direction, "--faces", "int", min=1))
    faces = open_faces_for_run(run, data)
    twins = require_twins(faces, attributes)
    attributes = list(attributes or twins.attributes)
    if vectors is None:
        vectors = attribute_vectors_by_method(run, faces, "train", cache_dir, progress)
    loss = run.config.loss if LOSS_LAYERS[run.config.loss] else "vae123"  # a pixel-loss run: VAE-123's layers
    vgg = DFCLoss(loss, vgg_weights=vgg_weights or run.config.vgg_weights).to(run.device)
    size, crop = run.config.image_size, faces.resolve_crop(run.config.crop)
    results, shown = [], {}
    for attribute in attributes:
        for direction, sign in (("+", 1.0), ("-", -1.0)):
            group = load_group(twins, faces, attribute, direction, size, crop, n)
            if group is None:
                continue
            encoded = (_encode(run, group.faces), _encode(run, group.twins))
            edits = {m: walk(encoded[0], sign * v.vector(attribute), alphas) for m, v in vectors.items()
                     if attribute in v.usable}
            found, cells = measure_group(run, group, edits, alphas, vgg, classifier, encoded)
            results += found
            shown.update({(attribute, direction, m): c for m, c in cells.items()})
    synthetic = faces.synthetic is not None
    caption = provenance(synthetic, run.meta.get("vgg_weights", ""))
    caption += [f"{line} (for the VGG feature distance)" for line in provenance(False, vgg.vgg_weights_description)
                if line not in caption]
    trusted = {a: a in classifier.scored() for a in attributes} if classifier is not None else {}
    return EditBenchmark(results, [float(a) for a in alphas], n, vgg.vgg_weights_description,
                         caption + [f"{faces.description}, test split; model {run.name} step {run.step}"], trusted,
                         shown)
