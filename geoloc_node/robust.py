"""``median``: ``float(np.median(x))`` of a 1-D float64 array, bit for bit, without numpy's generic machinery; and
``median_and_spread``: the median and the robust spread (1.4826 MAD) that the track check, the relocalizer and the
filter's distinctness all standardise their scores with.

Why: the track check and the visual update take eight medians per camera frame of a few thousand values each;
``np.median`` spent about 50 us per call on axis handling, ``mean`` and its NaN check around a 35 us partition (a demo
replay: 5,000 calls, 0.25 s). This does the same partition and the same arithmetic: the middle element, or
``(a + b) / 2`` of the two middle ones (what ``np.mean`` of two float64 values computes), NaN when there is one.
"""

from __future__ import annotations

import math

import numpy as np

_F8 = np.dtype(np.float64)


def median(values: np.ndarray) -> float:
    """``float(np.median(values))`` for a 1-D array; anything else (or an empty array) goes to ``np.median``."""
    if not (type(values) is np.ndarray and values.dtype == _F8 and values.ndim == 1 and values.size > 0):
        return float(np.median(values))
    n = values.size
    h = n // 2
    part = np.partition(values, [h - 1, h, -1] if n % 2 == 0 else [h, -1])  # -1: a NaN sorts last
    if math.isnan(part[-1]):
        return math.nan
    return float(part[h]) if n % 2 else float((part[h - 1] + part[h]) / 2.0)


def median_and_spread(values: np.ndarray, floor: float) -> tuple[float, float]:
    """(median, max(1.4826 x median absolute deviation, ``floor``)) of ``values``: a robust z of a score x is
    ``(median - x) / spread``; the floor keeps a flat row (all scores alike) from dividing by zero."""
    med = median(values)
    return med, max(1.4826 * median(np.abs(values - med)), floor)
