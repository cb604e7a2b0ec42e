"""The one exception for mistakes a user can make (paths, layouts, names, values).

The CLI turns it into one line on stderr and exit status 2; anything else is our bug and keeps
its traceback.
"""

import sys

from tqdm import tqdm


class UserError(Exception):
    """A problem the user can fix. The message names the problem and the fix, in one line."""


def exit_status(prog: str, action) -> int:
    """Run `action()` for an entry point (the `dfc-vae` command, an experiment script) and return its
    exit status: 0 when it finishes; a UserError becomes one line on stderr, "PROG: error: MESSAGE",
    and status 2; Ctrl-C becomes "PROG: interrupted" (or "PROG: MESSAGE" when the interruption carries
    one, e.g. what training saved; nothing when its message is empty) and status 130. Open progress bars
    are closed first, so the line starts on a line of its own."""
    try:
        action()
    except UserError as e:
        _end_progress_bars()
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        _end_progress_bars()
        message = str(e.args[0]) if e.args else "interrupted"
        if message:
            print(f"{prog}: {message}", file=sys.stderr)
        return 130
    return 0


def _end_progress_bars() -> None:
    """Close every progress bar still open (ending its line)."""
    for bar in list(tqdm._instances):
        bar.close()


def check_names(names, known, what: str = "attribute", where: str = "", listing: str = "valid names") -> None:
    """A UserError naming the first of `names` not in `known` and listing `known`: "unknown attribute
    'Smilling' in --set; valid names: ..." (`where` says where it was given, `listing` whose names follow)."""
    known = list(known)
    for name in names:
        if name not in known:
            raise UserError(f"unknown {what} '{name}'{where}; {listing}: {', '.join(known)}")
