"""Markdown tables for the reports (demo, evaluation, loss comparison, benchmark, GPU check): one format everywhere;
and the one way a share is written as a percentage in them and on the terminal."""

from __future__ import annotations

from typing import Iterable, Sequence

_RULES = {"": "---", "left": ":---", "right": "---:", "center": ":---:"}


def markdown_table(header: Sequence[str], rows: Iterable[Sequence], align: Sequence[str] | None = None) -> list[str]:
    """The lines of a GitHub-flavoured markdown table; cells are written with str().

    `align`: one entry per column, "" (the renderer's default), "left", "right" or "center";
    without it every column has the default rule `---`."""
    if align is None:
        align = [""] * len(header)
    if len(align) != len(header) or any(a not in _RULES for a in align):
        raise ValueError(f"align needs one of {sorted(_RULES)} per column ({len(header)}), got {list(align)}")
    lines = ["| " + " | ".join(header) + " |", "|" + "".join(_RULES[a] + "|" for a in align)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def percent(share: float | None, decimals: int = 1, unit: str = "%", missing: str = "-", nan_missing: bool = True) -> str:
    """`share` (a fraction) as a percentage with `decimals` places, then `unit`; `missing` where it could not be
    measured: None, and nan unless `nan_missing` is False (then nan is written as Python writes it, "nan%")."""
    if share is None or (nan_missing and share != share):
        return missing
    return f"{100 * share:.{decimals}f}{unit}"
