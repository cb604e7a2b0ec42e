"""A small attribute classifier that judges decoded faces (the measurement behind Figs. 5 and 6).

A plain CNN trained on the labelled training images of the data a run was trained on (from the
decoded-image cache, at the run's image size and crop) to predict every attribute the data is
labelled with (CelebA's 40, or the columns of a folder's labels file). Its
per-attribute accuracy on the test split decides which attributes it may score: only those it
predicts with at least MIN_ACCURACY, and whose balanced accuracy is at least MIN_BALANCED (a rare
attribute that the network simply never predicts can be 97% "accurate" and still know nothing;
on synthetic faces this keeps the 26 label-only attributes out).

The classifier judges faces the VAE drew, which are smoother than the faces it drew them from, and
a judge trained on the photos alone misreads some of them: on the demo's runs it gets 1-3% of the
other attributes of a twin's reconstruction wrong, against under 0.5% on the rendered faces. So
classifier_for_run can add the run's own reconstructions of the training faces, with the same
labels, to the training images (`on_reconstructions`), and it always reports the accuracy on the
reconstructions of the test faces beside the accuracy on the faces themselves.

It is kept with the run, in RUN/classifier/: model.safetensors and classifier.json (names,
architecture, test accuracies, provenance).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save
from torch import nn
from tqdm.auto import tqdm

from dfc_vae.data.batches import fits_on_device, upload_rows
from dfc_vae.data.celeba import ATTRIBUTE_NAMES
from dfc_vae.data.sources import open_faces
from dfc_vae.runs.split import FaceSplit, open_faces_for_run
from dfc_vae.util.errors import UserError
from dfc_vae.util.fileio import write_bytes, write_json

MIN_ACCURACY = 0.95
MIN_BALANCED = 0.90
FOLDER = "classifier"


class AttributeCNN(nn.Module):
    """(B, 3, S, S) floats in [0, 1] -> (B, A) logits. Conv3x3-BN-ReLU-MaxPool stages down to 4x4."""

    def __init__(self, image_size: int = 64, num_attributes: int = len(ATTRIBUTE_NAMES), width: int = 32):
        super().__init__()
        self.image_size, self.num_attributes, self.width = image_size, num_attributes, width
        stages = int(math.log2(image_size // 4))
        layers, c_in = [], 3
        for i in range(stages):
            c_out = width * 2 ** min(i, 2)
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(c_in * 16, num_attributes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features((x - 0.5) / 0.25))


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Gaussian blur of each image with its own sigma (pixels): (B, 3, S, S) -> same.

    Training sees blurred copies so that the classifier's verdicts carry over to the VAE's
    decoded faces, which are smoother than the photos."""
    r = 2
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-t.view(1, -1) ** 2 / (2 * sigma.view(-1, 1).clamp_min(1e-3) ** 2))
    k = k / k.sum(1, keepdim=True)  # (B, 5)
    b, c, h, w = x.shape
    y = x.reshape(1, b * c, h, w)
    kc = k.repeat_interleave(c, 0)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="replicate"), kc.view(b * c, 1, 1, -1), groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), kc.view(b * c, 1, -1, 1), groups=b * c)
    return y.view(b, c, h, w)


@dataclass
class AttributeClassifier:
    """A trained AttributeCNN with its attribute names and test-split report."""

    model: AttributeCNN  # eval mode
    names: list[str]
    report: dict  # accuracy / balanced_accuracy / positives per attribute, provenance

    @property
    def accuracy(self) -> dict[str, float]:
        return self.report["accuracy"]

    def scored(self, candidates=None) -> list[str]:
        """Attributes the classifier may score (>= MIN_ACCURACY accuracy and >= MIN_BALANCED balanced
        accuracy on the test split), in official order, optionally restricted to `candidates`."""
        ok = [n for n in self.names if self.report["accuracy"][n] >= MIN_ACCURACY
              and self.report["balanced_accuracy"][n] >= MIN_BALANCED]
        return [n for n in ok if candidates is None or n in candidates]

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """(N, 3, S, S) floats in [0, 1] (clamped here) -> (N, A) probabilities, on the CPU."""
        self.model.eval()
        device = next(self.model.parameters()).device
        out = [torch.sigmoid(self.model(x[i:i + batch_size].to(device).float().clamp(0, 1))).cpu()
               for i in range(0, len(x), batch_size)]
        return torch.cat(out) if out else torch.zeros(0, len(self.names))

    def column(self, name: str) -> int:
        return self.names.index(name)

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        write_bytes(folder / "model.safetensors", save({k: v.contiguous().cpu() for k, v in self.model.state_dict().items()}))
        write_json(folder / "classifier.json", {"names": self.names, "image_size": self.model.image_size,
                                                "width": self.model.width, "report": self.report})
        return folder


