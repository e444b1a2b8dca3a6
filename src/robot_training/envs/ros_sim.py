"""A Gymnasium MuJoCo env seen through an interface description: the simulator node's core.

::

    sim = InterfaceSim(load_interface("config/interface_inverted_pendulum.yaml"), "InvertedPendulum-v5")
    out = sim.reset()                     # SimOutput: observation messages, events
    sim.set_action(cmd_msg)               # any message of the action type (clipped)
    out = sim.step()                      # one control step with the action held

The env's flat observation vector is split into the interface's observation streams (in
order, with the stream converters' ``to_message``), so that the policy server's
``build_observation`` gives back exactly the env's observation. The reward goes to a
``std_msgs/Float64`` (``.data``), episode boundaries to EpisodeEvent values (START after every
reset, END with reason ``terminated`` or ``truncated``). The next :meth:`step` after an END
resets the env first. Time is simulation time: ``control_period_s`` per step, starting at 0.
A reset after the first one also takes one control period, so that the END of an episode
(stamped with its last observation) and the START of the next never share a time stamp: a
recording then splits into episodes without ambiguity.

An embedded robot (:mod:`robot_training.envs.robots`: an env with ``robot_state()``) is served
as its Gazebo counterpart would be: every observation stream is a full message built from the
robot's sensor readings (:mod:`robot_training.envs.robot_messages`), not from the observation
vector; at every episode start the interface's observation of those messages is checked
against the env's own observation, so a robot and its interface description cannot drift apart.

Plain Python: message classes are passed in as factories (rclpy classes in the node).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from robot_training.envs import robot_messages
from robot_training.envs.make import make_env
from robot_training.recording.episode_meta import EVENT_END, EVENT_RESET, EVENT_START


class SimError(ValueError):
    """An env that does not fit the interface description."""


@dataclass
class Episode:
    """An episode boundary, with the values an EpisodeEvent carries."""

    episode_id: int
    event: int
    episode_return: float = 0.0
    length: int = 0
    success: bool = False
    reason: str = ""
    stamp_ns: Optional[int] = None
    """Time of the event when it is not the output's time (a RESET: the old episode's last step)."""


@dataclass
class SimOutput:
    """What one reset or step produced: observation messages by topic, reward, boundaries."""

    sim_time_ns: int
    observations: Dict[str, Any]
    observation: np.ndarray
    reward: Optional[float] = None
    events: List[Episode] = field(default_factory=list)


class InterfaceSim:
    def __init__(self, interface, env: Any = "InvertedPendulum-v5", seed: int = 0,
                 message_factories: Optional[Dict[str, Callable[[], Any]]] = None,
                 max_episode_steps: Optional[int] = None, env_kwargs: Optional[Dict[str, Any]] = None):
        kwargs = dict(env_kwargs or {})
        if max_episode_steps:
            kwargs["max_episode_steps"] = int(max_episode_steps)
        self.env = make_env(env, **kwargs)
        self.robot = getattr(self.env.unwrapped, "robot_state", None) is not None
        """An embedded robot: messages from its sensor readings (any interface layout)."""
        if self.robot:
            robot_messages.check_servable(((s.topic, s.msgtype) for s in interface.observations),
                                          getattr(self.env.unwrapped, "robot_name", env))
        elif interface.observation_layout != "flat":
            raise SimError("a Gymnasium env is served as vector observations only (no image streams); "
                           "the embedded robots (robot_training/Ugv-v0 with camera) publish images")
        self.interface = interface
        act_shape = getattr(self.env.action_space, "shape", None)
        if interface.observation_layout == "flat":
            obs_dim = int(np.prod(self.env.observation_space.shape))
            if obs_dim != interface.observation_shape[0]:
                raise SimError(f"env {env} observes {obs_dim} values, interface {interface.source} "
                               f"describes {interface.observation_shape[0]}")
        if not act_shape or int(np.prod(act_shape)) != interface.action_dim:
            raise SimError(f"env {env} has action space {self.env.action_space}, interface {interface.source} "
                           f"describes {interface.action_dim} values")
        self.factories = dict(message_factories or {})
        self.seed = int(seed)
        self.period_ns = int(round(1e9 / interface.control_rate_hz))
        self.sim_time_ns = 0
        self.episode_id = 0
        self.episode_return = 0.0
        self.length = 0
        self.steps = 0
        self.need_reset = True
        self.action = np.zeros(interface.action_dim, dtype=np.float64)
        self.observation: Optional[np.ndarray] = None
        self.last_state = None
        """The robot's sensor readings behind the latest messages (embedded robots only)."""

    # ------------------------------------------------------------------ messages
    def observation_messages(self, obs: np.ndarray) -> Dict[str, Any]:
        if self.robot:
            self.last_state = self.robot_state()
            return robot_messages.robot_messages(
                self.last_state, ((s.topic, s.msgtype) for s in self.interface.observations), self.factories,
                self.sim_time_ns, self.interface.control_period_s)
        out = {}
        for s in self.interface.observations:
            factory = self.factories.get(s.topic)
            if factory is None:
                continue
            values = np.asarray(obs, dtype=np.float64)[self.interface.observation_slices[s.name]]
            out[s.topic] = s.converter.to_message(values, factory, stamp=self.sim_time_ns)
        return out

    def mission_waypoints(self) -> Optional[np.ndarray]:
        """The current episode's waypoints ``(K, 3)`` in odom (embedded robots; else None)."""
        points = getattr(self.env.unwrapped, "waypoints", None) if self.robot else None
        return None if points is None else np.asarray(points, dtype=np.float64).reshape(-1, 3)

    def robot_state(self):
        """The embedded robot's sensor readings now (None for a plain Gymnasium env)."""
        return self.env.unwrapped.robot_state() if self.robot else None

    def check_observation(self, messages: Dict[str, Any]) -> None:
        """Raise :class:`SimError` when the interface's observation of the robot's messages is
        not the env's own observation (a robot and its interface description out of step)."""
        if not self.robot or self.interface.observation_layout != "flat" or \
                any(s.topic not in messages for s in self.interface.observations):
            return
        built = self.interface.build_observation(messages)
        own = np.asarray(self.observation, dtype=np.float32).reshape(-1)
        bad = np.flatnonzero(~np.isclose(built, own, rtol=1e-4, atol=1e-4))
        if bad.size:
            names = [name for name, sl in self.interface.observation_slices.items() if sl.start <= bad[0] < sl.stop]
            raise SimError(f"interface {self.interface.source}: stream '{names[0] if names else '?'}' gives "
                           f"{built[bad[0]]:.4g} at observation index {int(bad[0])}, the env observes "
                           f"{own[bad[0]]:.4g} ({bad.size} values differ)")

    def set_action(self, action) -> np.ndarray:
        """Hold ``action`` (a message of the action type, or a vector), clipped to the limits."""
        if not isinstance(action, (list, tuple, np.ndarray)):
            action = self.interface.action_from_message(action)
        self.action = self.interface.clip_action(action)
        return self.action

    # ------------------------------------------------------------------ stepping
    def reset(self, reason: str = "") -> SimOutput:
        """Start a new episode (END with ``reason`` first when one is running)."""
        events = []
        if not self.need_reset and reason:
            events.append(Episode(self.episode_id, EVENT_RESET, self.episode_return, self.length, False, reason,
                                  stamp_ns=self.sim_time_ns))
        if self.observation is not None:
            self.episode_id += 1
            self.sim_time_ns += self.period_ns
        obs, _ = self.env.reset(seed=self.seed + self.episode_id)
        self.observation = np.asarray(obs, dtype=np.float64)
        self.episode_return, self.length, self.need_reset = 0.0, 0, False
        self.action = np.zeros(self.interface.action_dim, dtype=np.float64)
        events.append(Episode(self.episode_id, EVENT_START))
        messages = self.observation_messages(self.observation)
        self.check_observation(messages)
        return SimOutput(self.sim_time_ns, messages, self.observation, None, events)

    def step(self) -> SimOutput:
        """One control step with the held action (a reset first after an episode ended)."""
        if self.need_reset:
            return self.reset()
        act = self.action.astype(self.env.action_space.dtype).reshape(self.env.action_space.shape)
        obs, reward, terminated, truncated, info = self.env.step(act)
        self.sim_time_ns += self.period_ns
        self.steps += 1
        self.length += 1
        self.episode_return += float(reward)
        self.observation = np.asarray(obs, dtype=np.float64)
        events = []
        if terminated or truncated:
            reason = "terminated" if terminated else "truncated"
            success = info.get("is_success", truncated and not terminated)  # a robot: its mission complete
            events.append(Episode(self.episode_id, EVENT_END, self.episode_return, self.length, bool(success), reason))
            self.need_reset = True
        return SimOutput(self.sim_time_ns, self.observation_messages(self.observation), self.observation,
                         float(reward), events)

    def close(self) -> None:
        self.env.close()
