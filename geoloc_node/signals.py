"""Stop requests from outside, handled like Ctrl-C: SIGTERM (``timeout``, systemd, ``docker stop``) and SIGHUP (a
closed terminal or SSH session) raise :class:`KeyboardInterrupt` in the main thread, so that every command's existing
``except KeyboardInterrupt`` / ``finally`` path closes its outputs (bag, report, table shard) the same way for all
three signals.

Why not let the default handlers run: SIGTERM and SIGHUP kill the process at once, without ``finally`` blocks, which
left a 0-byte or headless MCAP and no report behind.
"""

from __future__ import annotations

import contextlib
import signal
import threading

#: The signals treated as an interruption (SIGINT already raises KeyboardInterrupt).
STOP_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None)


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived; ``signum`` says which."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")


def _raise(signum, _frame):
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_signals_interrupt():
    """Within the block, SIGTERM and SIGHUP raise :class:`Interrupted` (a KeyboardInterrupt) in the main thread.

    Restores the previous handlers on exit. Outside the main thread (where Python cannot install handlers) it does
    nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    for s in STOP_SIGNALS:
        signal.signal(s, _raise)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
