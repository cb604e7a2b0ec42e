"""`dfc-vae demo`: the whole job offline, in one command, on synthetic faces.

synthetic faces -> decoded-image cache -> train a VAE-123 -> attribute vectors -> attribute
classifier -> Figure 5 -> Figure 6 -> the prior gap -> edits against their twins -> random faces of each prior ->
report.md with the measured numbers against the targets (the wall times per machine: docs/demo.md).
"""

from __future__ import annotations

import functools
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from dfc_vae.runs.config import TrainConfig, check_allowed, setting, setting_like
from dfc_vae.util.argtypes import require
from dfc_vae.util.choices import VECTOR_METHODS
from dfc_vae.util.errors import UserError
from dfc_vae.util.fileio import output_folder, write_json, write_text
from dfc_vae.util.tables import markdown_table, percent
from dfc_vae.util.machine import describe_machine
from dfc_vae.data.faces import synthetic_faces
from dfc_vae.app.demo_progress import DemoWork, Progress, twin_estimates
from dfc_vae.model.losses import VGG19_IMAGENET_URL, load_vgg19_features
from dfc_vae.data.synth import VISIBLE_ATTRIBUTES, render_celeba

# The modules that do the demo's work (training, the figures, the classifier, the twins) are imported in the
# functions that use them: the command line imports this module to build `dfc-vae demo`'s flags (DemoSettings),
# and `dfc-vae --help` should not load them.

if TYPE_CHECKING:
    from dfc_vae.evaluation.classifier import AttributeClassifier
    from dfc_vae.evaluation.diagnostics import PriorGap
    from dfc_vae.evaluation.edits import EditBenchmark
    from dfc_vae.app.demo_samples import DemoSamples
    from dfc_vae.evaluation.figures import Figure5Summary, Figure6Summary, Headline
    from dfc_vae.runs.run import LoadedRun

MARKER = "demo.json"
# The edit benchmark's share of the demo: twins of these attributes, this many test faces per attribute and direction
EDIT_ATTRIBUTES = ("Smiling", "Eyeglasses")
EDIT_FACES = 50

# The demo's targets on synthetic faces (demo defaults, test split).
TARGETS = {
    "flip_Smiling": (">=", 0.80, "+Smiling at alpha = 1 makes non-smiling faces smiling"),
    "flip_Eyeglasses": (">=", 0.80, "+Eyeglasses at alpha = 1 puts eyeglasses on faces without"),
    "others_changed_max_edit": ("<=", 0.10, "worst edit: share of faces where another scored attribute changes label"),
    "monotone_rows": (">=", 0.90, "Fig. 5 rows whose changing attribute scores move monotonically"),
}


