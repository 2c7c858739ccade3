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


def on_terminal(stream=None) -> bool:
    """Whether ``stream`` (default ``sys.stderr``) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_bar(total: float | None = None, *, iterable: Iterable | None = None, enabled: bool = True, **kw):
    """A tqdm bar over ``total`` steps (or over ``iterable``), or a :class:`NullBar` when the bar is disabled
    (``enabled=False``, e.g. from a ``--no-progress`` option) or its stream is not a terminal.

    ``kw`` goes to tqdm unchanged (``desc``, ``unit``, ``initial``, ``leave``, ``unit_scale``, ``file``...); the
    stream is ``kw['file']``, default ``sys.stderr`` (tqdm's own default).
    """
    stream = kw.setdefault("file", sys.stderr)
    if not (enabled and on_terminal(stream)):
        return NullBar(iterable, total=total, **kw)
    from tqdm import tqdm

    return tqdm(iterable, total=total, **kw)
