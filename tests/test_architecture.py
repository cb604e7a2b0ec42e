"""The shape of the code, checked: the import contracts of pyproject.toml (import-linter: layers,
independence, the data layer's floors), and the size limits that keep each module readable."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dfc_vae"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def test_the_import_contracts_hold(monkeypatch):
    lint = pytest.importorskip("importlinter.cli", reason="pip install import-linter (the test extra)")
    monkeypatch.chdir(ROOT)
    assert lint.lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py"))


def test_every_module_says_what_it_owns_and_stays_small():
    for path in _modules():
        text = path.read_text()
        tree = ast.parse(text)
        name = path.relative_to(ROOT)
        assert ast.get_docstring(tree), f"{name} has no module docstring"
        assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{name} has over {MAX_MODULE_LINES} lines"


def test_no_function_is_over_eighty_lines():
    long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, long