@dataclass
class DemoSettings:
    """The demo's defaults: the one place they live, declared as the training settings are (runs/config.py);
    the training settings among them keep TrainConfig's allowed values. The CLI's flags, with their help,
    are built from them."""

    # CelebA's split proportions (~80% train, ~10% test): a test split with 200+ faces wearing eyeglasses at CelebA's
    # 6.5% (200+ faces per edit)
    n: int = setting(34000, "synthetic faces rendered (about 80% train, 10% test)", min=200)
    image_size: int = setting_like(TrainConfig, "image_size", 32, "face size in pixels the VAE is trained at")
    # 5 epochs: the fifth takes the worst leak under 10% at most seeds measured, not all (docs/demo.md)
    epochs: int = setting_like(TrainConfig, "epochs", 5, "passes of the VAE over the training faces")
    # at 32x32 a CPU costs about the same per image from batch 8 to 64, so within the same time a small
    # batch buys eight times the optimizer steps; the paper's 64 gives blurrier faces (docs/demo.md)
    batch_size: int = setting_like(TrainConfig, "batch_size", 8, "the VAE's batch size")
    lr: float = setting_like(TrainConfig, "lr", 5e-4, "Adam's learning rate (the paper's: 5e-4)")
    lr_schedule: str = setting_like(TrainConfig, "lr_schedule", "constant",
                                    "constant, or cosine: a decay to 0 over the training (after the warm-up)")
    warmup_steps: int = setting_like(TrainConfig, "warmup_steps", 0,
                                     "optimizer steps of a linear warm-up of the learning rate (0: none)")
    # the weights evaluated and used: their moving average over ~1,000 steps (training.average.WeightAverage); at the
    # demo's constant rate the last weights swing from epoch to epoch (docs/demo.md)
    ema_decay: float = setting_like(TrainConfig, "ema_decay", 0.999,
                                    "decay per step of the weights' moving average, the weights used (0: the last)")
    # one pass over the 27k training faces and the VAE's reconstructions of them (the steps of the faces' two passes
    # without the reconstructions): >= 99% test accuracy on every drawn attribute
    classifier_epochs: int = setting(1, "passes of the attribute classifier over its training images", min=1)
    # a judge trained on the faces alone gets 1-3% of the labels of the VAE's faces wrong (docs/demo.md)
    classifier_on_reconstructions: bool = setting(
        True, "train the attribute classifier on the VAE's reconstructions of the training faces too, with their "
              "faces' labels (--no-classifier-on-reconstructions: on the faces alone)")
    faces_per_edit: int = setting(300, "test faces per Figure 5 / Figure 6 row kind (fewer where the split has fewer)",
                                  min=1)
    show: int = setting(2, "rows drawn per row kind in the figures (at most --faces-per-edit)", min=0)
    seed: int = setting_like(TrainConfig, "seed", 0, "seed of the faces, the training and the figures' choices")
    reduction: str = setting_like(TrainConfig, "reduction", "sum",
                                  "the loss scale (model/losses.py): sum (per-image sums) or paper")
    # regression keeps an edit off the attributes it co-occurs with; the report measures the other method too
    vector_method: str = setting("regression", "attribute vectors: regression or mean-difference", choices=VECTOR_METHODS)
    vgg_weights: str = setting("auto", "VGG19's weights: auto (ImageNet if it can be had), imagenet, random or a PATH")


def _imagenet_available(timeout: float = 10.0) -> bool:
    """Whether torchvision's VGG19 ImageNet weights are cached or can be downloaded now."""
    url = VGG19_IMAGENET_URL
    if (Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]).is_file():
        return True
    host = url.split("/")[2]
    try:  # a quick reachability check, so an offline machine does not wait on a download
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def choose_vgg_weights(choice: str, say=print) -> str:
    if choice != "auto":
        return choice

    if _imagenet_available():
        try:
            load_vgg19_features("imagenet")
            say("VGG19: ImageNet weights (torchvision)")
            return "imagenet"
        except UserError as e:
            say(f"VGG19: ImageNet weights unavailable ({str(e)[:80]}...)")
    say("VGG19: ImageNet weights cannot be had offline; using RANDOM VGG19 weights (said in every output)")
    return "random"


def _prepare_out(out: Path) -> None:
    output_folder(out, purpose=" for the demo")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise UserError(f"--out {out} is not empty and is not an earlier demo; choose a new or empty folder")
        for name in ("run", "figures", "report.md", MARKER):  # an earlier demo: start over (data is reused)
            p = out / name
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / MARKER, {"status": "running"})


@dataclass
class _Results:
    """What the demo made and measured: its report's contents."""

    settings: DemoSettings
    vgg: str  # the perceptual network's weights chosen
    run: LoadedRun
    classifier: AttributeClassifier
    fig5: Figure5Summary
    fig6: Figure6Summary
    gap: PriorGap
    numbers: Headline
    methods: dict[str, Headline]  # attribute-vector method -> the headline numbers with its vectors
    times: dict[str, float]
    wall: float
    edits: EditBenchmark | None = None  # Smiling and Eyeglasses edits against their twins
    samples: DemoSamples | None = None  # the random faces of each prior, measured (app/demo_samples.py)


