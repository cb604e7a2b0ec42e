"""Allowed ranges of numbers: the check behind runs/config.py's settings and the commands' argparse types.

A value outside its range is refused while the arguments are parsed: one line naming the flag,
the value and the allowed range, exit status 2, before anything is read or written.
"""

from __future__ import annotations

import argparse
import math
import numbers

from dfc_vae.util.errors import UserError


def in_range(value, kind: str, bounds: dict) -> bool:
    """Whether `value` is a finite number of `kind` ('int' or 'float') within `bounds`
    (min, max inclusive; above, below exclusive). Integers include numpy's; bools are not numbers."""
    types = numbers.Integral if kind == "int" else (numbers.Integral, float)
    if isinstance(value, bool) or not isinstance(value, types):
        return False
    if not math.isfinite(value):
        return False
    return not (("min" in bounds and value < bounds["min"]) or ("max" in bounds and value > bounds["max"])
                or ("above" in bounds and value <= bounds["above"]) or ("below" in bounds and value >= bounds["below"]))


def allowed_range(kind: str, bounds: dict) -> str:
    """'an integer >= 0', 'a finite number > 0 and < 1', 'an integer from 0 to 4294967295' ..."""
    what = "an integer" if kind == "int" else "a finite number"
    if "min" in bounds and "max" in bounds:
        return f"{what} from {bounds['min']} to {bounds['max']}"
    parts = [f"{op} {bounds[k]}" for k, op in (("min", ">="), ("above", ">"), ("max", "<="), ("below", "<"))
             if k in bounds]
    return f"{what} {' and '.join(parts)}" if parts else what


def number(kind: str, **bounds):
    """An argparse `type` for an int or float (kind 'int' or 'float') within `bounds`
    (min, max inclusive; above, below exclusive); floats must be finite."""
    parse = int if kind == "int" else float

    def check(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {allowed_range(kind, {})}") from None
        if not in_range(value, kind, bounds):
            raise argparse.ArgumentTypeError(f"{text} is out of range; allowed: {allowed_range(kind, bounds)}")
        return value

    check.__name__ = f"{kind} in range"
    return check


positive_int = number("int", min=1)
nonnegative_int = number("int", min=0)
seed = number("int", min=0, max=2**32 - 1)
finite_float = number("float")
nonnegative_float = number("float", min=0)


def require(value, flag: str, kind: str, **bounds):
    """The same check for a value already parsed (e.g. by a parser this module does not build, or a
    Python caller's argument): raises UserError naming `flag`; a string value is shown quoted."""
    if not in_range(value, kind, bounds):
        shown = repr(value) if isinstance(value, str) else value
        raise UserError(f"{flag} {shown} is out of range; allowed: {allowed_range(kind, bounds)}")
    return value
