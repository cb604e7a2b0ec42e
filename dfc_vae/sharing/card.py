"""The model card of an exported model (its README.md): YAML front matter as the Hugging Face Hub reads
it, then how the model was made, generated from the run so that the folder explains itself.

The provenance line (`LoadedRun.description`) opens the body; the studio and its captions show the
same line, so a picture can be traced to the card.
"""

from __future__ import annotations

from dfc_vae.editing.attributes import FEW_EXAMPLES, attribute_notes
from dfc_vae.runs.prior import FILE, describe_prior
from dfc_vae.runs.run import LOSS_TITLES, vgg_description
from dfc_vae.util.tables import markdown_table

PAPER = ("Xianxu Hou, Linlin Shen, Ke Sun, Guoping Qiu, *Deep Feature Consistent Variational Autoencoder*, "
         "WACV 2017 ([arXiv:1610.00291](https://arxiv.org/abs/1610.00291))")
LICENSE_NOTE = ("# license: left for you to choose before publishing (CelebA's images are for non-commercial "
                "research only)")


def front_matter(contents) -> list[str]:
    """The YAML block: library, tags, the dataset where it is a named one, an empty license."""
    meta = contents.run.meta
    synthetic = bool(meta.get("synthetic"))
    tags = ["dfc-vae", "vae", "variational-autoencoder", "face-editing", "pytorch", contents.run.config.loss]
    if synthetic:
        tags.append("synthetic-data")
    lines = ["---", "library_name: dfc_vae", "tags:"] + [f"- {t}" for t in tags]
    if meta.get("source") == "celeba" and not synthetic:
        lines += ["datasets:", "- celeba"]
    return lines + [LICENSE_NOTE, "license:", "---", ""]


def _training(run) -> list[str]:
    cfg, meta = run.config, run.meta
    data = meta.get("data_description") or str(cfg.data)
    images = f"{meta['images']:,} images, {meta.get('train_images', '?'):,} in the training split" \
        if isinstance(meta.get("images"), int) and isinstance(meta.get("train_images"), int) else "image count not recorded"
    return [
        "## How it was made", "",
        f"- **Paper**: {PAPER}; this is the `dfc_vae` reproduction.",
        f"- **Loss**: {LOSS_TITLES.get(cfg.loss, cfg.loss)}: alpha = {cfg.alpha:g} x KL + beta = {cfg.beta:g} x "
        f"reconstruction, `--reduction {cfg.reduction}`.",
        f"- **Data**: {data} ({images}; source {meta.get('source', '?')}, layout {meta.get('layout', '?')}, "
        f"{cfg.crop} crop).",
        f"- **VGG19 weights**: {vgg_description(meta.get('vgg_weights', ''))} (recorded: `{meta.get('vgg_weights', '?')}`).",
        f"- **Training**: {run.step:,} steps, {cfg.epochs} epoch(s) of batch {cfg.batch_size}, Adam lr {cfg.lr:g} "
        f"(beta1 {cfg.beta1:g}), weight average {cfg.ema_decay or 'off'}, latent calibration "
        f"{'on' if cfg.calibrate_latent else 'off'}, seed {cfg.seed}, {meta.get('precision', '?')} on {meta.get('device', '?')}.",
        f"- **Model**: {cfg.image_size}x{cfg.image_size} faces, {cfg.latent_dim}-d latent, base width {cfg.base_channels}; "
        f"dfc_vae {meta.get('dfc_vae', '?')}, torch {meta.get('torch', '?')}.", ""]


