"""Sharing a trained model: `dfc-vae export` writes a folder laid out as a Hugging Face Hub model
repository, which `--model DIR_OR_ID`, `load_model` and `DFCVAE.from_pretrained` read back.

    model.safetensors            the weights (safetensors: no pickled code)
    config.json                  the model's shape, the training settings, the run's provenance, the step,
                                 per attribute-vector file and attribute: the labelled faces with and without
                                 it, whether its labels were all one value, whether the classifier scores it
    attributes_*.safetensors     every attribute-vector file of the run, under its own name
    classifier/                  the run's attribute classifier, when one was trained (what decides "scored")
    prior.safetensors            the prior fitted to the training faces (runs/prior.py), when the run has one for
                                 this step (`dfc-vae fit-prior`): `run.prior` of load_model
    figures/                     Figures 5 and 6, when the run has them
    README.md                    the model card (sharing/card.py): front matter for the Hub and how it was made

Everything is read and checked before the first file is written. The files are written into a hidden folder
inside `out` first and moved into place only when all of them are there, so a full disk or a failed write leaves
`out` as it was (an earlier export in it included).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from dfc_vae.editing.attributes import AttributeVectors, load_attribute_vectors
from dfc_vae.evaluation.classifier import FOLDER as CLASSIFIER_FOLDER, scored_attributes
from dfc_vae.runs.prior import FILE as PRIOR_FILE, FittedPrior
from dfc_vae.runs.run import LoadedRun, load_exported, load_run
from dfc_vae.util.errors import UserError
from dfc_vae.util.fileio import output_folder, write_bytes
from dfc_vae.sharing.card import model_card

DEFAULT_VECTORS = "attributes_train.safetensors"  # what `dfc-vae attributes` writes by default
FIGURE_PATTERNS = {"fig5": "fig5*.png", "fig6": "fig6*.png"}


@dataclass
class ExportContents:
    """What an export holds besides the weights, gathered from the run before anything is written."""

    run: LoadedRun
    vectors: dict[str, AttributeVectors] = field(default_factory=dict)  # file name -> vectors
    scored: list[str] | None = None  # None: no classifier was trained
    evaluation: dict | None = None  # RUN/eval/summary.json
    figures: dict[str, Path] = field(default_factory=dict)  # "fig5"/"fig6" -> the PNG
    prior: FittedPrior | None = None  # the prior fitted to the faces for this step, when the run has one

    @property
    def default_vectors(self) -> str | None:
        if DEFAULT_VECTORS in self.vectors:
            return DEFAULT_VECTORS
        return next(iter(self.vectors), None)

    def attribute_table(self) -> dict[str, dict[str, dict]]:
        """file -> attribute -> {with, without, constant, scored} (scored: None without a classifier)."""
        scored = set(self.scored or ())
        return {name: {a: {"with": int(p), "without": int(q), "constant": bool(p == 0 or q == 0),
                           "scored": (a in scored) if self.scored is not None else None}
                       for a, p, q in zip(v.names, v.n_pos, v.n_neg)} for name, v in self.vectors.items()}


def _vector_files(run: LoadedRun) -> dict[str, AttributeVectors]:
    """Every attribute-vector file directly in the run directory (other safetensors files are not vectors)."""
    found = {}
    for path in sorted(run.path.glob("*.safetensors")):
        try:
            vectors = load_attribute_vectors(path)
        except UserError:  # not an attribute-vector file
            continue
        if vectors.latent_dim != run.config.latent_dim:
            raise UserError(f"{path} holds {vectors.latent_dim}-d vectors but the run's latent has "
                            f"{run.config.latent_dim} dimensions; move it out of the run or recompute it")
        found[path.name] = vectors
    return found


def _figures(run_dir: Path) -> dict[str, Path]:
    """Figures 5 and 6 drawn for the run: in the run, its figures/ folder, or (the demo's layout) the
    figures/ folder beside it; the first found of each."""
    found = {}
    for key, pattern in FIGURE_PATTERNS.items():
        for folder in (run_dir, run_dir / "figures", run_dir.parent / "figures"):
            hits = sorted(folder.glob(pattern)) if folder.is_dir() else []
            if hits:
                found[key] = hits[0]
                break
    return found


def gather(run_dir: str | Path, checkpoint: str | Path | None = None) -> ExportContents:
    """Read everything an export of the run holds, checking it (a UserError before anything is written)."""
    run = load_run(run_dir, "cpu", checkpoint)
    summary = run.path / "eval" / "summary.json"
    try:
        evaluation = json.loads(summary.read_text()) if summary.is_file() else None
    except ValueError:
        raise UserError(f"{summary} is damaged; run `dfc-vae evaluate --run {run.path}` again") from None
    return ExportContents(run, _vector_files(run), scored_attributes(run.path), evaluation, _figures(run.path),
                          run.prior)


def export_run(run_dir: str | Path, out: str | Path, checkpoint: str | Path | None = None,
               model_ref: str | None = None) -> Path:
    """Write the run's model, vectors, classifier, figures and model card into `out` (module doc).
    `model_ref`: how the card's example names the model (a Hub id; default: the folder)."""
    contents = gather(run_dir, checkpoint)
    out = output_folder(out)
    copies = {f"figures/{p.name}": p for p in contents.figures.values()}
    classifier = contents.run.path / CLASSIFIER_FOLDER
    if contents.scored is not None:
        copies.update({f"{CLASSIFIER_FOLDER}/{p.name}": p for p in sorted(classifier.iterdir()) if p.is_file()})
    card = model_card(contents, model_ref or str(out))
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out))  # inside `out`: the moves below are renames
    try:
        _write_export(staging, contents, copies, card)
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            target = out / path.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _write_export(out: Path, contents, copies: dict[str, Path], card: str) -> None:
    """The export's files (module doc) written into `out`."""
    run = contents.run
    run.model.save_pretrained(out, extra={
        "step": run.step, "meta": run.meta, "training_config": run.config.to_dict(), "run": run.path.name,
        "description": run.description, "default_attributes": contents.default_vectors,
        "attributes": contents.attribute_table(), "evaluation": contents.evaluation,
        "figures": sorted(f"figures/{p.name}" for p in contents.figures.values())})
    for name, vectors in contents.vectors.items():
        vectors.save(out / name)
    for target, source in copies.items():
        write_bytes(out / target, source.read_bytes())
    if contents.prior is not None:
        contents.prior.save(out / PRIOR_FILE)
    write_bytes(out / "README.md", card.encode())