def load_classifier(folder: str | Path, device: str | torch.device = "cpu") -> AttributeClassifier:
    """Read RUN/classifier/ (or another folder written by AttributeClassifier.save)."""
    folder = Path(folder)
    if folder.is_dir() and (folder / FOLDER).is_dir():
        folder = folder / FOLDER
    try:
        info = json.loads((folder / "classifier.json").read_text())
        state = load_file(str(folder / "model.safetensors"))
    except (OSError, ValueError) as e:
        raise UserError(f"no attribute classifier in {folder}; train one with `dfc-vae attributes --run RUN --data DIR "
                        "--classifier`") from e
    model = AttributeCNN(info["image_size"], len(info["names"]), info["width"])
    model.load_state_dict(state)
    return AttributeClassifier(model.to(device).eval(), info["names"], info["report"])


def scored_attributes(folder: str | Path) -> list[str] | None:
    """The attributes the classifier kept in `folder` (a run, an exported model, or its classifier/) may
    score; None where no classifier was trained."""
    folder = Path(folder)
    if not (folder / FOLDER / "classifier.json").is_file() and not (folder / "classifier.json").is_file():
        return None
    return load_classifier(folder).scored()


def train_classifier(data, image_size: int, crop: str = "official", cache_dir=None, epochs: int = 4,
                     batch_size: int = 128, lr: float = 2e-3, seed: int = 0, device: str | torch.device = "cpu",
                     max_train: int = 0, progress: bool = True, reconstruct=None,
                     on_reconstructions: bool = False) -> AttributeClassifier:
    """Train an AttributeCNN on the train split of `data` (a FaceSet or a folder) and report its
    test-split accuracy.

    Images come from the same cache (size, crop) as the VAE's, so the classifier sees faces exactly
    as the VAE does. Augmentation: random horizontal flips and Gaussian blur (sigma 0 to 1 px at
    32 px, scaled with the size) so its verdicts transfer to smoother decoded faces.
    `reconstruct`: (N, S, S, 3) uint8 faces -> a model's reconstructions of them, the same shape (see
    reconstructions()); when given, the report also has the accuracy on the reconstructions of the test
    faces, and with `on_reconstructions` the reconstructions of the training faces are trained on too,
    each with its face's labels (an epoch is then a pass over both).
    """
    faces = open_faces(data)
    faces.require_labels()
    crop = faces.resolve_crop(crop)
    train_idx = faces.indices("train")
    test_idx = faces.indices("test")
    if len(test_idx) == 0:
        test_idx = faces.indices("valid")
    if len(train_idx) < batch_size or len(test_idx) == 0:
        raise UserError(f"{faces.root} has {len(train_idx)} training and {len(test_idx)} test images: too few to train the "
                        f"attribute classifier (needs a batch of {batch_size} and a test split); use more faces")
    if max_train:
        train_idx = train_idx[:max_train]
    every = FaceSplit(faces, "all", image_size, crop, cache_dir, progress)
    names = faces.attribute_names
    labels = torch.tensor(faces.labels[names].to_numpy(), dtype=torch.float32)
    device = torch.device(device)
    images = _training_images(every, train_idx, device)  # (N, S, S, 3) uint8, on the GPU when it fits there
    y_train = labels[train_idx].to(device)
    if on_reconstructions:
        if reconstruct is None:
            raise ValueError("on_reconstructions needs `reconstruct`")
        decoded = _rows_reconstructed(every, train_idx, reconstruct, progress, "reconstructing the training faces")
        images = torch.cat([images, decoded.to(images.device)])
        y_train = torch.cat([y_train, y_train])
    t0 = time.perf_counter()
    model = _fit(_initial_model(image_size, len(names), seed).to(device), images, y_train, epochs, batch_size, lr,
                 seed, image_size / 32, progress)
    clf = AttributeClassifier(model, names, {})
    prob = clf.predict(every.images(test_idx))
    truth = labels[test_idx].numpy() > 0.5
    clf.report = _report(prob.numpy() > 0.5, truth, names)
    if reconstruct is not None:
        decoded = _rows_reconstructed(every, test_idx, reconstruct, False, "")
        prob = clf.predict(decoded.permute(0, 3, 1, 2).float().div(255))
        clf.report["accuracy_reconstructed"] = _report(prob.numpy() > 0.5, truth, names)["accuracy"]
    clf.report["trained_on_reconstructions"] = bool(on_reconstructions)
    clf.report.update({"train_images": int(len(train_idx)), "test_images": int(len(test_idx)), "epochs": epochs,
                       "image_size": image_size, "crop": crop, "data": faces.identity,
                       "data_description": faces.description, "synthetic": faces.synthetic is not None,
                       "train_seconds": round(time.perf_counter() - t0, 1),
                       "min_accuracy": MIN_ACCURACY, "min_balanced_accuracy": MIN_BALANCED})
    return clf