def run_demo(out: str | Path = "dfc_vae_demo", settings: DemoSettings = DemoSettings(), cache_dir=None,
             progress: bool = True, say=print) -> Path:
    """Run every step into `out` and return the path of report.md."""
    from dfc_vae.editing.attributes import attribute_vectors_by_method
    from dfc_vae.evaluation.classifier import classifier_for_run
    from dfc_vae.evaluation.figure6 import headline
    from dfc_vae.runs.run import load_run
    from dfc_vae.training.loop import train

    s = settings
    check_settings(s)
    out = Path(out)
    _prepare_out(out)
    cache_dir = Path(cache_dir) if cache_dir else out / "cache"
    steps = Progress(say, DemoWork(s.n, s.epochs, s.batch_size, s.classifier_epochs, s.faces_per_edit,
                                          s.classifier_on_reconstructions), total=11)
    steps.left.update(twin_estimates(EDIT_FACES, len(EDIT_ATTRIBUTES), len(VECTOR_METHODS)))
    with steps.step(1, f"rendering {s.n} synthetic CelebA-format faces (seed {s.seed})", "synth"):
        data = render_celeba(out / "data", n=s.n, seed=s.seed, progress=progress)
    with steps.step(2, "choosing the perceptual network's weights"):
        vgg = choose_vgg_weights(s.vgg_weights, say)
    with steps.step(3, f"training VAE-123 at {s.image_size}x{s.image_size}, {s.epochs} epochs, batch {s.batch_size}",
                    "train"):
        run_dir = train(_train_config(s, data, out / "run", vgg, cache_dir), progress=progress,
                        on_progress=steps.training)
    run = load_run(run_dir, "auto")
    with steps.step(4, f"attribute vectors (both methods; {s.vector_method} drawn) over the training split",
                    "attribute_vectors"):
        by_method = attribute_vectors_by_method(run, data, "train", cache_dir, progress)
        vectors = by_method[s.vector_method]
        vectors.save(run_dir / "attributes_train.safetensors")
    with steps.step(5, f"training the attribute classifier ({s.classifier_epochs} epochs)", "classifier"):
        clf = classifier_for_run(run, data, cache_dir, retrain=True, progress=progress, epochs=s.classifier_epochs,
                                 seed=s.seed, on_reconstructions=s.classifier_on_reconstructions)
    say(f"      classifier scores {len(clf.scored())} attributes: "
        + ", ".join(f"{n} {clf.accuracy[n]:.3f}" for n in clf.scored()))
    f5, f6, gap = _figures(steps, s, run, data, vectors, clf, out / "figures", cache_dir, progress)
    numbers = headline(f5, f6)
    methods = {m: numbers if m == s.vector_method else _edits_with(run, data, v, clf, f5, s, cache_dir)
               for m, v in by_method.items()}
    edits = _edits_against_twins(steps, run, data, by_method, clf, out / "figures", progress)
    samples = _samples(steps, s, run, data, clf, f5, out / "figures", cache_dir, progress)
    results = _Results(s, vgg, run, clf, f5, f6, gap, numbers, methods, steps.times, steps.wall(), edits, samples)
    return _write_report(out, results, say)


def _edits_against_twins(steps: Progress, run, data: Path, by_method, clf, figs: Path, progress: bool):
    """Steps 9 and 10, after every figure (so that they change none of their numbers): the twins of the first
    EDIT_FACES test faces per attribute and direction, and the edit benchmark with both vector methods."""
    from dfc_vae.data.synth.twinset import render_twins
    from dfc_vae.evaluation.edits import edit_benchmark
    from dfc_vae.evaluation.edits_report import write_edit_benchmark

    with steps.step(9, f"rendering twins: {EDIT_FACES} test faces per direction of {', '.join(EDIT_ATTRIBUTES)} "
                       "with the attribute flipped", "twins"):
        render_twins(data, EDIT_ATTRIBUTES, EDIT_FACES, progress=progress)
    with steps.step(10, "edits against their twins (both vector methods)", "edits"):
        bench = edit_benchmark(run, data, by_method, clf, EDIT_ATTRIBUTES, EDIT_FACES)
        write_edit_benchmark(bench, figs)
    return bench


def _train_config(s: DemoSettings, data: Path, run_out: Path, vgg: str, cache_dir: Path) -> TrainConfig:
    """The demo's VAE-123 training settings."""
    return TrainConfig(data=str(data), out=str(run_out), loss="vae123", vgg_weights=vgg, image_size=s.image_size,
                       reduction=s.reduction, ema_decay=s.ema_decay, epochs=s.epochs, batch_size=s.batch_size,
                       lr=s.lr, lr_schedule=s.lr_schedule, warmup_steps=s.warmup_steps,
                       seed=s.seed, cache_dir=str(cache_dir), checkpoint_every=0, device="auto")


