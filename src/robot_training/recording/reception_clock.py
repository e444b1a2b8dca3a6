"""The node's time at the moment DDS received a message, not when a callback got to it.

A recorder stamps every message with its receive time (a headerless command has no other).
Taking ``clock.now()`` in the callback stamps the moment the executor reached it: when the
recorder falls behind (a burst of camera frames, a simulator stepping faster than real time)
a backlog of ``/clock`` messages is taken first and the commands waiting behind them are
stamped one or more control periods late, so a dataset pairs them with later observations.

The middleware stamps each message with its reception time (system clock, ``MessageInfo``
``received_timestamp``). On wall time that *is* the node's time. On simulation time,
:class:`ReceptionClock` keeps the reception times of recent ``/clock`` messages and maps a
message's reception time to the simulation time in force when it arrived.
"""

from __future__ import annotations

import bisect
from collections import deque
from typing import Deque, Optional


class ReceptionClock:
    """``(reception ns, simulation ns)`` of recent ``/clock`` messages, looked up by reception."""

    def __init__(self, history: int = 4096):
        self._received: Deque[int] = deque(maxlen=history)
        self._sim: Deque[int] = deque(maxlen=history)

    def on_clock(self, received_ns: int, sim_ns: int) -> None:
        if self._received and received_ns < self._received[-1]:
            received_ns = self._received[-1]  # keep the history sorted (equal stamps are fine)
        self._received.append(int(received_ns))
        self._sim.append(int(sim_ns))

    def at(self, received_ns: int) -> Optional[int]:
        """Simulation time when a message received at ``received_ns`` arrived (None: before the
        first clock message, or older than the history)."""
        if not self._received or received_ns < self._received[0]:
            return None
        return self._sim[bisect.bisect_right(self._received, received_ns) - 1]
