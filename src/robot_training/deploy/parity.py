"""Train/deploy parity: what a deployed policy does on a recorded episode, against the trainer's
offline ``predict`` on the same episode's dataset tensors.

::

    plan = plan_playback(bag, interface, episodes=5)      # ticks, and the bag messages of each
    offline = offline_actions(checkpoint, plan[0].observations)
    report = compare(plan, {ep.episode_id: online_actions(ep) ...}, {ep.episode_id: offline ...})

The dataset builder aligns each observation stream to the control grid by taking, at every
tick, the latest message stamped at or before it (header stamp, else the bag's receive time).
:func:`plan_playback` reproduces that choice message by message, so a player can publish, for
each tick, exactly the messages the training tensors were computed from — the raw CDR bytes of
the bag, the bag's own clock — and the actions the policy server answers with can be compared
one to one with :func:`offline_actions`: the checkpoint loaded the way its trainer loads it
(the torch actor of PPO / SAC, BC's ``step``, Dreamer's ``policy``), run on the dataset's own
arrays in episode order with recurrent state carried between ticks. Everything between the
bag and the action is then on trial: the converters on rclpy messages against rosbags ones,
``build_observation`` against the dataset's assembly, the deployed actor (NumPy for the MLP
policies and vector Dreamer) against the trainer's torch modules, clipping, the episode reset
of recurrent state, and which observation each tick acts on.

The ROS side (playing the ticks to a real policy server) is ``robot_training.ros.parity_node``;
``python -m robot_training.bags parity`` runs it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

PathLike = Union[str, os.PathLike]


class ParityError(ValueError):
    """A bag, interface or checkpoint a parity check cannot run on (one line saying why)."""


@dataclass
class TickMessages:
    """One control tick: its time and the bag messages the dataset built its observation from,
    in the interface's stream order (the trigger stream, the last one, last)."""

    time_ns: int
    messages: List[Tuple[str, str, bytes]]  # (topic, msgtype, raw CDR)


@dataclass
class EpisodePlayback:
    episode_id: str
    ticks: List[TickMessages]
    observations: Any            # the dataset's tensors of these ticks: (T, D) or {key: (T, ...)}
    dataset_actions: np.ndarray  # the actions recorded in the bag (for the report only)

    def __len__(self) -> int:
        return len(self.ticks)


def _raw_streams(bag: Path, interface) -> Dict[str, Tuple[np.ndarray, List[bytes], str]]:
    """Per observation topic: message times (the dataset's rule: the bag-message iterator's), raw
    bytes, msgtype."""
    from robot_training.data.bag_dataset import _check_topics, open_reader

    with open_reader(bag) as reader:
        conns = _check_topics(bag, reader, interface)
        topics = {s.topic for s in interface.observations}
        wanted = [c for t, cs in conns.items() if t in topics for c in cs]
        times: Dict[str, List[int]] = {t: [] for t in topics}
        raws: Dict[str, List[bytes]] = {t: [] for t in topics}
        types = {c.topic: c.msgtype for c in wanted}
        for conn, t, _, raw, _ in reader.decoded(wanted):
            times[conn.topic].append(t)
            raws[conn.topic].append(bytes(raw))
    out = {}
    for topic in topics:
        t = np.asarray(times[topic], dtype=np.int64)
        order = np.argsort(t, kind="stable")
        out[topic] = (t[order], [raws[topic][i] for i in order], types[topic])
    return out


def _episode_slice(observations, index) -> Any:
    if isinstance(observations, dict):
        return {k: v[index] for k, v in observations.items()}
    return observations[index]


def plan_playback(bag: PathLike, interface=None, episodes: Optional[int] = 5) -> List[EpisodePlayback]:
    """The first ``episodes`` episodes of ``bag`` (None: all), each tick with its messages."""
    from robot_training.data.bag_dataset import find_bags, find_interface, load_bag_dataset
    from robot_training.interface.description import load_interface

    bag = Path(bag)
    bags = find_bags(bag)
    if len(bags) != 1:
        raise ParityError(f"{bag}: holds {len(bags)} bags; name one bag (one recorded episode file or folder)")
    bag = bags[0]
    desc = find_interface(bag, bags) if interface is None else load_interface(interface)
    trajectories = load_bag_dataset(bag, desc, cache=False)
    if not trajectories:
        raise ParityError(f"{bag}: no complete steps after alignment to {desc.control_rate_hz:g} Hz")
    streams = _raw_streams(bag, desc)
    plans = []
    for traj in trajectories[: episodes if episodes else None]:
        if traj.timestamps_ns is None:
            raise ParityError(f"{bag}: episode {traj.episode_id} has no timestamps")
        ticks_ns = np.asarray(traj.timestamps_ns, dtype=np.int64)  # the dataset's ticks, exact
        ticks = []
        for t in ticks_ns.tolist():
            msgs = []
            for s in desc.observations:
                times, raws, msgtype = streams[s.topic]
                i = int(np.searchsorted(times, t, side="right")) - 1
                if i < 0:
                    raise ParityError(f"{bag}: no message on {s.topic} before the tick at {t} ns")
                msgs.append((s.topic, msgtype, raws[i]))
            ticks.append(TickMessages(int(t), msgs))
        plans.append(EpisodePlayback(traj.episode_id, ticks, traj.observations, traj.actions))
    return plans


