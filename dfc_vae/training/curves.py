"""Training curves as a picture: loss, reconstruction, KL and active units against the step.

Drawn from a run's metrics.csv (training batches, a row every `log_every` steps: lines) and
epochs.csv (the fixed held-out set at every epoch's end: dots, below the lines because they decode the
posterior mean, not a sample, in eval mode and with the weights' average when the run keeps one); several runs share one figure in
different colours, for comparison. Drawn with matplotlib's Agg canvas (no display, no global
pyplot state) and written atomically.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from dfc_vae.util.errors import UserError
from dfc_vae.util.fileio import write_bytes

# matplotlib takes half a second to import: imported where the curves are drawn, not by every training process
# that imports this module with the loop.

# (title, metrics.csv column, epochs.csv column)
PANELS = (("loss", "loss", "eval_loss"), ("reconstruction", "recon", "eval_recon"), ("KL", "kl", "eval_kl"),
          ("active units", "active_units", "active_units"))


def _read(path: Path, columns: list[str]) -> dict[str, list[float]]:
    """Columns of a CSV as floats (rows with a missing or unreadable value left out of that column)."""
    out: dict[str, list[tuple[float, float]]] = {c: [] for c in columns}
    if not path.is_file():
        return {c: [] for c in columns}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                step = float(row["step"])
            except (KeyError, TypeError, ValueError):
                continue  # a half-written last line
            for c in columns:
                try:
                    value = float(row[c])
                except (KeyError, TypeError, ValueError):
                    continue
                if math.isfinite(value):
                    out[c].append((step, value))
    return out


def run_curves(run: str | Path) -> tuple[dict, dict]:
    """(training, held-out) series of a run: {column: [(step, value), ...]}."""
    run = Path(run)
    if not (run / "metrics.csv").is_file():
        raise UserError(f"{run} holds no metrics.csv; pass --run a run directory made by `dfc-vae train`")
    return (_read(run / "metrics.csv", [p[1] for p in PANELS]), _read(run / "epochs.csv", [p[2] for p in PANELS]))


def plot_curves(runs: list[str | Path], out: str | Path, labels: list[str] | None = None) -> Path:
    """One figure of four panels, each run in its own colour; written atomically to `out` (PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not runs:
        raise UserError("no run given; pass --run RUN [RUN ...]")
    labels = labels or [Path(r).resolve().name for r in runs]
    series = [run_curves(r) for r in runs]
    fig = Figure(figsize=(11, 7), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2).flatten()
    colours = [f"C{i % 10}" for i in range(len(runs))]
    for ax, (title, train_col, eval_col) in zip(axes, PANELS):
        for (train, held_out), label, colour in zip(series, labels, colours):
            if train[train_col]:
                ax.plot(*zip(*train[train_col]), color=colour, lw=1.2, label=f"{label} (training batches)")
            if held_out[eval_col]:
                ax.plot(*zip(*held_out[eval_col]), "o--", color=colour, ms=4, lw=0.8, label=f"{label} (held-out, z = posterior mean, epoch end)")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    write_bytes(out, buf.getvalue())
    return Path(out)