def default_vectors_file(run: LoadedRun) -> Path | None:
    """The attribute-vector file a model comes with: a run directory's RUN/attributes_train.safetensors, the
    file an export names as its default; None where there is none."""
    if not run.source:
        path = run.path / DEFAULT_VECTORS
        return path if path.is_file() else None
    name = json.loads((run.path / "config.json").read_text()).get("default_attributes")
    return run.path / name if name else None


def exported_vectors(run: LoadedRun, attributes: str | Path | None = None) -> AttributeVectors | None:
    """The attribute vectors to use with a model: `attributes` when given, else its own
    (default_vectors_file; None where it has none)."""
    path = attributes or default_vectors_file(run)
    return load_attribute_vectors(path, run.config.latent_dim) if path else None


class ModelWithVectors(NamedTuple):
    """A model ready for `edit_faces` and the attribute vectors it came with (None: it has none)."""

    run: LoadedRun
    vectors: AttributeVectors | None


def load_model(dir_or_id: str | Path, device: str = "cpu", attributes: str | Path | None = None) -> ModelWithVectors:
    """An exported model (a folder, or a Hub id user/name with the extra dfc_vae[hub]) and its attribute
    vectors (`attributes` overrides the export's own): `run, vectors = load_model(...)`, then
    `edit_faces(run, vectors, faces, {"Smiling": 1})`."""
    run = load_exported(dir_or_id, device)
    return ModelWithVectors(run, exported_vectors(run, attributes))
