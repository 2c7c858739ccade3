"""Progress bars that appear only on a terminal.

Why: tqdm redraws its bar by writing carriage returns; on a terminal that is one line, but in a log file, a CI log or a
pipe it becomes hundreds of lines (about 1,000 for one build-table run). So every command asks for its bar here:

    from geoloc_node.progress import progress_bar

    with progress_bar(total=n, desc="build-table", unit="tile", enabled=not args.no_progress) as bar:
        for batch in batches:
            ...
            bar.update(len(batch))

    for item in progress_bar(iterable=items, desc="render", unit="pair"):   # wrapping an iterable works too
        ...

``progress_bar`` returns a real tqdm when the bar is enabled and its stream (``file``, default ``sys.stderr``) is a
terminal, else a silent :class:`NullBar` with the same small interface: ``update(n)``, ``close()``, ``refresh()``,
``set_description(text)``, ``set_postfix(...)``, ``n``, ``total``, iteration and ``with``. Callers never need to check
which one they got.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any


class NullBar:
    """A progress bar that counts but draws nothing (the stand-in for tqdm off a terminal)."""

    def __init__(self, iterable: Iterable | None = None, total: float | None = None, initial: float = 0, **_ignored):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # as tqdm does, so that callers may read bar.total either way
        self.total = total
        self.n = initial
        self.desc = _ignored.get("desc", "")
        self.disable = True

    def update(self, n: float = 1) -> None:
        self.n += n

    def close(self) -> None:
        pass

    def refresh(self) -> None:
        pass

    def clear(self) -> None:
        pass

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __iter__(self) -> Iterator:
        for item in self.iterable if self.iterable is not None else ():
            yield item
            self.n += 1

    def __len__(self) -> int:
        return int(self.total or 0)

    def __enter__(self) -> NullBar:
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


class RateLog(NullBar):
    """Off a terminal, for long jobs: one line every ``every_s`` seconds with the count, the rate and the ETA, e.g.
    ``build-table: 120,000/1,000,000 tile (12.0 %), 1,050 tile/s, ETA 0:13:58`` (a log keeps a few lines, not a
    redrawn bar). The rate counts only this run's steps (``initial`` ones were done before)."""

    def __init__(self, iterable: Iterable | None = None, total: float | None = None, initial: float = 0,
                 every_s: float = 30.0, **kw: Any):
        super().__init__(iterable, total=total, initial=initial, **kw)
        self.unit, self.file, self.every_s = kw.get("unit", "it"), kw.get("file", sys.stderr), float(every_s)
        self._t0 = self._last = time.monotonic()
        self._n0 = initial

    def update(self, n: float = 1) -> None:
        super().update(n)
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            print(self.line(now), file=self.file, flush=True)

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self._t0, 1e-9)
        rate = (self.n - self._n0) / elapsed
        text = f"{self.desc}: {self.n:,.0f}"
        if self.total:
            text += f"/{self.total:,.0f} {self.unit} ({100.0 * self.n / self.total:.1f} %)"
        text += f", {rate:,.0f} {self.unit}/s"
        if self.total and rate > 0:
            eta = int((self.total - self.n) / rate)
            text += f", ETA {eta // 3600}:{eta // 60 % 60:02d}:{eta % 60:02d}"
        return text


def on_terminal(stream=None) -> bool:
    """Whether ``stream`` (default ``sys.stderr``) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_bar(total: float | None = None, *, iterable: Iterable | None = None, enabled: bool = True,
                 log_every_s: float | None = None, **kw):
    """A tqdm bar over ``total`` steps (or over ``iterable``), or a :class:`NullBar` when the bar is disabled
    (``enabled=False``, e.g. from a ``--no-progress`` option) or its stream is not a terminal.

    ``kw`` goes to tqdm unchanged (``desc``, ``unit``, ``initial``, ``leave``, ``unit_scale``, ``file``...); the
    stream is ``kw['file']``, default ``sys.stderr`` (tqdm's own default). ``log_every_s``: off a terminal, a
    :class:`RateLog` line (count, rate, ETA) that often instead of silence, for jobs of minutes to days.
    """
    stream = kw.setdefault("file", sys.stderr)
    if not (enabled and on_terminal(stream)):
        if enabled and log_every_s:
            return RateLog(iterable, total=total, every_s=log_every_s, **kw)
        return NullBar(iterable, total=total, **kw)
    from tqdm import tqdm

    return tqdm(iterable, total=total, **kw)
