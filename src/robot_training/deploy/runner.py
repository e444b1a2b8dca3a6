"""The policy server's logic without ROS: latest message per topic in, one action per tick out.

::

    runner = PolicyRunner(interface, policy)
    runner.on_message("/joint_states", msg, now_ns)       # from every observation subscription
    tick = runner.tick(now_ns)                             # on every control tick
    if tick.action is not None: publish(interface.action_to_message(tick.action, Float64MultiArray))

On a tick the observation is built with ``interface.build_observation`` (the same code that
built the training dataset). The runner refuses to act when a stream has no message yet or
its latest message arrived more than ``max_staleness_s`` ago: the tick then carries
``safe_action`` when one is configured, otherwise no action at all (the default: a robot
whose sensors went quiet gets no new command; its driver's own timeout stops it). Actions are
clipped to the interface's ``[low, high]``. :meth:`load` swaps policies atomically: the new
checkpoint is fully loaded and checked before it replaces the old one, so a failed load
leaves the old policy acting.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, NamedTuple, Optional, Sequence

import numpy as np

from robot_training.data.converters import ConversionError
from robot_training.deploy.policy import DeployedPolicy, DeployError, load_policy


class Tick(NamedTuple):
    """Outcome of one control tick: ``action`` (clipped) or None, and why."""

    action: Optional[np.ndarray]
    status: str  # "ok", "safe_action", "no_policy", "waiting", "stale", "error"
    detail: str = ""

    @property
    def acted(self) -> bool:
        return self.status == "ok"


class PolicyRunner:
    def __init__(self, interface, policy: Optional[DeployedPolicy] = None, deterministic: bool = True,
                 safe_action: Optional[Sequence[float]] = None, max_staleness_s: Optional[float] = None):
        self.interface = interface
        self.deterministic = deterministic
        self.max_staleness_ns = int(1e9 * (interface.max_staleness_s if max_staleness_s is None else max_staleness_s))
        self.safe_action = None
        if safe_action is not None and len(safe_action) > 0:
            safe = np.asarray(safe_action, dtype=np.float64).reshape(-1)
            if safe.shape[0] != interface.action_dim:
                raise ValueError(f"safe_action has {safe.shape[0]} values, the action has {interface.action_dim}")
            self.safe_action = interface.clip_action(safe)
        self._topics = {s.topic for s in interface.observations}
        self._latest: Dict[str, Any] = {}
        self._received_ns: Dict[str, int] = {}
        self._lock = threading.Lock()
        self._policy = policy
        self.counts = {"ok": 0, "safe_action": 0, "no_policy": 0, "waiting": 0, "stale": 0, "error": 0}

    # ------------------------------------------------------------------ policy
    @property
    def policy(self) -> Optional[DeployedPolicy]:
        return self._policy

    def load(self, path) -> DeployedPolicy:
        """Load ``path`` and make it the acting policy; on :class:`DeployError` the old one stays."""
        new = load_policy(path, interface=self.interface, deterministic=self.deterministic)
        new.reset()
        with self._lock:
            self._policy = new
        return new

    def reset(self) -> None:
        """Start of an episode: forget the policy's recurrent state."""
        with self._lock:
            if self._policy is not None:
                self._policy.reset()

    # ------------------------------------------------------------------ data
    @property
    def topics(self):
        return sorted(self._topics)

    def on_message(self, topic: str, msg, now_ns: int) -> None:
        if topic in self._topics:
            with self._lock:
                self._latest[topic] = msg
                self._received_ns[topic] = int(now_ns)

    def _refuse(self, status: str, detail: str) -> Tick:
        if self.safe_action is not None and status != "no_policy":
            self.counts["safe_action"] += 1
            return Tick(self.safe_action.copy(), "safe_action", f"{status}: {detail}")
        self.counts[status] += 1
        return Tick(None, status, detail)

    def tick(self, now_ns: int) -> Tick:
        """One control step: the clipped action, or a refusal saying why."""
        with self._lock:
            policy = self._policy
            if policy is None:
                return self._refuse("no_policy", "no policy loaded")
            missing = sorted(self._topics - set(self._latest))
            if missing:
                return self._refuse("waiting", f"no message yet on {', '.join(missing)}")
            ages = {t: (int(now_ns) - ns) / 1e9 for t, ns in self._received_ns.items()}
            stale = {t: a for t, a in ages.items() if a * 1e9 > self.max_staleness_ns}
            if stale:
                text = ", ".join(f"{t} {a:.3f} s old" for t, a in sorted(stale.items()))
                return self._refuse("stale", f"{text} (max_staleness_s {self.max_staleness_ns / 1e9:g})")
            try:
                obs = self.interface.build_observation(self._latest)
                action = policy.act(obs)
            except (ConversionError, DeployError, ValueError, RuntimeError) as exc:
                return self._refuse("error", str(exc))
        if not np.all(np.isfinite(action)):
            return self._refuse("error", f"policy returned a non-finite action {action}")
        self.counts["ok"] += 1
        return Tick(self.interface.clip_action(action), "ok")