def _fit(model: AttributeCNN, images: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int, lr: float,
         seed: int, max_sigma: float, progress: bool) -> AttributeCNN:
    """Train `model` on (N, S, S, 3) uint8 `images` with (N, A) 0/1 labels `y` (on the model's device): AdamW
    with a one-cycle schedule, augmented batches (_augmented). The batches' order and augmentation come from a
    generator seeded with `seed`, and dropout from the global generators, seeded with it here and restored
    after: the classifier depends on its seed, not on what ran before it in the process."""
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * (len(images) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.15)
    bar = tqdm(total=steps, desc="train attribute classifier", unit="step", disable=not progress, dynamic_ncols=True)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        model.train()
        for _ in range(epochs):
            order = _to(torch.randperm(len(images), generator=g), images.device)  # batches gathered where images are
            for b in range(len(images) // batch_size):
                idx = order[b * batch_size:(b + 1) * batch_size]
                x = _augmented(images[idx], g, max_sigma, device)
                loss = F.binary_cross_entropy_with_logits(model(x), y[_to(idx, device)])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.update(1)
                if b % 20 == 0:
                    bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    return model.eval()


def _initial_model(image_size: int, num_attributes: int, seed: int) -> AttributeCNN:
    """A new AttributeCNN whose weights are drawn on the CPU from `seed` alone. Only the CPU generator is
    seeded, and the caller's state of it is restored after: a GPU's generators are never touched."""
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        return AttributeCNN(image_size, num_attributes)


def _training_images(split: FaceSplit, rows: np.ndarray, device: torch.device) -> torch.Tensor:
    """The training faces as one uint8 tensor: on the GPU (uploaded a chunk at a time) when they fit
    there, so that batches are gathered, flipped and blurred without a host copy; else on the host."""
    if fits_on_device(split.cache.images, len(rows), device):
        return upload_rows(split.cache.images, rows, device)
    return torch.from_numpy(np.ascontiguousarray(split.uint8(rows)))


def _rows_reconstructed(split: FaceSplit, rows: np.ndarray, reconstruct, progress: bool, desc: str,
                        chunk: int = 4096) -> torch.Tensor:
    """reconstruct() of the split's cache rows, a chunk at a time (so the floats never exist for all of them
    at once): (N, S, S, 3) uint8 on the CPU."""
    out = [torch.as_tensor(reconstruct(split.uint8(rows[i:i + chunk])))
           for i in tqdm(range(0, len(rows), chunk), desc=desc, unit="chunk", disable=not progress)]
    return torch.cat(out)


def reconstructions(run, batch_size: int = 512):
    """A function (N, S, S, 3) uint8 faces -> the run's reconstructions of them (the decoded posterior
    means, as the figures and the edits draw a face at alpha = 0), (N, S, S, 3) uint8."""

    @torch.no_grad()
    def reconstruct(faces: np.ndarray) -> np.ndarray:
        run.model.eval()
        out = []
        for i in range(0, len(faces), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(faces[i:i + batch_size])).permute(0, 3, 1, 2).float().div(255)
            y = run.model.decode(run.model.encode(x.to(run.device))[0]).float().clamp(0, 1)
            out.append(y.mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu())
        return torch.cat(out).numpy()

    return reconstruct


def _to(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`t` on `device`; from the host to a GPU through pinned memory, so the copy does not wait."""
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def _augmented(x: torch.Tensor, g: torch.Generator, max_sigma: float, device: torch.device) -> torch.Tensor:
    """A batch of (B, S, S, 3) uint8 faces as (B, 3, S, S) floats on `device`, each flipped with
    probability 1/2 and blurred (30% not at all, else by sigma uniform in [0, max_sigma)); the random
    draws come from `g` on the CPU, in this order, and only they are copied to the device."""
    x = _to(x, device).permute(0, 3, 1, 2).float().div_(255)
    flip = torch.rand(len(x), generator=g) < 0.5
    x = torch.where(_to(flip, device).view(-1, 1, 1, 1), x.flip(3), x)
    sigma = torch.rand(len(x), generator=g) * max_sigma
    sigma = torch.where(torch.rand(len(x), generator=g) < 0.3, torch.zeros_like(sigma), sigma)
    return _blur(x, _to(sigma, device))


def _report(pred: np.ndarray, truth: np.ndarray, names: list[str]) -> dict:
    """Per-attribute accuracy, balanced accuracy (mean of the true-positive and true-negative rates)
    and positives, of boolean (N, A) predictions against (N, A) labels."""
    acc = (pred == truth).mean(0)
    pos, neg = truth.sum(0), (~truth).sum(0)
    # an attribute the test split never (or always) shows cannot be validated: balanced accuracy 0
    tpr = np.where(pos > 0, (pred & truth).sum(0) / np.maximum(pos, 1), 0.0)
    tnr = np.where(neg > 0, (~pred & ~truth).sum(0) / np.maximum(neg, 1), 0.0)
    bal = (tpr + tnr) / 2
    return {"accuracy": {n: float(a) for n, a in zip(names, acc)},
            "balanced_accuracy": {n: float(b) for n, b in zip(names, bal)},
            "test_positives": {n: int(p) for n, p in zip(names, pos)}}


def classifier_for_run(run, data=None, cache_dir=None, retrain: bool = False, progress: bool = True,
                       on_reconstructions: bool = False, **train_kw) -> AttributeClassifier:
    """The classifier kept in RUN/classifier/, trained (and saved there) first if it is missing,
    was made for other data, or `retrain`. `data`: a FaceSet or a folder (default: the run's data).
    Its report has its accuracy on the run's reconstructions of the test faces; `on_reconstructions`:
    train it on the reconstructions of the training faces too (module doc)."""
    folder = Path(run.path) / FOLDER
    faces = open_faces_for_run(run, data)
    if not retrain and (folder / "classifier.json").is_file():
        clf = load_classifier(folder, run.device)
        if clf.report.get("data") == faces.identity and clf.model.image_size == run.config.image_size:
            return clf
    clf = train_classifier(faces, run.config.image_size, run.config.crop, cache_dir or run.config.cache_dir,
                           device=run.device, progress=progress, reconstruct=reconstructions(run),
                           on_reconstructions=on_reconstructions, **train_kw)
    clf.save(folder)
    return clf