# --------------------------------------------------------------------------- the offline side


def offline_actor(checkpoint: PathLike) -> Tuple[str, Callable[..., np.ndarray]]:
    """``(kind, act)``: the checkpoint loaded the way its trainer loads it, and
    ``act(observations, deterministic=True)`` giving the trainer's own actions on one episode's
    dataset tensors (``(T, A)``), recurrent state carried from tick to tick."""
    from robot_training.checkpoint import load_checkpoint
    from robot_training.deploy.policy import torch_actor

    path = Path(checkpoint)
    data = load_checkpoint(path)
    kind = data.get("kind")
    if kind in ("ppo", "sac"):
        policy = torch_actor(path, kind, data)

        def act_batch(observations, deterministic: bool = True) -> np.ndarray:
            obs = np.asarray(observations, dtype=np.float32)
            return np.asarray(policy.predict(obs, deterministic=deterministic), dtype=np.float64).reshape(len(obs), -1)
        return kind, act_batch
    if kind == "bc":
        from robot_training.supervised_learning.bc import BehavioralCloning

        bc = BehavioralCloning().load(path)
        bc.model.eval()
        initial = lambda: bc.initial_state(1)  # noqa: E731
        step = lambda o, s, d: bc.step(np.asarray(o, dtype=np.float32), s, deterministic=d)  # noqa: E731
    elif kind == "dreamer":
        from robot_training.reinforcement_learning.dreamer import DreamerAgent

        agent = DreamerAgent.from_checkpoint(path)
        initial = lambda: None  # noqa: E731
        step = lambda o, c, d: agent.policy(c, o, deterministic=d)  # noqa: E731
    else:
        raise ParityError(f"{path}: checkpoint kind {kind!r} has no actor to compare (ppo, sac, bc, dreamer)")

    def act_in_order(observations, deterministic: bool = True) -> np.ndarray:
        n = len(next(iter(observations.values()))) if isinstance(observations, dict) else len(observations)
        state, out = initial(), []
        for t in range(n):
            action, state = step(_episode_slice(observations, t), state, deterministic)
            out.append(np.asarray(action, dtype=np.float64).reshape(-1))
        return np.stack(out)
    return kind, act_in_order


def offline_actions(checkpoint: PathLike, observations, deterministic: bool = True) -> np.ndarray:
    """:func:`offline_actor`'s actions on one episode (loads the checkpoint each call)."""
    return offline_actor(checkpoint)[1](observations, deterministic)


# --------------------------------------------------------------------------- the comparison


@dataclass
class ParityReport:
    checkpoint: str
    kind: str
    episodes: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def ticks(self) -> int:
        return sum(e["ticks"] for e in self.episodes)

    @property
    def missing(self) -> int:
        return sum(e["missing"] for e in self.episodes)

    @property
    def max_abs(self) -> float:
        values = [e["max_abs"] for e in self.episodes]
        return float(max(values)) if values else float("nan")

    def passed(self, tolerance: float = 1e-5) -> bool:
        return self.missing == 0 and self.ticks > 0 and self.max_abs <= tolerance

    def as_dict(self) -> dict:
        return {"checkpoint": self.checkpoint, "kind": self.kind, "ticks": self.ticks, "missing": self.missing,
                "max_abs": self.max_abs, "episodes": self.episodes}

    def table(self) -> str:
        lines = ["| episode | ticks | actions missing | max abs diff | mean abs diff |", "|---|---|---|---|---|"]
        for e in self.episodes:
            lines.append(f"| {e['episode_id']} | {e['ticks']} | {e['missing']} | {e['max_abs']:.3g} | {e['mean_abs']:.3g} |")
        lines.append(f"| all ({self.kind}) | {self.ticks} | {self.missing} | {self.max_abs:.3g} | |")
        return "\n".join(lines)


def compare_episode(episode_id: str, online: np.ndarray, offline: np.ndarray) -> Dict[str, Any]:
    """``online``: (T, A) with NaN rows where no action came back."""
    online = np.asarray(online, dtype=np.float64)
    offline = np.asarray(offline, dtype=np.float64)
    if online.shape != offline.shape:
        raise ParityError(f"episode {episode_id}: {online.shape} online actions against {offline.shape} offline")
    got = ~np.isnan(online).any(axis=1)
    diff = np.abs(online[got] - offline[got])
    return {"episode_id": episode_id, "ticks": int(len(online)), "missing": int((~got).sum()),
            "max_abs": float(diff.max()) if diff.size else float("nan"),
            "mean_abs": float(diff.mean()) if diff.size else float("nan"),
            "first_missing": int(np.flatnonzero(~got)[0]) if (~got).any() else None,
            "worst_tick": int(np.unravel_index(diff.argmax(), diff.shape)[0]) if diff.size else None}


def make_report(checkpoint: PathLike, plans: Sequence[EpisodePlayback], online: Dict[str, np.ndarray],
                interface=None) -> ParityReport:
    """Offline actions for every planned episode (the checkpoint loaded once) against the online ones."""
    kind, act = offline_actor(checkpoint)
    report = ParityReport(str(checkpoint), kind)
    for plan in plans:
        offline = act(plan.observations)
        if interface is not None:
            offline = np.stack([interface.clip_action(a) for a in offline])
        report.episodes.append(compare_episode(plan.episode_id, online[plan.episode_id], offline))
    return report