def _vectors(contents) -> list[str]:
    if not contents.vectors:
        return ["## Attribute vectors", "", "None: the run had no attribute-vector file (`dfc-vae attributes`).", ""]
    lines = ["## Attribute vectors", ""]
    table = contents.attribute_table()
    judged = ("whether the run's attribute classifier can score the edit ('few examples': under "
              f"{FEW_EXAMPLES} labelled faces on one side)" if contents.scored is not None
              else "no attribute classifier was trained, so no edit is measured")
    for name, v in contents.vectors.items():
        default = " (the default)" if name == contents.default_vectors else ""
        lines += [f"`{name}`{default}: {len(v.names)} vectors, method {v.meta.get('method', '?')}, from the "
                  f"{v.meta.get('split', '?')} split of {v.meta.get('data_description', '?')} (step {v.meta.get('step', '?')}); "
                  f"the last column: {judged}, in the order the studio offers them.", ""]
        notes = attribute_notes(v, contents.scored)  # the studio's marks, in its order
        rows = [[a, table[name][a]["with"], table[name][a]["without"], notes[a] or "scored"] for a in notes]
        rows += [[a, table[name][a]["with"], table[name][a]["without"], "labels all one value: no vector"]
                 for a in v.constant]
        lines += markdown_table(["attribute", "faces with", "faces without", "edit"], rows) + [""]
    return lines


def _evaluation(contents) -> list[str]:
    s = contents.evaluation
    if not s:
        return ["## Evaluation", "", "Not evaluated (`dfc-vae evaluate --run RUN` before exporting adds the numbers).", ""]
    rows = [["mean attribute accuracy (linear probe on latent means)", f"{100 * s['mean_accuracy']:.1f}%"],
            ["majority-class baseline", f"{100 * s['mean_majority_baseline']:.1f}%"],
            ["PSNR / SSIM (test split)", f"{s['psnr']:.2f} dB / {s['ssim']:.3f}"],
            ["active latent units", f"{s['active_units']} of {s['latent_dim']}"]]
    return ["## Evaluation", "", "From `dfc-vae evaluate` on the run:", ""] + markdown_table(["measure", "value"], rows) + [""]


def _figures(contents) -> list[str]:
    if not contents.figures:
        return []
    titles = {"fig5": "Figure 5 (interpolation)", "fig6": "Figure 6 (attribute arithmetic)"}
    lines = ["## Figures", ""]
    for key, path in contents.figures.items():
        lines += [f"![{titles[key]}](figures/{path.name})", ""]
    return lines


def _prior(contents) -> list[str]:
    if contents.prior is None:
        return ["## Prior", "", "Random faces are drawn from N(0, I); no prior fitted to the faces was kept "
                "(`dfc-vae fit-prior --run RUN` before exporting adds one).", ""]
    return ["## Prior", "", f"`{FILE}`: a full-covariance Gaussian and a Gaussian mixture {describe_prior(contents.prior)}; "
            "`dfc-vae sample --prior mixture` draws from it, `--where Smiling=1` draws faces with chosen "
            "attributes (it keeps the fitted faces' posterior means and labels for that).", ""]


def _usage(contents, ref: str) -> list[str]:
    default = contents.vectors.get(contents.default_vectors)
    usable = default.usable if default is not None else []
    attr = "Smiling" if "Smiling" in usable or not usable else usable[0]  # an attribute the default vectors can add
    return ["## Use it", "", 'Install `pip install "dfc_vae[align,studio,hub]"` (`hub` for a Hub id), then:', "",
            "```python", "from dfc_vae import edit_faces, load_model, read_photo",
            f'run, vectors = load_model("{ref}")  # the model and its attribute vectors',
            f'recon, edited = edit_faces(run, vectors, read_photo("face.jpg", run.config.image_size, run.config.crop)[None], '
            f'{{"{attr}": 1.0}})', "```", "",
            "or from the command line (`--align` finds and aligns the face in any photo):", "", "```bash",
            f"dfc-vae edit photo.jpg --align --model {ref} --set {attr}=1 --out edited.png",
            f"dfc-vae studio --model {ref}", "```", ""]


def model_card(contents, ref: str) -> str:
    """README.md of an export: `contents` a sharing.export.ExportContents, `ref` how the example names the model."""
    run = contents.run
    body = [f"# DFC-VAE: {run.path.name}", "", f"**Provenance**: {run.description}", "",
            f"A Deep Feature Consistent VAE trained with `dfc-vae train` and exported with `dfc-vae export` "
            f"(step {run.step:,}).", ""]
    parts = [_training(run), _vectors(contents), _prior(contents), _evaluation(contents), _figures(contents),
             _usage(contents, ref)]
    return "\n".join(front_matter(contents) + body + [line for part in parts for line in part])
