"""SIGTERM treated like Ctrl-C: both stop the work with :class:`~fewshot.core.errors.Interrupted`, so what is
finished is kept and the command exits 130. (A training defers the stop to the end of its step, to save a
checkpoint first: :meth:`fewshot.train.session.TrainSession.signals`.)"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

from fewshot.core.errors import Interrupted

RESUME = "run the same command again to continue"


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Inside, SIGINT and SIGTERM raise :class:`Interrupted` in the main thread; the previous handlers come back
    on leaving. Elsewhere than the main thread it does nothing (signals reach only the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise Interrupted(f"stopped by {signal.Signals(signum).name}; {RESUME}")

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