def check_settings(s: DemoSettings) -> None:
    """Refuse settings the demo cannot run, before anything is rendered or written (UserError)."""
    check_allowed(s)
    require(s.show, "--show", "int", min=0, max=s.faces_per_edit)
    _train_config(s, Path("data"), Path("run"), "random", Path("cache")).validate()


def _edits_with(run, data, vectors, clf, f5, s: DemoSettings, cache_dir: Path) -> Headline:
    """Figure 6's measures (not drawn) with other attribute vectors, on the same faces, with the same classifier."""
    from dfc_vae.evaluation.figure6 import figure6, headline

    f6 = figure6(run, data, vectors, clf, None, n_faces=s.faces_per_edit, n_show=0, seed=s.seed, cache_dir=cache_dir,
                 progress=False)
    return headline(f5, f6.summary)


def _figures(steps: Progress, s: DemoSettings, run, data, vectors, clf, figs: Path, cache_dir: Path, progress: bool):
    """Steps 6 to 8: Figures 5 and 6 and the prior gap, written into `figs`; returns their summaries."""
    from dfc_vae.evaluation.diagnostics import prior_gap
    from dfc_vae.evaluation.figure6 import figure6
    from dfc_vae.evaluation.figure5 import figure5
    from dfc_vae.evaluation.figures import as_dict

    common = dict(n_faces=s.faces_per_edit, seed=s.seed, cache_dir=cache_dir, progress=progress)
    with steps.step(6, f"Figure 5: interpolations, {s.faces_per_edit} rows per kind, measured", "fig5"):
        f5 = figure5(run, data, clf, figs / "fig5_interpolation.png", n_show=s.show, **common)
    with steps.step(7, f"Figure 6: attribute arithmetic, {s.faces_per_edit} faces per edit, measured", "fig6"):
        f6 = figure6(run, data, vectors, clf, figs / "fig6_arithmetic.png", n_show=s.show, **common)
    with steps.step(8, "the prior gap: Figure 5's fake -> fake rows with their ends drawn from the training posteriors",
                    "prior_gap"):
        gap = prior_gap(run, data, clf, **common)
        write_json(figs / "prior_gap.json", as_dict(gap))
    return f5.summary, f6.summary, gap


def _samples(steps: Progress, s: DemoSettings, run, data, clf, f5, figs: Path, cache_dir: Path, progress: bool):
    """Step 9, after everything else: the prior fitted to the faces, and each prior's random faces measured."""
    from dfc_vae.app.demo_samples import demo_samples

    with steps.step(11, "random faces: a prior fitted to the training faces, and each prior's samples measured",
                    "samples"):
        return demo_samples(run, data, clf, f5, figs, s.seed, s.faces_per_edit, cache_dir, progress)


def _write_report(out: Path, r: _Results, say) -> Path:
    """report.md, and the marker file saying the demo is done with its numbers; returns report.md's path."""
    from dfc_vae.evaluation.figures import as_dict

    report = out / "report.md"
    write_text(report, _report(r))
    met = targets_met(r.numbers)
    write_json(out / MARKER, {"status": "done", "settings": r.settings.__dict__, "vgg_weights": r.vgg,
                              "numbers": as_dict(r.numbers), "targets_met": met,
                              "vector_methods": {m: as_dict(h) for m, h in r.methods.items()}, "times_s": r.times,
                              "wall_s": round(r.wall, 1), "machine": describe_machine(r.run.device)})
    say(f"done in {r.wall:.0f}s on {describe_machine(r.run.device)}: {sum(met.values())}/{len(TARGETS)} targets met; "
        f"report: {report}")
    return report


def _met(value: float, op: str, target: float) -> bool:
    return value >= target if op == ">=" else value <= target


def _trusted(numbers: Headline, key: str) -> bool | None:
    """Whether the classifier is trusted on the attribute a flip_ number measures (None: not a flip rate, or not measured)."""
    return getattr(numbers, f"trusted_{key.removeprefix('flip_')}", None)


