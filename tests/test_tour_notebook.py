"""The tour notebook, experiments/tour.ipynb: committed without outputs, through the public API, and run end to end
on tiny settings.

The runner is nbclient, Jupyter's own library for executing a notebook in a real kernel (papermill and nbmake run
notebooks through it): one small dependency, and a cell that raises makes `execute` raise CellExecutionError naming
that cell. The tiny settings reach the notebook through the environment variable its settings cell reads
(DFC_VAE_TOUR), which the kernel inherits, so no parameter-injection layer (papermill) is needed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "experiments" / "tour.ipynb"
# Small enough for about a minute on 2 idle cores; every section still runs (k = 1 and 10 nest, as the defaults do).
TINY = {"faces": 300, "steps": 4, "batch_size": 16, "latent_dim": 8, "pca_faces": 100, "grid": 5,
        "mc_samples": 20000, "ll_faces": 4, "ll_k": [1, 10], "show": 4}
CELL_TIMEOUT = 600  # seconds per cell: a busy machine, not the notebook's expected time


def _code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def _settings(monkeypatch, changes: dict) -> dict:
    """SETTINGS as the notebook's first code cell makes them, with DFC_VAE_TOUR = `changes`."""
    monkeypatch.setenv("DFC_VAE_TOUR", json.dumps(changes))
    namespace: dict = {}
    exec(_code_cells(nbformat.read(NOTEBOOK, as_version=4))[0].source, namespace)
    return namespace["SETTINGS"]


def test_the_committed_notebook_is_valid_and_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    cells = _code_cells(nb)
    assert len(cells) > 10
    stale = [i for i, c in enumerate(cells) if c.outputs or c.execution_count is not None]
    assert not stale, f"code cells {stale} hold outputs; clear them (Jupyter: Edit > Clear All Outputs) before committing"
    assert nb.metadata.kernelspec.name == "python3"


def test_the_notebook_uses_the_public_api_only():
    import dfc_vae

    source = "\n".join(c.source for c in _code_cells(nbformat.read(NOTEBOOK, as_version=4)))
    assert not re.search(r"(from|import) dfc_vae\.", source), "the tour imports a dfc_vae submodule"
    imported = re.search(r"from dfc_vae import \(([^)]*)\)", source).group(1)
    names = [n.strip() for n in imported.replace("\n", " ").split(",") if n.strip()]
    assert "log_likelihood" in names and "manifold_grid" in names and "train" in names
    assert set(names) <= set(dfc_vae.__all__), set(names) - set(dfc_vae.__all__)


def test_the_settings_cell_takes_its_overrides_from_the_environment(monkeypatch):
    defaults = _settings(monkeypatch, {})
    assert set(TINY) <= set(defaults)
    assert _settings(monkeypatch, TINY) == {**defaults, **TINY}
    with pytest.raises(KeyError, match="stepz"):
        _settings(monkeypatch, {"stepz": 3})


@pytest.mark.slow
def test_the_notebook_runs_end_to_end_on_tiny_settings(tmp_path, monkeypatch):
    from jupyter_client.kernelspec import KernelSpecManager
    from nbclient import NotebookClient

    assert "python3" in KernelSpecManager().find_kernel_specs(), "no python3 Jupyter kernel: pip install ipykernel"
    monkeypatch.setenv("DFC_VAE_TOUR", json.dumps({**TINY, "out": str(tmp_path / "tour")}))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()  # raises if a cell raises
    text = "\n".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                     for c in _code_cells(nb) for o in c.outputs)
    images = sum("image/png" in o.get("data", {}) for c in _code_cells(nb) for o in c.outputs)
    assert images >= 6  # the manifolds (2), the bound, the reconstructions, Figures 5 and 6
    assert "not CelebA" in text and "VGG19 with RANDOM weights, not ImageNet" in text
    assert "UserError: vae123 was trained with the vae123 feature-perceptual loss" in text
    assert (tmp_path / "tour" / "vae123" / "checkpoints").is_dir()  # it worked where it was told to
