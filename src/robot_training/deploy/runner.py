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
clipped to the interface's ``[low, high]``. A stateful stream (a pose chained from ``/tf``
and ``/tf_static``) is fed every message of its topics by :meth:`on_message`, in arrival
order, and counts as ``waiting`` until its chain is complete; only its own topic (``/tf``)
goes stale, not the latched ``/tf_static``. The runner resets those streams' state when it is
made: one runner at a time per loaded interface. :meth:`load` swaps policies atomically: the new
checkpoint is fully loaded and checked before it replaces the old one, so a failed load
leaves the old policy acting; :meth:`load_verified` also checks the file's sha256 and the
interface fingerprint a learner announced with it, and :meth:`swap` hands a recurrent
policy's state over to its successor (consecutive checkpoints of one run), so a hot reload
neither waits for the episode to end nor restarts the policy's memory mid-episode.

Before any policy is loaded the runner publishes nothing, or, with ``random_until_loaded``,
uniform random actions within the limits (exploration of a learning loop's first episodes).

When to act is :class:`ActTrigger`'s decision (see there); :class:`ActorStats` keeps the cost
of every tick and the gaps between published actions.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Dict, NamedTuple, Optional, Sequence

import numpy as np

from robot_training.interface.converters import ConversionError, NotReady, stamp_ns
from robot_training.deploy.policy import DeployedPolicy, DeployError, load_policy


class Tick(NamedTuple):
    """Outcome of one control tick: ``action`` (clipped) or None, and why."""

    action: Optional[np.ndarray]
    status: str  # "ok", "random", "safe_action", "no_policy", "waiting", "stale", "error"
    detail: str = ""

    @property
    def acted(self) -> bool:
        return self.status in ("ok", "random")


class PolicyRunner:
    def __init__(self, interface, policy: Optional[DeployedPolicy] = None, deterministic: bool = True,
                 safe_action: Optional[Sequence[float]] = None, max_staleness_s: Optional[float] = None,
                 random_until_loaded: bool = False, seed: Optional[int] = None):
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
        self._observed = set(interface.observers)  # topics of stateful streams (/tf, /tf_static)
        interface.reset_state()
        self._latest: Dict[str, Any] = {}
        self._received_ns: Dict[str, int] = {}
        self._lock = threading.Lock()
        self._policy = policy
        self.random_until_loaded = bool(random_until_loaded)
        self._rng = np.random.default_rng(seed)
        self.counts = {"ok": 0, "random": 0, "safe_action": 0, "no_policy": 0, "waiting": 0, "stale": 0,
                       "error": 0}

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

    def load_verified(self, path, sha256: str = "", interface_fingerprint: str = "") -> DeployedPolicy:
        """Load a checkpoint a learner announced: refuse it (:class:`DeployError`, old policy kept)
        when it was made for another interface, when the file's sha256 is not the announced one
        (truncated, corrupted or replaced) or when it does not load; else :meth:`swap` to it.

        Safe to call from a loader thread while the control loop ticks."""
        mine = self.interface.fingerprint
        if interface_fingerprint and interface_fingerprint != mine:
            raise DeployError(f"{path}: announced for interface {interface_fingerprint[:12]}, this actor runs "
                              f"{self.interface.name or self.interface.source} {mine[:12]} (foreign checkpoint)")
        new = load_policy(path, interface=self.interface, deterministic=self.deterministic)
        if sha256 and new.sha256 != sha256:
            raise DeployError(f"{path}: sha256 {new.sha256[:12]} is not the announced {sha256[:12]} "
                              "(file corrupted, truncated or replaced)")
        if interface_fingerprint and new.interface_fingerprint and new.interface_fingerprint != mine:
            raise DeployError(f"{path}: the checkpoint stores interface {new.interface_fingerprint[:12]}, "
                              f"this actor runs {mine[:12]}")
        self.swap(new)
        return new

    def swap(self, new: DeployedPolicy) -> Optional[DeployedPolicy]:
        """Make ``new`` the acting policy between two ticks; returns the previous one.

        A recurrent successor of the same kind continues from the old policy's state (its
        latent or LSTM state has the same shapes); anything else starts fresh."""
        with self._lock:
            old = self._policy
            if not new.adopt_state(old):
                new.reset()
            self._policy = new
        return old

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
        if topic in self._topics or topic in self._observed:
            with self._lock:
                self.interface.observe(topic, msg)
                if topic in self._topics:
                    self._latest[topic] = msg
                    self._received_ns[topic] = int(now_ns)

    def latest_stamp_ns(self, topic: str) -> Optional[int]:
        """Header stamp of the latest message on ``topic`` (None: no message, or no stamp)."""
        with self._lock:
            msg = self._latest.get(topic)
        return None if msg is None else stamp_ns(msg)

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
            if policy is None and not self.random_until_loaded:
                return self._refuse("no_policy", "no policy loaded")
            missing = sorted(self._topics - set(self._latest))
            if missing:
                return self._refuse("waiting", f"no message yet on {', '.join(missing)}")
            ages = {t: (int(now_ns) - ns) / 1e9 for t, ns in self._received_ns.items()}
            stale = {t: a for t, a in ages.items() if a * 1e9 > self.max_staleness_ns}
            if stale:
                text = ", ".join(f"{t} {a:.3f} s old" for t, a in sorted(stale.items()))
                return self._refuse("stale", f"{text} (max_staleness_s {self.max_staleness_ns / 1e9:g})")
            if policy is None:
                self.counts["random"] += 1
                low, high = self.interface.action.low, self.interface.action.high
                return Tick(self._rng.uniform(low, high).astype(np.float64), "random")
            try:
                obs = self.interface.build_observation(self._latest)
                if isinstance(obs, np.ndarray) and not np.all(np.isfinite(obs)):
                    flat = np.ravel(obs)
                    return self._refuse("error", f"observation from {', '.join(sorted(self._topics))} has "
                                                 f"non-finite values at {np.flatnonzero(~np.isfinite(flat)).tolist()}: "
                                                 f"{flat.tolist()}")
                action = policy.act(obs)
            except NotReady as exc:
                return self._refuse("waiting", str(exc))
            except (ConversionError, DeployError, ValueError, RuntimeError) as exc:
                return self._refuse("error", str(exc))
        if not np.all(np.isfinite(action)):
            return self._refuse("error", f"policy returned a non-finite action {action}")
        self.counts["ok"] += 1
        return Tick(self.interface.clip_action(action), "ok")


class ActTrigger:
    """When the actor acts, so that a policy sees over ROS what it saw in training.

    * ``observation`` (default): on every new message of ``trigger_topic`` (the last
      observation stream of the interface; the simulator publishes a step's streams in the
      interface's order). The action answers the observation it was computed from, whatever
      the clock (wall, simulation, lock-step), with no added delay.
    * ``timer``: at ``control_rate_hz`` on the node's clock (a robot whose sensors publish
      faster than it is controlled). With ``wait_for_observation`` (simulation time: a
      ``/clock`` jump fires the timer, possibly before the step's observation has arrived)
      a tick whose observation is older than half a period waits for it, then acts.
    """

    MODES = ("observation", "timer")

    def __init__(self, mode: str, trigger_topic: str, period_ns: int, wait_for_observation: bool = False):
        if mode not in self.MODES:
            raise ValueError(f"act_on must be one of {', '.join(self.MODES)}, got {mode!r}")
        self.mode = mode
        self.trigger_topic = trigger_topic
        self.period_ns = int(period_ns)
        self.wait_for_observation = bool(wait_for_observation)
        self.pending_ns: Optional[int] = None
        self.missed = 0
        """Timer ticks whose observation never came before the next tick."""

    def on_message(self, topic: str, stamp_ns: Optional[int]) -> bool:
        """An observation arrived: act now?"""
        if topic != self.trigger_topic:
            return False
        if self.mode == "observation":
            return True
        if self.pending_ns is not None and (stamp_ns is None or stamp_ns >= self.pending_ns - self.period_ns // 2):
            self.pending_ns = None
            return True
        return False

    def on_timer(self, now_ns: int, latest_stamp_ns: Optional[int]) -> bool:
        """The control timer fired: act now (or wait for this tick's observation)?"""
        if self.mode != "timer":
            return False
        if not self.wait_for_observation or latest_stamp_ns is None \
                or latest_stamp_ns >= now_ns - self.period_ns // 2:
            self.pending_ns = None
            return True
        if self.pending_ns is not None:
            self.missed += 1
        self.pending_ns = now_ns
        return False


class ActorStats:
    """Cost of each tick (observation build + policy + publish) and gaps between published
    actions, over the last ``window`` ticks; perf_counter clock (wall time)."""

    def __init__(self, window: int = 20_000):
        self.costs_ms: deque = deque(maxlen=window)
        self.compute_ms: deque = deque(maxlen=window)
        """Observation build + policy alone (the part of a tick that is the actor's own work)."""
        self.gaps_ms: deque = deque(maxlen=window)
        self.max_gap_ms = 0.0
        self.published = 0
        self._last_publish: Optional[float] = None

    def on_tick(self, cost_s: float, published: bool, now_s: Optional[float] = None,
                compute_s: Optional[float] = None) -> None:
        self.costs_ms.append(1000.0 * cost_s)
        if compute_s is not None:
            self.compute_ms.append(1000.0 * compute_s)
        if not published:
            return
        now_s = time.perf_counter() if now_s is None else now_s
        if self._last_publish is not None:
            gap = 1000.0 * (now_s - self._last_publish)
            self.gaps_ms.append(gap)
            self.max_gap_ms = max(self.max_gap_ms, gap)
        self._last_publish = now_s
        self.published += 1

    def break_gap(self) -> None:
        """Pauses that are not the actor's doing (an episode reset, a paused world) end here."""
        self._last_publish = None

    def summary(self) -> Dict[str, float]:
        def pct(values, q):
            return float(np.percentile(np.asarray(values), q)) if values else 0.0

        return {"published": self.published, "cost_p50_ms": pct(self.costs_ms, 50),
                "cost_p99_ms": pct(self.costs_ms, 99), "compute_p50_ms": pct(self.compute_ms, 50),
                "compute_p99_ms": pct(self.compute_ms, 99), "gap_p50_ms": pct(self.gaps_ms, 50),
                "gap_p99_ms": pct(self.gaps_ms, 99), "gap_max_ms": self.max_gap_ms}