def targets_met(numbers: Headline) -> dict[str, bool]:
    """Target name -> met; a flip rate judged by a classifier it does not trust on its attribute is not met."""
    return {k: _met(getattr(numbers, k), op, t) and _trusted(numbers, k) is not False
            for k, (op, t, _) in TARGETS.items() if getattr(numbers, k) is not None}


# ----------------------------------------------------------------------------- report.md

# the demo's tables write a share that could not be measured (nan) as it always has: "nan%"
_percent = functools.partial(percent, nan_missing=False)


def _report(r: _Results) -> str:
    """report.md: its sections, one empty line apart."""
    sections = [_header(r), _targets_section(r.numbers), _classifier_section(r.classifier), _figure6_section(r.fig6),
                _methods_section(r),
                _figure5_section(r.fig5), _prior_gap_section(r.gap), _twins_section(r),
                *([r.samples.lines] if r.samples else []), _files_section()]
    return "\n\n".join("\n".join(lines) for lines in sections)


def _header(r: _Results) -> list[str]:
    s, run = r.settings, r.run
    weights = ("VGG19 with **RANDOM** weights (ImageNet weights were not available offline)" if r.vgg == "random"
               else f"VGG19 weights: {run.meta.get('vgg_weights', r.vgg)}")
    return ["# dfc-vae demo report", "",
            "**How this was made:** " + synthetic_faces(s.seed) + "; " + weights + ".",
            "",
            f"Settings: {s.n} faces, {s.image_size}x{s.image_size} px, VAE-123 (alpha 1, beta 0.5, "
            f"{s.reduction} reduction), {s.vector_method} attribute vectors, {s.epochs} epochs, "
            f"batch {s.batch_size}, seed {s.seed}; {run.step} optimizer steps; "
            + (f"the weights' moving average (decay {s.ema_decay})." if s.ema_decay else "the last weights."),
            f"Wall time: **{r.wall:.0f} s** on {describe_machine(run.device)} "
            f"({', '.join(f'{k} {v:.0f}s' for k, v in r.times.items())}); torch {torch.__version__}, device "
            f"{run.device}, training arithmetic {run.meta.get('precision', 'fp32')}."]


def _targets_section(numbers: Headline) -> list[str]:
    from dfc_vae.evaluation.classifier import MIN_ACCURACY

    met = targets_met(numbers)
    rows = []
    for key, (op, target, text) in TARGETS.items():
        if key in met:
            invalid = _trusted(numbers, key) is False
            note = f" (classifier below {MIN_ACCURACY:.0%} on it: not a valid measurement)" if invalid else ""
            rows.append([text, _percent(getattr(numbers, key)) + note, f"{op} {_percent(target)}", "yes" if met[key] else "**no**"])
    return ["## Targets (test split)", ""] + markdown_table(["measure", "value", "target", "met"], rows)


def _classifier_section(clf: AttributeClassifier) -> list[str]:
    from dfc_vae.evaluation.classifier import MIN_ACCURACY, MIN_BALANCED

    scored = clf.scored()
    decoded = clf.report.get("accuracy_reconstructed", {})
    rows = [[n, _percent(clf.accuracy[n]), _percent(clf.report["balanced_accuracy"][n]),
             _percent(decoded.get(n)), "yes" if n in scored else "no"] for n in VISIBLE_ATTRIBUTES]
    trained_on = ("and the VAE's reconstructions of them" if clf.report.get("trained_on_reconstructions")
                  else "alone (not on the VAE's reconstructions)")
    return (["## Attribute classifier (test-split accuracy)", "",
             f"Trained on {clf.report['train_images']} training faces {trained_on}, tested on "
             f"{clf.report['test_images']} faces and on the VAE's reconstructions of them (the faces it judges are drawn "
             f"by the VAE). It scores only attributes with accuracy >= {MIN_ACCURACY:.0%} and balanced accuracy >= "
             f"{MIN_BALANCED:.0%} on the faces.", ""]
            + markdown_table(["attribute", "accuracy", "balanced", "accuracy on reconstructions", "scored"], rows))


