"""README.md as an API: its Python example runs as written, on a copy of the tiny trained run with its
attribute vectors, on the CPU and offline; the names it uses come from `dfc_vae` itself."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import dfc_vae
import numpy as np
import pytest

from dfc_vae.util.images import caption_height

README = Path(__file__).resolve().parents[1] / "README.md"


def python_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README.md has no ```python block"
    return blocks[0]


def test_the_readme_example_runs_on_a_tiny_trained_run(tiny_trained_run, synth_root, tmp_path, monkeypatch):
    from PIL import Image

    from dfc_vae.cli import main

    run = tmp_path / "runs" / "synth"  # the paths the example names, relative to the working directory
    shutil.copytree(tiny_trained_run, run)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "synth").symlink_to(synth_root)
    assert main(["attributes", "--run", str(run), "--data", str(synth_root), "--no-progress"]) == 0
    monkeypatch.chdir(tmp_path)
    exec(compile(python_example(), str(README), "exec"), {"__name__": "readme_example"})
    picture = Image.open(tmp_path / "smiling.png")
    caption = picture.text["caption"].split(" | ")
    assert caption[-1] == "top: reconstructions; bottom: + Smiling" and "synthetic faces" in caption[0]
    size = 64  # the tiny run's 32-px faces enlarged: 2 rows of 8 with 2-pixel gaps, over the caption strip
    assert picture.size == (8 * (size + 2) + 2, 2 * (size + 2) + 2 + caption_height(caption, 8 * (size + 2) + 2))
    face = np.asarray(picture.convert("RGB"))[2:2 + size, 2:2 + size]
    assert np.array_equal(face[::2, ::2], face[1::2, 1::2])  # each pixel as 2 x 2: nearest neighbour


def test_the_example_imports_only_names_dfc_vae_exports():
    imported = re.findall(r"^from dfc_vae import (.+)$", python_example(), re.M)
    assert imported
    for name in (n.strip() for line in imported for n in line.split(",")):
        assert name in dfc_vae.__all__, name
    for name in dfc_vae.__all__:
        assert getattr(dfc_vae, name) is not None, name


@pytest.mark.slow  # starts a Python process
def test_importing_the_package_leaves_the_api_modules_unloaded():
    code = "import sys, dfc_vae; print(sorted(m for m in ('pandas', 'dfc_vae.runs.run', 'dfc_vae.data.faces') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"
