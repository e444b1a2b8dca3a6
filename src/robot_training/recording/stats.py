"""Per-topic counters: messages received, written, dropped, and gaps in the stream.

A gap is an interval between two consecutive messages longer than ``gap_factor`` times the
expected period. The period is ``1 / expected_rate_hz`` when the rate is known (for example
the interface's control rate), otherwise the median of the recent intervals. Intervals are
taken from the header stamps when the messages have them, else from the receive times.
``missing`` estimates how many messages the gaps swallowed. For a whole recorded stream
(``bags info`` and its ``--plot``), :func:`gap_indices` applies the same rule with the
stream's median interval as the period.

The interval that spans an episode boundary (the simulator or robot pausing between an END
and the next episode) is not a gap: :meth:`TopicStats.mark_boundary` makes the next interval
of the topic count for nothing, neither as a gap nor for the median.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

# Intervals the running median is taken over, and how many are needed before gaps count.
MEDIAN_WINDOW = 64
MIN_INTERVALS = 8
#: an interval longer than this many median periods is a gap (the recorder's status and `bags info`)
GAP_FACTOR = 1.8


def gap_indices(times_ns, gap_factor: float = GAP_FACTOR):
    """Gaps in a whole recorded stream, as ``bags info`` counts them (and its ``--plot`` draws them).

    ``times_ns`` are one topic's message times, sorted. Returns the indices ``i`` (int array) of
    the intervals ``times_ns[i] -> times_ns[i + 1]`` longer than ``gap_factor`` times the median
    interval of the stream; empty for fewer than two messages or a zero median.
    """
    t = np.asarray(times_ns, dtype=np.int64)
    if t.size < 2:
        return np.zeros(0, dtype=np.intp)
    dt = np.diff(t)
    median = float(np.median(dt))
    if median <= 0:
        return np.zeros(0, dtype=np.intp)
    return np.flatnonzero(dt > gap_factor * median)


@dataclass
class TopicStats:
    """Counters of one topic (for the current episode or for the whole session)."""

    topic: str
    msgtype: str
    expected_rate_hz: Optional[float] = None
    gap_factor: float = GAP_FACTOR
    received: int = 0
    written: int = 0
    dropped: int = 0
    gaps: int = 0
    missing: int = 0
    bytes_written: int = 0
    _last_t: Optional[int] = field(default=None, repr=False)
    _intervals: deque = field(default_factory=lambda: deque(maxlen=MEDIAN_WINDOW), repr=False)
    _boundary: bool = field(default=False, repr=False)

    def on_received(self, receive_ns: int, stamp_ns: Optional[int] = None) -> None:
        """Count one arrival and check the interval since the previous one."""
        self.received += 1
        t = stamp_ns if stamp_ns else receive_ns
        last, self._last_t = self._last_t, t
        if last is None or t <= last:
            if last is None:
                self._boundary = False
            return
        dt = t - last
        if self._boundary:  # the pause between two episodes
            self._boundary = False
            return
        period = self.expected_period_ns()
        if period and dt > self.gap_factor * period:
            self.gaps += 1
            self.missing += max(0, round(dt / period) - 1)
        self._intervals.append(dt)

    def mark_boundary(self) -> None:
        """An episode ended: the interval to this topic's next message is not a gap."""
        self._boundary = True

    def on_written(self, nbytes: int) -> None:
        self.written += 1
        self.bytes_written += nbytes

    def on_dropped(self) -> None:
        self.dropped += 1

    def expected_period_ns(self) -> Optional[float]:
        if self.expected_rate_hz and self.expected_rate_hz > 0:
            return 1e9 / self.expected_rate_hz
        if len(self._intervals) >= MIN_INTERVALS:
            return float(statistics.median(self._intervals))
        return None

    def as_dict(self) -> dict:
        period = self.expected_period_ns()
        return {
            'type': self.msgtype,
            'received': self.received,
            'written': self.written,
            'dropped': self.dropped,
            'gaps': self.gaps,
            'missing_estimate': self.missing,
            'bytes': self.bytes_written,
            'rate_hz': round(1e9 / period, 3) if period else None,
        }