def _figure6_section(f6: Figure6Summary) -> list[str]:
    rows = []
    for name, r in f6.rows.items():
        if not r.faces:
            rows.append([name, 0, "-", "-", "-", "-"])
            continue
        rows.append([name, r.faces, _percent(r.flip_rate), _percent(r.at_start), _percent(r.others_changed),
                     f"{_percent(r.others_changed_max)} ({r.others_changed_max_attribute})"])
    header = ["edit", "faces", "label reached at alpha = 1", "at alpha = 0", "others changed (any)", "worst single other"]
    return (["## Figure 6: attribute arithmetic z + alpha v (alpha = 0 ... 1)", "",
             "![Figure 6](figures/fig6_arithmetic.png)", ""] + markdown_table(header, rows))


def _methods_section(r: _Results) -> list[str]:
    rows = [[m + (" (drawn above)" if m == r.settings.vector_method else ""),
             _percent(h.flip_Smiling), _percent(h.flip_Eyeglasses), _percent(h.others_changed_max_edit)]
            for m, h in r.methods.items()]
    return (["### The attribute-vector methods (editing/attributes.py) on this run", "",
             "The same faces, edits and classifier; only the vectors differ.", ""]
            + markdown_table(["method", "+Smiling at alpha = 1", "+Eyeglasses at alpha = 1",
                              "worst edit: others changed"], rows))


def _figure5_section(f5: Figure5Summary) -> list[str]:
    from dfc_vae.evaluation.figures import OwnAttributeMeasures

    rows = []
    for name, r in f5.rows.items():
        if not r.faces:
            rows.append([name, 0, "-", "-", "-"])
            continue
        own = (f"{_percent(r.monotone_own_attribute)} ({r.own_attribute})" if isinstance(r, OwnAttributeMeasures) else "-")
        rows.append([name, r.faces, f"{_percent(r.monotone)} ({r.rows_with_changing_scores})", own,
                     _percent(r.monotone_all_attributes)])
    header = ["row", "rows measured", "monotone, changing scores (rows)", "monotone, own attribute", "monotone, all"]
    return ([f"## Figure 5: {f5.method} interpolation (alpha = 0 ... 1)", "",
             "![Figure 5](figures/fig5_interpolation.png)", "",
             f"Monotone within a tolerance of {f5.monotone_tolerance} in probability. *Changing scores*: attributes "
             "whose predicted label differs at the two ends, plus the row's own attribute (rows where no label "
             "changes are left out); *all*: every scored attribute, also those that stay on one side of 0.5.", ""]
            + markdown_table(header, rows))


def _prior_gap_section(gap: PriorGap) -> list[str]:
    ev, mo = gap.aggregate_posterior.covariance_eigenvalues, gap.aggregate_posterior.second_moment_per_dimension
    rows = [[name, f"{_percent(r.monotone)} ({r.rows_with_changing_scores})",
             ", ".join(f"{k} {v}" for k, v in list(r.failing_scores.items())[:3]) or "-"]
            for name, r in gap.sources.items()]
    return (["### The prior gap: fake -> fake rows with other ends", "",
             f"The same rows and judge, with both ends drawn four ways (posteriors of {gap.fit_faces} faces of "
             f"the {gap.split} split). Where rows between real faces' posteriors are monotone and rows between "
             "prior samples are not, the prior's samples land where the encoder puts no faces. The aggregate "
             "posterior's covariance "
             f"has eigenvalues {ev.min:.2f} to {ev.max:.2f} (median {ev.median:.2f}) and E[z_j^2] "
             f"{mo.min:.2f} to {mo.max:.2f} per dimension, against all 1 under N(0, I).", ""]
            + markdown_table(["ends of the rows", "monotone, changing scores (rows)", "most frequent failing scores"], rows))


def _twins_section(r: _Results) -> list[str]:
    from dfc_vae.evaluation.edits_report import edits_section

    return edits_section(r.edits, "figures/edits.png") if r.edits is not None and r.edits.results else []


def _files_section() -> list[str]:
    return ["Per-cell classifier probabilities: `figures/fig5_interpolation.csv`, `figures/fig6_arithmetic.csv`; "
            "summaries: the `.json` files beside them (the prior gap: `figures/prior_gap.json`). Rows with fewer "
            "faces than asked for are limited by the test split (eyeglasses are on 6.5% of faces, as in CelebA).", ""]
