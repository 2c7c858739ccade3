"""Stamp checks of the pipeline's three input streams (GPS, odometry, camera): what is processed, dropped or resets.

Rules, in message time (the same for the node and a replay, since both feed the pipeline):

* a stamp that is not finite is dropped (``bad_stamps``);
* within a stream, a repeated stamp is dropped (``duplicate_stamps``), an older one (``out_of_order_stamps``);
* a stamp more than ``jump_s`` behind its own stream, or ahead of every stream seen so far, is a *candidate* time
  jump. One such message alone is dropped (``stale_stamps`` / ``future_stamps``): a single fix stamped 0 or 30 s old,
  or a driver glitch, must not reset the pipeline (it used to cost about 12 s of LOST), nor move the clock to the
  future (every later message would look stale). When ``confirm`` consecutive candidates agree with each other (each
  within ``jump_s`` after the previous), time really jumped: back (a looping bag, a restarted clock): the verdict is
  RESET and the caller starts over; ahead (a gap in the recording, a stream silent for a while): time goes on from
  there, nothing to undo;
* a camera frame or a GPS fix more than ``jump_s`` behind the newest stamp of any stream is stale (processed late,
  e.g. a bag played fast on a loaded machine) and dropped: an absolute measurement that old would pull the state back
  to where the vehicle was. Odometry increments stay valid late (ordered within their stream) and are kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ACCEPT, DROP, RESET = "accept", "drop", "reset"


@dataclass(frozen=True)
class StampVerdict:
    action: str  # ACCEPT | DROP | RESET
    reason: str = ""  # a count key: bad_stamps, duplicate_stamps, out_of_order_stamps, stale_stamps, ...
    detail: str = ""  # one line for a person


_OK = StampVerdict(ACCEPT)


class StampGate:
    """Judges each stamp of each stream; not thread-safe by itself (the pipeline calls it under its lock)."""

    def __init__(self, jump_s: float, confirm: int):
        self.jump_s = float(jump_s)
        self.confirm = max(1, int(confirm))
        self.reset()

    def reset(self) -> None:
        self.last: dict[str, float] = {}  # newest accepted stamp per stream
        self.clock: float | None = None  # newest accepted stamp of any stream
        self._candidate: tuple[str, float, int] | None = None  # (direction, last candidate stamp, how many agree)

    def check(self, stream: str, stamp: float) -> StampVerdict:
        if not math.isfinite(stamp):
            return StampVerdict(DROP, "bad_stamps", f"{stream} stamp is {stamp}")
        last = self.last.get(stream)
        if last is not None and stamp < last - self.jump_s:
            return self._jump("back", stream, stamp, last - stamp)
        if self.clock is not None and stamp > self.clock + self.jump_s:
            return self._jump("ahead", stream, stamp, stamp - self.clock)
        self._candidate = None
        if last is not None and stamp == last:
            return StampVerdict(DROP, "duplicate_stamps", f"{stream} stamp {stamp:.3f} repeated")
        if last is not None and stamp < last:
            return StampVerdict(DROP, "out_of_order_stamps", f"{stream} stamp {last - stamp:.3f} s older than the "
                                "previous one")
        if stream != "odometry" and self.clock is not None and stamp < self.clock - self.jump_s:
            self.last[stream] = stamp
            return StampVerdict(DROP, "stale_stamps", f"{stream} message {self.clock - stamp:.1f} s behind the newest "
                                "input: processed too late")
        self._advance(stream, stamp)
        return _OK

    def _advance(self, stream: str, stamp: float) -> None:
        self.last[stream] = stamp
        self.clock = stamp if self.clock is None else max(self.clock, stamp)

    def _jump(self, direction: str, stream: str, stamp: float, size: float) -> StampVerdict:
        """A candidate time jump: confirmed once ``confirm`` consecutive candidates agree, else dropped."""
        c = self._candidate
        agree = c is not None and c[0] == direction and 0.0 <= stamp - c[1] <= self.jump_s
        n = c[2] + 1 if agree else 1
        self._candidate = (direction, stamp, n)
        if n >= self.confirm and direction == "ahead":  # time passed without messages: nothing to undo
            self._candidate = None
            self._advance(stream, stamp)
            return _OK
        if n >= self.confirm:
            self._candidate = None
            self.reset()
            self._advance(stream, stamp)
            return StampVerdict(RESET, "time_resets", f"{stream} time jumped back {size:.1f} s ({n} messages agree: a "
                                "looping bag or a restarted clock): state reset")
        if direction == "back":
            return StampVerdict(DROP, "stale_stamps", f"{stream} stamp {size:.1f} s behind its stream: dropped (one "
                                "stale stamp is not a time jump)")
        return StampVerdict(DROP, "future_stamps", f"{stream} stamp {size:.1f} s ahead of every input: dropped (one "
                            "future stamp is not a time jump)")
