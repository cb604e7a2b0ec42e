"""Stopping training on SIGINT (Ctrl-C) or SIGTERM (a scheduler's notice) without losing the work.

While training runs, the first such signal only asks to stop: the Trainer finishes the step under
way, saves a checkpoint at it and raises `TrainingInterrupted`, which the CLI reports in one line with
exit status 130. A second signal stops at once (KeyboardInterrupt), for someone who will not wait.
"""

from __future__ import annotations

import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on a signal after saving a checkpoint; the message says where and how to go on
    (empty on the processes other than rank 0, which stay quiet)."""


class StopSignals:
    """Within `with StopSignals() as stop:`, SIGINT and SIGTERM set `stop.requested` (the handlers before
    are restored on leaving). Signal handlers can be set from the main thread alone: elsewhere (a
    training started from a worker thread) signals keep their usual effect."""

    def __init__(self):
        self.requested = False
        self._before: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.requested:  # the second signal: stop now
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._before[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._before.items():
            signal.signal(sig, handler)
        self._before.clear()
