"""Every dotted `dfc_vae.NAME` that the code, its docstrings and the docs mention can be imported: a renamed or moved
module leaves no stale name behind for a reader to follow."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOTTED = re.compile(r"\bdfc_vae(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
SOURCES = ["dfc_vae/**/*.py", "dfc_vae/**/*.html", "experiments/*.py", "experiments/*.ipynb", "docs/*.md",
           "README.md", "tests/**/*.py"]


def mentioned_names() -> dict[str, str]:
    names: dict[str, str] = {}
    for pattern in SOURCES:
        for path in sorted(ROOT.glob(pattern)):
            if path.name == Path(__file__).name:  # this file names stale ones on purpose
                continue
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                for name in DOTTED.findall(line):
                    names.setdefault(name, f"{path.relative_to(ROOT)}:{number}")
    return names


def resolves(name: str) -> bool:
    """`name` is a module, or an attribute reached from the longest importable module prefix."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_every_dotted_dfc_vae_name_imports():
    names = mentioned_names()
    assert len(names) > 20  # the scan finds the names the code and docs use
    stale = {name: where for name, where in names.items() if not resolves(name)}
    assert not stale, "names that do not import: " + "; ".join(f"{n} ({w})" for n, w in sorted(stale.items()))


def test_a_stale_name_is_caught():
    assert resolves("dfc_vae.model.losses.DFCLoss") and resolves("dfc_vae.data.synth")
    assert not resolves("dfc_vae.figures") and not resolves("dfc_vae.model.losses.NoSuchThing")
