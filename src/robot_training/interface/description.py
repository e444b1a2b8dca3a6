"""The interface description: which topics a policy observes and commands, and how.

One YAML file names everything between a robot's topics and a trainer's tensors. The bag
reader (:mod:`robot_training.data.bag_dataset`) uses it to turn recordings into
trajectories; the recorder uses :meth:`InterfaceDescription.streams` to know what to record;
the policy server uses :meth:`InterfaceDescription.build_observation` and
:meth:`InterfaceDescription.action_to_message` — the very functions the dataset was built
with — so what a deployed policy sees equals what it was trained on.

Example (see ``config/interface_example.yaml`` for every stream kind)::

    name: inverted_pendulum
    control_rate_hz: 25
    max_staleness_s: 0.1          # default: 2.5 control periods
    observations:
      - name: joints
        topic: /joint_states
        type: sensor_msgs/msg/JointState
        joint_names: [slider, hinge]
        fields: [position, velocity]
    action:
      topic: /cmd
      type: std_msgs/msg/Float64MultiArray
      size: 1
      low: [-3.0]
      high: [3.0]
    reward:                       # or {function: <name in robot_training.interface.rewards>}
      topic: /reward
      type: std_msgs/msg/Float64
    episodes:                     # or {source: bag}: one episode per bag
      topic: /episode_event       # robot_training_msgs/msg/EpisodeEvent

Stateful streams (a pose chained from ``/tf`` and ``/tf_static``, ``tf2_msgs/msg/TFMessage``)
read extra topics besides their own: :meth:`InterfaceDescription.streams` lists them (the
recorder records them), :meth:`InterfaceDescription.observe` feeds a stream every message of
its topics, and :attr:`InterfaceDescription.optional_topics` are those a bag may lack.

Observation layout: when every stream is a vector, an observation is one float32 vector,
the streams concatenated in the order listed (:attr:`InterfaceDescription.observation_slices`
says which part is which). When any stream is an image, it is a dict ``{stream name: array}``.

Every error raised while loading is an :class:`InterfaceError` (a ``ConfigError``) naming
the file and the key: ``robot.yaml: observations[1].joint_names: must not be empty``.

The :attr:`~InterfaceDescription.fingerprint` is the sha256 of the canonical JSON of the
description (defaults filled in, free-text ``description`` left out); datasets and
checkpoints store it so that a policy is never served through an interface it was not
trained with.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple, Union

import numpy as np
import yaml

from robot_training.config import parse_yaml_file
from robot_training.interface.converters import (
    ConversionError,
    Converter,
    InterfaceError,
    NotReady,
    Options,
    clip_action,
    make_converter,
)
from robot_training.interface.rewards import REWARD_FUNCTIONS
from robot_training.recording.episode_meta import EPISODE_EVENT_TYPE, TERMINAL_REASONS

__all__ = [
    "EPISODE_EVENT_TYPE",
    "InterfaceDescription",
    "InterfaceError",
    "ConversionError",
    "Stream",
    "StreamSpec",
    "load_interface",
    "interface_from_dict",
]

REWARD_TOPIC_TYPES = ("std_msgs/msg/Float64", "std_msgs/msg/Float32")


class Stream(NamedTuple):
    """A topic the description needs, with its ROS message type."""

    topic: str
    msgtype: str


@dataclass(frozen=True)
class StreamSpec:
    """One observation stream (or the action stream, named ``action``)."""

    name: str
    topic: str
    msgtype: str
    converter: Converter

    @property
    def shape(self) -> Tuple[int, ...]:
        return self.converter.shape

    def to_array(self, msg) -> np.ndarray:
        return self.converter.to_array(msg)

    def canonical(self) -> Dict[str, Any]:
        return {"name": self.name, "topic": self.topic, "type": self.msgtype, **self.converter.options}


@dataclass(frozen=True)
class ActionSpec(StreamSpec):
    low: np.ndarray = field(default=None)  # type: ignore[assignment]
    high: np.ndarray = field(default=None)  # type: ignore[assignment]

    def canonical(self) -> Dict[str, Any]:
        d = super().canonical()
        d.pop("name")
        d["low"] = [float(v) for v in self.low]
        d["high"] = [float(v) for v in self.high]
        return d


@dataclass(frozen=True)
class RewardSpec:
    """``source`` is ``topic`` (sum or latest of a Float64/Float32 topic), ``function`` or ``none``."""

    source: str
    topic: Optional[str] = None
    msgtype: Optional[str] = None
    mode: str = "sum"
    function: Optional[str] = None
    params: Dict[str, Any] = field(default_factory=dict)
    scale: float = 1.0

    def canonical(self) -> Dict[str, Any]:
        if self.source == "topic":
            return {"source": "topic", "topic": self.topic, "type": self.msgtype, "mode": self.mode,
                    "scale": self.scale}
        if self.source == "function":
            return {"source": "function", "function": self.function, "params": dict(self.params),
                    "scale": self.scale}
        return {"source": "none"}

    def compute(self, observations: Mapping[str, np.ndarray], actions: np.ndarray,
                next_observations: Mapping[str, np.ndarray]) -> np.ndarray:
        """Rewards of a named reward function, over arrays with a leading time axis."""
        fn = REWARD_FUNCTIONS[self.function]
        r = np.asarray(fn(observations, actions, next_observations, **self.params), dtype=np.float32)
        return (r.reshape(-1) * np.float32(self.scale)).astype(np.float32)


@dataclass(frozen=True)
class EpisodeSpec:
    """``source: event`` splits on EpisodeEvent END/RESET; ``source: bag`` makes one episode per bag."""

    source: str
    topic: Optional[str] = None
    terminal_reasons: Tuple[str, ...] = TERMINAL_REASONS

    def canonical(self) -> Dict[str, Any]:
        if self.source == "event":
            return {"source": "event", "topic": self.topic, "type": EPISODE_EVENT_TYPE,
                    "terminal_reasons": list(self.terminal_reasons)}
        return {"source": "bag"}


class InterfaceDescription:
    """A loaded, validated interface description. Build it with :func:`load_interface`."""

    def __init__(self, *, name: str, control_rate_hz: float, max_staleness_s: float,
                 observations: List[StreamSpec], action: ActionSpec, reward: RewardSpec,
                 episodes: EpisodeSpec, description: str = "", source: str = "<dict>"):
        self.name = name
        self.control_rate_hz = float(control_rate_hz)
        self.max_staleness_s = float(max_staleness_s)
        self.observations = list(observations)
        self.action = action
        self.reward = reward
        self.episodes = episodes
        self.description = description
        self.source = source
        self.fingerprint = hashlib.sha256(self.canonical_json().encode()).hexdigest()
        self.observers: Dict[str, List[Converter]] = {}
        """topic → the stateful converters that must :meth:`observe` each of its messages."""
        for s in self.observations:
            if s.converter.stateful:
                for topic in [s.topic] + [t for t, _ in s.converter.extra_topics]:
                    self.observers.setdefault(topic, []).append(s.converter)
        main = {s.topic for s in self.observations} | {self.action.topic, self.reward.topic, self.episodes.topic}
        self.optional_topics = {t for s in self.observations for t, _ in s.converter.extra_topics} - main
        """Extra topics of stateful streams (``/tf_static``) that nothing else needs: a bag may lack them."""
        self.observation_layout = "dict" if any(s.converter.is_image for s in self.observations) else "flat"
        self.observation_slices: Dict[str, slice] = {}
        if self.observation_layout == "flat":
            start = 0
            for s in self.observations:
                self.observation_slices[s.name] = slice(start, start + s.converter.size)
                start += s.converter.size

    # ------------------------------------------------------------------ description
    def to_dict(self) -> Dict[str, Any]:
        """The canonical description (defaults filled in); :func:`interface_from_dict` reads it back."""
        d = {
            "name": self.name,
            "control_rate_hz": self.control_rate_hz,
            "max_staleness_s": self.max_staleness_s,
            "observations": [s.canonical() for s in self.observations],
            "action": self.action.canonical(),
            "reward": self.reward.canonical(),
            "episodes": self.episodes.canonical(),
        }
        if self.description:
            d["description"] = self.description
        return d

    def canonical_json(self) -> str:
        d = self.to_dict()
        d.pop("description", None)
        return json.dumps(d, sort_keys=True, separators=(",", ":"))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def streams(self) -> List[Stream]:
        """Every (topic, message type) the description reads, without duplicates, in a stable order."""
        out: List[Stream] = []
        for s in self.observations:
            out.append(Stream(s.topic, s.msgtype))
            out.extend(Stream(t, m) for t, m in s.converter.extra_topics)
        out.append(Stream(self.action.topic, self.action.msgtype))
        if self.reward.source == "topic":
            out.append(Stream(self.reward.topic, self.reward.msgtype))
        if self.episodes.source == "event":
            out.append(Stream(self.episodes.topic, EPISODE_EVENT_TYPE))
        seen, unique = set(), []
        for s in out:
            if s not in seen:
                seen.add(s)
                unique.append(s)
        return unique

    def topics(self) -> List[Stream]:
        """Same as :meth:`streams`: a list of ``(topic, message type)`` pairs."""
        return self.streams()

    @property
    def control_period_s(self) -> float:
        return 1.0 / self.control_rate_hz

    @property
    def action_dim(self) -> int:
        return self.action.converter.size

    @property
    def observation_shape(self):
        """``(D,)`` for the flat layout, ``{name: shape}`` for the dict layout."""
        if self.observation_layout == "flat":
            return (sum(s.converter.size for s in self.observations),)
        return {s.name: s.shape for s in self.observations}

    # ------------------------------------------------------------------ conversion
    def observe(self, topic: str, msg) -> None:
        """Feed one message (any topic, in arrival order) to the stateful streams that read it."""
        for conv in self.observers.get(topic, ()):
            conv.observe(msg)

    def reset_state(self) -> None:
        """Forget what the stateful streams have seen (a new robot connection, a new bag)."""
        for convs in self.observers.values():
            for conv in convs:
                conv.reset()

    def assemble_observation(self, per_stream: Mapping[str, np.ndarray]):
        """Observation from per-stream arrays (any leading batch/time axes): flat vector or dict."""
        if self.observation_layout == "dict":
            return {s.name: per_stream[s.name] for s in self.observations}
        parts = [np.asarray(per_stream[s.name], dtype=np.float32) for s in self.observations]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)

    def observation_arrays(self, latest: Mapping[str, Any]) -> Dict[str, np.ndarray]:
        """Per-stream arrays from the latest message of each observed topic (``{topic: msg}``)."""
        out = {}
        for s in self.observations:
            msg = latest.get(s.topic)
            if msg is None:
                raise ConversionError(f"no message yet on observation topic {s.topic} (stream '{s.name}')")
            try:
                out[s.name] = s.converter.to_array(msg)
            except NotReady as exc:
                raise NotReady(f"stream '{s.name}': {exc}") from None
        return out

    def build_observation(self, latest: Mapping[str, Any]):
        """The observation a policy sees, from the latest message per topic (``{topic: msg}``).

        The policy server calls this on rclpy messages; the bag reader builds datasets with the
        same converters and :meth:`assemble_observation`, so both give identical arrays.
        """
        return self.assemble_observation(self.observation_arrays(latest))

    def action_from_message(self, msg) -> np.ndarray:
        """The action vector a recorded command carries (not clipped: the dataset shows what was sent)."""
        return self.action.converter.to_array(msg)

    def clip_action(self, action) -> np.ndarray:
        return clip_action(action, self.action.low, self.action.high)

    def action_to_message(self, action, message_factory: Callable[[], Any], stamp: Optional[int] = None):
        """A command message for ``action``, clipped to ``[low, high]``.

        ``message_factory`` returns a new, default-valued message of the action type when called
        without arguments: an rclpy class (``std_msgs.msg.Float64MultiArray``) or
        :func:`robot_training.interface.converters.rosbags_message_factory`.
        """
        return self.action.converter.to_message(self.clip_action(action), message_factory, stamp=stamp)

    def __repr__(self) -> str:
        return (f"InterfaceDescription(name={self.name!r}, control_rate_hz={self.control_rate_hz}, "
                f"observations={[s.name for s in self.observations]}, action_dim={self.action_dim}, "
                f"fingerprint={self.fingerprint[:12]})")


# --------------------------------------------------------------------------- loading


def load_interface(path: Union[str, os.PathLike, InterfaceDescription]) -> InterfaceDescription:
    """Read and validate an interface description YAML file (an already loaded one is returned)."""
    if isinstance(path, InterfaceDescription):
        return path
    data = parse_yaml_file(path, "interface description", InterfaceError)
    return interface_from_dict(data, source=str(path))


def interface_from_yaml_text(text: str, source: str = "<yaml>") -> InterfaceDescription:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InterfaceError(f"{source}: not valid YAML: {exc}") from None
    return interface_from_dict(data, source=source)


def interface_from_dict(data: Any, source: str = "<dict>") -> InterfaceDescription:
    """Validate a mapping (as read from YAML, or :meth:`InterfaceDescription.to_dict`)."""
    if not isinstance(data, Mapping):
        raise InterfaceError(f"{source}: top level must be a mapping, got {type(data).__name__}")
    top = Options(data, source, top=True)
    name = top.get("name", str, "")
    description = top.get("description", str, "")
    rate = top.positive("control_rate_hz", float)
    staleness = top.positive("max_staleness_s", float, 2.5 / rate)

    obs_list = top.get("observations", list)
    if not obs_list:
        raise InterfaceError(f"{source}: observations: must list at least one stream")
    observations: List[StreamSpec] = []
    names = set()
    for i, item in enumerate(obs_list):
        where = f"{source}: observations[{i}]"
        if not isinstance(item, Mapping):
            raise InterfaceError(f"{where}: expected a mapping, got {type(item).__name__}")
        opts = Options(item, where)
        sname = opts.get("name", str)
        if sname in names:
            raise InterfaceError(f"{where}.name: duplicate stream name '{sname}'")
        names.add(sname)
        topic = _topic(opts)
        msgtype = opts.get("type", str)
        conv = make_converter(msgtype, opts)
        opts.finish()
        observations.append(StreamSpec(sname, topic, msgtype, conv))

    action = _parse_action(top.get("action", Mapping), f"{source}: action")
    reward = _parse_reward(top.get("reward", Mapping, {"source": "none"}), f"{source}: reward")
    episodes = _parse_episodes(top.get("episodes", Mapping, {"source": "bag"}), f"{source}: episodes")
    top.finish()
    return InterfaceDescription(name=name, control_rate_hz=rate, max_staleness_s=staleness,
                                observations=observations, action=action, reward=reward,
                                episodes=episodes, description=description, source=source)


def _topic(opts: Options) -> str:
    topic = opts.get("topic", str)
    if not topic.startswith("/") or " " in topic or topic.endswith("/") and topic != "/":
        raise InterfaceError(f"{opts.where}.topic: expected an absolute topic name like '/joint_states', got {topic!r}")
    return topic


def _parse_action(data: Mapping, where: str) -> ActionSpec:
    opts = Options(data, where)
    topic = _topic(opts)
    msgtype = opts.get("type", str)
    conv = make_converter(msgtype, opts, action=True)
    n = conv.size
    low = opts.float_list("low", None)
    high = opts.float_list("high", None)
    opts.finish()
    low_a = np.full(n, -np.inf) if low is None else np.asarray(low, dtype=np.float64)
    high_a = np.full(n, np.inf) if high is None else np.asarray(high, dtype=np.float64)
    for key, arr in (("low", low_a), ("high", high_a)):
        if arr.shape[0] != n:
            raise InterfaceError(f"{where}.{key}: {arr.shape[0]} values for an action of size {n}")
    if np.any(low_a > high_a):
        bad = int(np.argmax(low_a > high_a))
        raise InterfaceError(f"{where}: low[{bad}]={low_a[bad]} is above high[{bad}]={high_a[bad]}")
    return ActionSpec("action", topic, msgtype, conv, low=low_a, high=high_a)


def _parse_reward(data: Mapping, where: str) -> RewardSpec:
    opts = Options(data, where)
    source = opts.get("source", str, None, choices=("topic", "function", "none"))
    if source is None:
        source = "function" if "function" in data else "topic" if "topic" in data else "none"
    if source == "none":
        opts.finish()
        return RewardSpec("none")
    scale = opts.get("scale", float, 1.0)
    if source == "topic":
        topic = _topic(opts)
        msgtype = opts.get("type", str, choices=REWARD_TOPIC_TYPES)
        mode = opts.get("mode", str, "sum", choices=("sum", "latest"))
        opts.finish()
        return RewardSpec("topic", topic=topic, msgtype=msgtype, mode=mode, scale=scale)
    fname = opts.get("function", str)
    if fname not in REWARD_FUNCTIONS:
        raise InterfaceError(
            f"{where}.function: unknown reward function '{fname}' (registered: {', '.join(sorted(REWARD_FUNCTIONS))})"
        )
    params = dict(opts.get("params", Mapping, {}))
    try:
        inspect.signature(REWARD_FUNCTIONS[fname]).bind({}, None, {}, **params)
    except TypeError as exc:
        raise InterfaceError(f"{where}.params: {exc}") from None
    opts.finish()
    return RewardSpec("function", function=fname, params=params, scale=scale)


def _parse_episodes(data: Mapping, where: str) -> EpisodeSpec:
    opts = Options(data, where)
    source = opts.get("source", str, None, choices=("event", "bag"))
    if source is None:
        source = "event" if "topic" in data else "bag"
    if source == "bag":
        opts.finish()
        return EpisodeSpec("bag")
    topic = _topic(opts)
    msgtype = opts.get("type", str, EPISODE_EVENT_TYPE, choices=(EPISODE_EVENT_TYPE,))
    del msgtype
    reasons = opts.str_list("terminal_reasons", list(TERMINAL_REASONS), allow_empty=True)
    opts.finish()
    return EpisodeSpec("event", topic=topic, terminal_reasons=tuple(reasons))
