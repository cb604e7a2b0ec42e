"""The edit benchmark's files and report section: edits.png (a row per edit: face | twin | reconstruction | edit |
twin's reconstruction | heat map of the change), edits.csv (every number), edits.json, and the markdown table that
`dfc-vae edits`, `dfc-vae evaluate` and the demo's report share."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from dfc_vae.evaluation.edits import EditBenchmark, edit_benchmark
from dfc_vae.util.errors import UserError
from dfc_vae.util.fileio import write_json, write_text
from dfc_vae.util.images import save_figure
from dfc_vae.util.tables import markdown_table, percent
from dfc_vae.evaluation.classifier import FOLDER, load_classifier
from dfc_vae.data.synth.twinset import open_twins

COLUMNS = ["face", "twin", "recon.", "edit", "twin rec.", "change"]  # the edit at alpha = 1
FILES = ("edits.png", "edits.csv", "edits.json")


def edit_name(attribute: str, direction: str, method: str | None = None) -> str:
    return f"{direction}{attribute}" + (f" ({method})" if method else "")


def as_json(bench: EditBenchmark) -> dict:
    """edits.json: the settings and every result (the pictures' cells left out)."""
    return {"alphas": bench.alphas, "faces_per_direction": bench.faces_per_direction,
            "vgg_weights": bench.vgg_weights, "caption": bench.caption,
            "classifier_scores": bench.classifier_trusted,
            "results": [_finite(dataclasses.asdict(r)) for r in bench.results]}


def _finite(obj):
    """NaN (a distance not measured) as null, for strict JSON readers."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    return None if isinstance(obj, float) and not np.isfinite(obj) else obj


def write_edit_benchmark(bench: EditBenchmark, out: str | Path) -> dict[str, Path]:
    """Write edits.png, edits.csv and edits.json into the folder `out`; returns name -> path."""
    if not bench.results:
        raise UserError("nothing to measure: no attribute has both twins and a vector; render twins of other "
                        "attributes (dfc-vae synth --twins) or compute the vectors (dfc-vae attributes)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in FILES}
    write_text(paths["edits.csv"], bench.table().to_csv(index=False, float_format="%.6g"))
    write_json(paths["edits.json"], as_json(bench))
    keys = [(r.attribute, r.direction, r.method) for r in bench.results if (r.attribute, r.direction, r.method) in bench.shown]
    rows = [np.stack(bench.shown[k]) for k in keys]
    title = ("each row: a test face, its twin (the ground-truth edit), the reconstruction, the edit z +/- v, the "
             "twin's reconstruction, and |edit - reconstruction| (red to yellow) with the attribute's region (cyan)")
    save_figure(paths["edits.png"], rows, bench.caption + [title], row_labels=[edit_name(*k) for k in keys],
                footer="; ".join(bench.caption), column_labels=COLUMNS, corner="alpha 1:",
                metadata={"summary": "edits.json"})
    return paths


def _pos(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def edits_section(bench: EditBenchmark, picture: str | None = None, heading: str = "##") -> list[str]:
    """The report's section: what the numbers mean, then one table row per edit and vector method."""
    def pct(v) -> str:  # whole percents, '-' where not measured
        return percent(v, 0, nan_missing=False)

    rows = []
    for r in bench.results:
        judge = r.judge
        judge_cell = f"{pct(judge.get('twin_recon'))} / {pct(judge.get('edit'))}" if judge.get("edit") is not None else "-"
        if judge.get("edit") is not None and not bench.classifier_trusted.get(r.attribute, True):
            judge_cell += " (not scored)"
        leak_cell = (f"{pct(judge.get('others_changed_edit'))} / {pct(judge.get('others_changed_twin'))}"
                     if judge.get("others_changed_edit") is not None else "-")
        rows.append([edit_name(r.attribute, r.direction), r.method, r.faces,
                     f"{r.floor['mse']:.4f} -> {r.ceiling['mse']:.4f}",
                     " / ".join(_pos(r.position_at_one[m]) for m in ("mse", "ssim", "vgg")),
                     f"{r.best_alpha:g}", " / ".join(_pos(r.position_at_best[m]) for m in ("mse", "vgg")),
                     f"{pct(r.inside_region)} ({pct(r.twin_inside_region)}; {pct(r.region_share)})", judge_cell,
                     leak_cell])
    header = ["edit", "vectors", "faces", "MSE floor -> ceiling", "position at alpha 1 (MSE / SSIM / VGG)", "best alpha",
              "position at best (MSE / VGG)", "change inside region (twin's; region's area)",
              "judge right: twin recon. / edit", "others changed: edit / twin recon."]
    text = [f"{heading} Edits against their twins (ground truth)", "",
            "Each test face is edited (z +/- alpha v) and compared with its twin: the same face drawn with the "
            "attribute flipped. *Position* reads the distance to the twin between the face's own reconstruction "
            "(0: the edit did nothing) and the twin's reconstruction (1: as close as this model draws the twin; "
            "where the two lie close, the scale is short and positions swing far); "
            f"*best alpha* is the alpha of {', '.join(f'{a:g}' for a in bench.alphas)} whose edits come closest in "
            "MSE. *Inside region*: the share of the change |edit - reconstruction| at alpha 1 that lies where the "
            "renderer draws the attribute (beside the twin's own share and the region's share of the pixels). "
            "*Judge right*: the attribute classifier's accuracy, against the twins' true labels, on the twins' "
            "reconstructions and on the edits at alpha 1. *Others changed*: the share of faces where another "
            "attribute the classifier scores changes label from the reconstruction to the edit (Figure 6's leak "
            "measure, on these faces) and to the twin's reconstruction (what an edit as good as this model's "
            "drawing of the true twin would score: the share of the leak owed to the decoder and the judge, not "
            "the vector).", ""]
    if picture:
        text += [f"![edits against twins]({picture})", ""]
    return text + markdown_table(header, rows)


def kept_classifier(run, faces):
    """The run's attribute classifier where one was trained for these faces at its size (RUN/classifier/), else None:
    the evaluation's judge check uses it but trains none."""
    folder = Path(run.path) / FOLDER
    if not (folder / "classifier.json").is_file():
        return None
    clf = load_classifier(folder, run.device)
    return clf if clf.report.get("data") == faces.identity and clf.model.image_size == run.config.image_size else None


def evaluation_edits(run, faces, vgg_weights=None, cache_dir=None, progress: bool = False) -> EditBenchmark | None:
    """`dfc-vae evaluate`'s edit benchmark: every attribute with twins, both vector methods, the run's own
    classifier as the judge where it has one; None where the faces have no twins."""
    if faces.synthetic is None or open_twins(faces.root) is None:
        return None
    bench = edit_benchmark(run, faces, classifier=kept_classifier(run, faces), vgg_weights=vgg_weights,
                           cache_dir=cache_dir, progress=progress)
    return bench if bench.results else None
