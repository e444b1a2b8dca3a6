"""Waypoint missions on the embedded robots with a pluggable action source.

A :class:`WaypointNavigator` drives (``ugv``) or flies (``uav``) seeded waypoint missions and
reports, per mission, the waypoints reached, whether it ended in a collision, the time taken
(simulated) and the path length. Its actions come from an *action source*:

* ``None``: the robot's scripted controller (``ugv_scripted_action`` / ``uav_scripted_action``);
* a checkpoint path: loaded through the deploy path (:func:`robot_training.deploy.load_policy`)
  with the robot's interface description, so the interface check a deployment makes is made
  here too;
* a :class:`~robot_training.deploy.DeployedPolicy`, a ``PolicyTrainer`` (or anything with
  ``predict(observation, deterministic)``), a ``DreamerAgent`` (``act``/``reset``), or a plain
  callable ``observation -> action``.

The seed overrode action selection by subclassing; :meth:`WaypointNavigator.select_action`
is that hook, and :meth:`WaypointNavigator.use_policy` swaps the source in place.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from robot_training.envs.make import make_env
from robot_training.envs.robots import ROBOT_ENV_IDS, interface_file

ROBOTS = tuple(ROBOT_ENV_IDS)


def scripted_controller(robot: str) -> Callable[[np.ndarray], np.ndarray]:
    if robot == "ugv":
        from robot_training.envs.robots.ugv import ugv_scripted_action
        return ugv_scripted_action
    from robot_training.envs.robots.uav import uav_scripted_action
    return uav_scripted_action


def vector_observation(interface, observation) -> np.ndarray:
    """The vector streams of an observation, concatenated in the interface's order: the whole
    observation of a flat layout; of a dict one (a camera interface) the part a scripted
    controller reads (the robot's plain interface has the same vector streams, in order)."""
    if not isinstance(observation, dict):
        return np.asarray(observation, dtype=np.float32)
    return np.concatenate([np.asarray(observation[s.name], dtype=np.float32).reshape(-1)
                           for s in interface.observations if not s.converter.is_image])


class ActionSource:
    """``reset()`` at every mission start, ``act(observation) -> action``."""

    def __init__(self, act: Callable[[np.ndarray], np.ndarray], reset: Callable[[], None] = lambda: None,
                 name: str = "policy"):
        self.act, self.reset, self.name = act, reset, name


def action_source(policy: Any, robot: str, interface=None, deterministic: bool = True) -> ActionSource:
    """An :class:`ActionSource` from any of the accepted policy forms (see the module doc)."""
    from robot_training.deploy import DeployedPolicy, load_policy

    if policy is None:
        return ActionSource(scripted_controller(robot), name=f"scripted {robot} controller")
    if isinstance(policy, ActionSource):
        return policy
    if isinstance(policy, (str, os.PathLike)):
        policy = load_policy(policy, interface=interface, deterministic=deterministic)
    if isinstance(policy, DeployedPolicy):
        return ActionSource(policy.act, policy.reset, name=policy.describe())
    if hasattr(policy, "predict"):
        return ActionSource(lambda obs: policy.predict(obs, deterministic=deterministic),
                            name=type(policy).__name__)
    if hasattr(policy, "act") and hasattr(policy, "reset"):
        return ActionSource(lambda obs: policy.act(obs, deterministic=deterministic), policy.reset,
                            name=type(policy).__name__)
    if callable(policy):
        return ActionSource(policy, name=getattr(policy, "__name__", "callable"))
    raise TypeError(f"policy: expected None, a checkpoint path, a DeployedPolicy, a trainer with predict(), an "
                    f"agent with act()/reset() or a callable; got {type(policy).__name__}")


@dataclass
class MissionResult:
    robot: str
    seed: int
    waypoints_reached: int
    num_waypoints: int
    collision: bool
    steps: int
    time_s: float
    """Simulated time of the mission (steps × control period)."""
    path_length_m: float
    episode_return: float
    truncated: bool

    @property
    def success(self) -> bool:
        return self.waypoints_reached == self.num_waypoints and not self.collision


@dataclass
class MissionReport:
    robot: str
    source: str
    missions: List[MissionResult] = field(default_factory=list)

    @property
    def waypoint_rate(self) -> float:
        total = sum(m.num_waypoints for m in self.missions)
        return sum(m.waypoints_reached for m in self.missions) / max(total, 1)

    @property
    def collision_rate(self) -> float:
        return sum(m.collision for m in self.missions) / max(len(self.missions), 1)

    @property
    def success_rate(self) -> float:
        return sum(m.success for m in self.missions) / max(len(self.missions), 1)

    def summary(self) -> str:
        n = len(self.missions)
        mean_time = np.mean([m.time_s for m in self.missions]) if n else float("nan")
        mean_path = np.mean([m.path_length_m for m in self.missions]) if n else float("nan")
        return (f"{self.robot} with {self.source}: {n} missions, waypoints reached {100 * self.waypoint_rate:.1f} %, "
                f"collisions {100 * self.collision_rate:.1f} %, complete {100 * self.success_rate:.1f} %, "
                f"mean time {mean_time:.1f} s, mean path {mean_path:.1f} m")

    def to_dict(self) -> Dict[str, Any]:
        return {"robot": self.robot, "source": self.source, "waypoint_rate": self.waypoint_rate,
                "collision_rate": self.collision_rate, "success_rate": self.success_rate,
                "missions": [asdict(m) for m in self.missions]}


class WaypointNavigator:
    """Seeded waypoint missions for ``robot`` (``"ugv"`` or ``"uav"``) with ``policy`` acting."""

    def __init__(self, robot: str = "uav", policy: Any = None, *, env_kwargs: Optional[Dict[str, Any]] = None,
                 deterministic: bool = True):
        if robot not in ROBOTS:
            raise ValueError(f"robot: expected one of {', '.join(ROBOTS)}, got {robot!r}")
        from robot_training.interface.description import load_interface

        self.robot = robot
        self.interface = load_interface(interface_file(robot))
        self.env_kwargs = dict(env_kwargs or {})
        self.deterministic = deterministic
        self.env = make_env(ROBOT_ENV_IDS[robot], **self.env_kwargs)
        self.source = action_source(policy, robot, self.interface, deterministic)

    def use_policy(self, policy: Any) -> "WaypointNavigator":
        """Act with ``policy`` from the next mission on (any accepted form; None: scripted)."""
        self.source = action_source(policy, self.robot, self.interface, self.deterministic)
        return self

    def select_action(self, observation: np.ndarray) -> np.ndarray:
        """The action for ``observation`` (the hook a subclass overrides), clipped to the limits."""
        return self.interface.clip_action(self.source.act(observation)).astype(np.float32)

    def run_mission(self, seed: int = 0) -> MissionResult:
        obs, info = self.env.reset(seed=int(seed))
        self.source.reset()
        steps, total, terminated, truncated = 0, 0.0, False, False
        while not (terminated or truncated):
            obs, reward, terminated, truncated, info = self.env.step(self.select_action(obs))
            steps += 1
            total += float(reward)
        return MissionResult(self.robot, int(seed), int(info["waypoints_reached"]), int(info["num_waypoints"]),
                             bool(info["collision"]), steps, steps * self.interface.control_period_s,
                             float(info["path_length"]), total, bool(truncated and not terminated))

    def run(self, num_missions: int = 10, seed: int = 0) -> MissionReport:
        """Missions with seeds ``seed .. seed + num_missions - 1``."""
        report = MissionReport(self.robot, self.source.name)
        for k in range(int(num_missions)):
            report.missions.append(self.run_mission(seed + k))
        return report

    def close(self) -> None:
        self.env.close()
