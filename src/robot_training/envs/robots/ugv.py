"""The embedded differential-drive ground robot (``ugv``): waypoint missions among obstacles.

``robot_training/Ugv-v0`` is a MuJoCo model written here (:func:`ugv_mjcf`) and stepped with
``mujoco`` directly. It stands in for the Gazebo set-up of the same robot: its observation is
exactly what ``config/interface_ugv.yaml`` builds from the simulator's ROS messages, and
:meth:`UgvEnv.robot_state` gives those sensors' readings.

Robot
    A 0.36 m x 0.28 m box chassis on two wheels (radius 0.05 m, track 0.34 m; ellipsoid
    collision shapes, which roll smoothly where MuJoCo's cylinder-plane contacts make the
    chassis hop) driven by velocity actuators, torque-limited to 0.5 N m so the robot neither
    spins its wheels nor tips onto its front edge when braking; a passive frictionless caster
    sphere at the rear (a rubbing one rocked the chassis) and a free joint for the base.
    Physics at 100 Hz (``timestep`` 0.01 s, implicit-fast integrator), control at 10 Hz
    (``frame_skip`` 10).

Frames
    ``odom`` is MuJoCo's world frame (z up, the arena centred on the origin); ``base_link`` is
    the base body's frame (x forward, y left, z up) at the wheel axle's centre, 0.05 m above
    the floor. The lidar (``base_scan``) sits 0.12 m above base_link, the camera
    (``camera_link``) 0.18 m ahead and 0.10 m above it, as ``robot_messages.SENSOR_MOUNTS``
    publishes on ``/tf_static``. With ``camera=True`` a forward-facing 64 x 64 RGB camera (80
    degree vertical field of view) is rendered (EGL) only when :meth:`UgvEnv.robot_state` is
    called, never in ``step``; ``render_mode="rgb_array"`` shows the arena from above.

Action
    ``[linear.x (m/s), angular.z (rad/s)]``, the ``/cmd_vel`` Twist in base_link, clipped to
    ``[-0.5, 1.0] x [-2.0, 2.0]``. Differential-drive inverse kinematics turns it into the
    wheels' angular velocity set points, ``(v -/+ w * track / 2) / wheel_radius``.

Observation (78 float32)
    ``[0:64]``  lidar ranges, m: a planar 360 degree ring of 64 beams, beam ``i`` at
    ``-pi + i * 2 pi / 64`` counter-clockwise in base_link, cast with one ``mj_multiRay`` per
    control step against walls and obstacles only; no return within 6 m reads 6.0.
    ``[64:70]`` odometry twist in base_link: linear velocity x, y, z then angular velocity
    x, y, z (the base's true motion, as Gazebo's odometry publisher reports it).
    ``[70:76]`` IMU: gyro x, y, z then specific force x, y, z (+9.81 on z at rest).
    ``[76:78]`` the next waypoint's x, y in base_link; (0, 0) once the mission is complete.

Mission
    An 8 m x 8 m arena walled by boxes; ``num_obstacles`` cylinders (radii spread over
    0.2 - 0.3 m by index; mocap bodies, so a reset moves them without recompiling) and
    ``num_waypoints`` waypoints drawn from the reset seed (same seed, same mission). Obstacles
    keep 0.8 m from the start and a 0.7 m passage to each other and to the walls; waypoints
    keep 0.6 m from obstacles and walls and lie 2 - 4 m from the previous waypoint (the first
    from the start). A waypoint is
    reached within 0.3 m (planar); the next one then becomes the goal. Once all are reached
    ``RobotState.goal`` is zero and ``goal_odom`` stays on the last waypoint. The scripted
    driver completes all 50 default missions of seeds 0..49 (150/150 waypoints, no collision).

Reward
    Per control step: ``5.0 * (previous planar distance to the goal - new distance)`` (the goal
    of the step's start), ``+10`` for a waypoint reached, ``-50`` for a collision, ``-0.01``.
    With ``1.0`` and ``-10`` PPO reached 35 % of the waypoints after 500k steps (it learned to
    loiter: a drive towards the goal paid too little for the collisions it risked), and SAC 2 %
    after 150k; with these, PPO 80 % after 1M (``config/presets/ugv.yaml``) and SAC with its
    defaults 90-100 % with at most 4 % of missions ending in a collision from 70k steps on
    (100 % and none at 200k; README "Robots").

Disturbance (off by default)
    ``disturbance=d`` adds an offset to every command before the wheels get it, drawn from
    ``N(0, d * half the action range)`` and held for ``disturbance_hold_steps`` steps (10, 1 s):
    a push the controller must recover from. The observation, the reward and the command the
    controller sent (``/cmd_vel`` over ROS) are unchanged, so demonstrations recorded this way
    label each state with what the demonstrator asked for while visiting the states its errors
    lead to (noise injection, as in DART, Laskey et al. 2017): behavioral cloning then learns
    the recoveries a clean demonstration never shows. Its draws have their own generator,
    seeded from the reset seed.

Termination and truncation
    Terminated on a collision (a MuJoCo contact between any robot geom and a wall or an
    obstacle; the wheels and caster on the floor are not collisions) or when the last waypoint
    is reached (``info["is_success"]``). Truncated after ``max_episode_steps`` (600, 60 s) steps
    by the env itself, so ``gym.make("robot_training/Ugv-v0")`` truncates without a TimeLimit.

``info``: ``waypoints_reached``, ``num_waypoints``, ``collision``, ``mission_complete``,
``path_length`` (planar metres driven), ``is_success``.

:func:`ugv_scripted_action` drives a mission from the observation alone (the demonstrator for
behavioural cloning, usable over ROS or on recorded data).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import gymnasium as gym
import numpy as np

if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
    # mujoco reads MUJOCO_GL once, on import: headless machines render through EGL.
    os.environ["MUJOCO_GL"] = "egl"

import mujoco  # noqa: E402

from robot_training.envs.robots.base import RobotEnv, RobotState  # noqa: E402

# ----------------------------------------------------------------------------- constants

TIMESTEP_S = 0.01
FRAME_SKIP = 10
CONTROL_PERIOD_S = TIMESTEP_S * FRAME_SKIP
"""0.1 s: the 10 Hz of ``control_rate_hz`` in ``config/interface_ugv.yaml``."""

ARENA_HALF_SIZE = 4.0
"""The free floor is ``[-4, 4] x [-4, 4]`` m; the walls stand just outside it."""
WALL_HEIGHT = 0.5
OBSTACLE_HEIGHT = 0.5
OBSTACLE_RADIUS_RANGE = (0.2, 0.3)

WHEEL_RADIUS = 0.05
WHEEL_HALF_WIDTH = 0.02
TRACK_WIDTH = 0.34
"""Distance between the wheels' mid-planes, m."""
SCAN_HEIGHT = 0.12
"""The lidar's height above base_link (``base_scan`` in ``robot_messages.SENSOR_MOUNTS``)."""
CAMERA_OFFSET = (0.18, 0.0, 0.1)
IMAGE_SIZE = 64

NUM_BEAMS = 64
SCAN_ANGLE_MIN = -np.pi
SCAN_ANGLE_INCREMENT = 2.0 * np.pi / NUM_BEAMS
SCAN_ANGLE_MAX = np.pi - SCAN_ANGLE_INCREMENT
SCAN_RANGE_MIN = 0.05
SCAN_RANGE_MAX = 6.0
BEAM_ANGLES = SCAN_ANGLE_MIN + SCAN_ANGLE_INCREMENT * np.arange(NUM_BEAMS)

ACTION_LOW = np.array([-0.5, -2.0], dtype=np.float32)
ACTION_HIGH = np.array([1.0, 2.0], dtype=np.float32)

OBS_SIZE = 78
SCAN_SLICE, TWIST_SLICE, IMU_SLICE, GOAL_SLICE = slice(0, 64), slice(64, 70), slice(70, 76), slice(76, 78)

WAYPOINT_RADIUS = 0.3
PROGRESS_WEIGHT = 5.0
WAYPOINT_BONUS = 10.0
COLLISION_PENALTY = 50.0
STEP_COST = 0.01

START_CLEARANCE = 0.8
"""Obstacle surfaces keep this far from the robot's start position, m."""
PASSAGE_WIDTH = 0.7
"""Free gap kept between two obstacles and between an obstacle and a wall: the robot (0.38 m
wide) always fits through, so no mission is blocked."""
WAYPOINT_CLEARANCE = 0.6
START_WALL_CLEARANCE = 0.6
WAYPOINT_SPACING = (2.0, 4.0)
_MISSION_DRAWS = 200

_ENV_GEOM_GROUP = 0
"""Walls and obstacles: what the lidar sees (the floor is group 2, the robot group 1)."""
_SCAN_GEOM_GROUPS = np.array([1, 0, 0, 0, 0, 0], dtype=np.uint8)
_SETTLE_STEPS = 30
"""Physics steps at reset with the wheels held, so the first IMU reading is the robot at rest
on its wheels (a reading at the exact, force-free touch-down would be free fall)."""


# ----------------------------------------------------------------------------- the model


def _obstacle_radii(num_obstacles: int) -> np.ndarray:
    """Radii spread over ``OBSTACLE_RADIUS_RANGE``; fixed per obstacle so that a reset only
    moves mocap bodies (a geom's size would need its bounding volumes recomputed)."""
    low, high = OBSTACLE_RADIUS_RANGE
    if num_obstacles == 1:
        return np.array([(low + high) / 2.0])
    return np.linspace(low, high, num_obstacles)


def _walls_xml() -> str:
    half, thick, h = ARENA_HALF_SIZE, 0.05, WALL_HEIGHT / 2.0
    offset, length = half + thick, half + 2 * thick  # centre line and half-length: the corners closed
    spans = {"north": (0.0, offset, length, thick), "south": (0.0, -offset, length, thick),
             "east": (offset, 0.0, thick, length), "west": (-offset, 0.0, thick, length)}
    geoms = "\n".join(
        f'      <geom name="wall_{name}" class="environment" type="box" pos="{x} {y} {h}" size="{sx} {sy} {h}" '
        f'material="wall"/>' for name, (x, y, sx, sy) in spans.items())
    return f'    <body name="walls">\n{geoms}\n    </body>'


def _obstacles_xml(num_obstacles: int) -> str:
    far = 2.0 * ARENA_HALF_SIZE  # parked outside the arena until the first reset places them
    h = OBSTACLE_HEIGHT / 2.0
    return "\n".join(
        f'    <body name="obstacle_{k}" mocap="true" pos="{far + k} {far} {h}">\n'
        f'      <geom name="obstacle_{k}" class="environment" type="cylinder" size="{r:.4f} {h}" '
        f'material="obstacle"/>\n'
        f'    </body>' for k, r in enumerate(_obstacle_radii(num_obstacles)))


def _camera_xml(camera: bool) -> str:
    if not camera:
        return ""
    x, y, z = CAMERA_OFFSET
    # MuJoCo cameras look along their -z with +y up: x_cam = -y_body, y_cam = z_body looks along +x_body.
    return (f'      <camera name="front_camera" pos="{x} {y} {z}" xyaxes="0 -1 0 0 0 1" fovy="80"/>\n'
            f'      <geom name="camera_housing" class="robot" type="box" pos="{x - 0.025} 0 {z}" '
            f'size="0.015 0.03 0.02" rgba="0.1 0.1 0.1 1"/>\n')


def _hazard_sensors_xml(num_obstacles: int) -> str:
    """One contact sensor per hazard body (the walls, each obstacle), consecutive in
    ``sensordata``: reading them after every physics step is far cheaper than scanning
    ``data.contact`` from Python."""
    bodies = ["walls"] + [f"obstacle_{k}" for k in range(num_obstacles)]
    return "\n".join(f'    <contact name="touch_{b}" subtree1="base_link" body2="{b}" num="1" data="found"/>'
                     for b in bodies)


def ugv_mjcf(num_obstacles: int, camera: bool) -> str:
    """The MJCF of the arena, the robot and ``num_obstacles`` mocap cylinders.

    Contacts are filtered by bitmasks so that only robot-vs-world pairs are ever tested (robot
    geoms: contype 1, conaffinity 0; floor, walls, obstacles: contype 0, conaffinity 1); the
    geom groups separate what the lidar sees (group 0: walls, obstacles) from the floor (2) and
    the robot itself (1).
    """
    if num_obstacles < 0:
        raise ValueError(f"num_obstacles must be >= 0, got {num_obstacles!r}")
    r, hw, y_wheel = WHEEL_RADIUS, WHEEL_HALF_WIDTH, TRACK_WIDTH / 2.0
    caster_r = 0.025
    return f"""<mujoco model="ugv">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{TIMESTEP_S}" integrator="implicitfast"/>
  <visual>
    <global offwidth="640" offheight="640"/>
    <map znear="0.001"/>  <!-- x extent (~20 m): a 2 cm near plane, so the camera sees the floor ahead -->
  </visual>
  <asset>
    <texture name="grid" type="2d" builtin="checker" rgb1="0.55 0.55 0.5" rgb2="0.4 0.42 0.45"
             width="256" height="256"/>
    <material name="floor" texture="grid" texrepeat="8 8"/>
    <material name="wall" rgba="0.75 0.72 0.65 1"/>
    <material name="obstacle" rgba="0.8 0.25 0.2 1"/>
    <material name="chassis" rgba="0.2 0.4 0.8 1"/>
    <material name="tyre" rgba="0.1 0.1 0.1 1"/>
    <texture name="sky" type="skybox" builtin="gradient" rgb1="0.6 0.75 0.9" rgb2="0.95 0.95 1.0"
             width="64" height="64"/>
  </asset>
  <default>
    <default class="environment">
      <geom group="{_ENV_GEOM_GROUP}" contype="0" conaffinity="1"/>
    </default>
    <default class="robot">
      <geom group="1" contype="1" conaffinity="0" density="0"/>
    </default>
  </default>
  <worldbody>
    <light name="sun" pos="0 0 6" dir="0.3 0.2 -1" directional="true" diffuse="0.7 0.7 0.7" castshadow="false"/>
    <camera name="overview" pos="0 0 11" xyaxes="1 0 0 0 1 0" fovy="45"/>
    <geom name="floor" type="plane" size="{ARENA_HALF_SIZE + 1} {ARENA_HALF_SIZE + 1} 0.1" material="floor"
          group="2" contype="0" conaffinity="1" friction="1.0 0.005 0.0001"/>
{_walls_xml()}
{_obstacles_xml(num_obstacles)}
    <body name="goal_marker" mocap="true" pos="0 0 -1">
      <site name="goal_marker" type="cylinder" size="{WAYPOINT_RADIUS} 0.005" rgba="0.2 0.8 0.3 0.6"/>
    </body>
    <body name="base_link" pos="0 0 {r}">
      <freejoint name="base"/>
      <!-- battery low at the rear: the centre of mass lies between axle and caster -->
      <inertial pos="-0.07 0 0.02" mass="3.5" diaginertia="0.03 0.04 0.06"/>
      <site name="imu" pos="0 0 0" size="0.01"/>
      <site name="base_scan" pos="0 0 {SCAN_HEIGHT}" size="0.01"/>
      <geom name="chassis" class="robot" type="box" pos="-0.02 0 0.04" size="0.18 0.14 0.05" material="chassis"/>
      <geom name="lidar" class="robot" type="cylinder" pos="0 0 {SCAN_HEIGHT - 0.01}" size="0.04 0.03"
            rgba="0.15 0.15 0.15 1"/>
      <geom name="caster" class="robot" type="sphere" pos="-0.17 0 {caster_r - r}" size="{caster_r}"
            condim="1" priority="1" rgba="0.6 0.6 0.6 1"/>
{_camera_xml(camera)}      <body name="left_wheel" pos="0 {y_wheel} 0">
        <joint name="left_wheel" type="hinge" axis="0 1 0" damping="0.001" armature="0.001"/>
        <geom name="left_wheel" class="robot" type="ellipsoid" size="{r} {hw} {r}" mass="0.25"
              friction="1.2 0.005 0.0001" material="tyre"/>
      </body>
      <body name="right_wheel" pos="0 {-y_wheel} 0">
        <joint name="right_wheel" type="hinge" axis="0 1 0" damping="0.001" armature="0.001"/>
        <geom name="right_wheel" class="robot" type="ellipsoid" size="{r} {hw} {r}" mass="0.25"
              friction="1.2 0.005 0.0001" material="tyre"/>
      </body>
    </body>
  </worldbody>
  <actuator>
    <velocity name="left_motor" joint="left_wheel" kv="1.0" ctrlrange="-30 30" forcerange="-0.5 0.5"/>
    <velocity name="right_motor" joint="right_wheel" kv="1.0" ctrlrange="-30 30" forcerange="-0.5 0.5"/>
  </actuator>
  <sensor>
{_hazard_sensors_xml(num_obstacles)}
    <velocimeter name="velocimeter" site="imu"/>
    <gyro name="gyro" site="imu"/>
    <accelerometer name="accelerometer" site="imu"/>
  </sensor>
</mujoco>
"""


# ----------------------------------------------------------------------------- the mission


@dataclass
class Mission:
    """Where everything is at the start of an episode (planar, odom frame)."""

    start: np.ndarray
    """(2,) the robot's start position, m."""
    start_yaw: float
    obstacles: np.ndarray
    """(num_obstacles, 2) obstacle centres, m."""
    radii: np.ndarray
    waypoints: np.ndarray
    """(num_waypoints, 2), m, in the order they are to be reached."""


def _inside(rng: np.random.Generator, margin: float) -> np.ndarray:
    """A uniform planar point at least ``margin`` inside the walls."""
    limit = ARENA_HALF_SIZE - margin
    return rng.uniform(-limit, limit, size=2)


def _place_obstacles(rng: np.random.Generator, start: np.ndarray, radii: np.ndarray,
                     tries: int = 200) -> Optional[np.ndarray]:
    """Obstacle centres clear of the start with passable gaps, or None at a dead end."""
    centres = np.zeros((len(radii), 2))
    for k, radius in enumerate(radii):
        for _ in range(tries):
            c = _inside(rng, radius + PASSAGE_WIDTH)
            if np.linalg.norm(c - start) < radius + START_CLEARANCE:
                continue
            gaps = np.linalg.norm(centres[:k] - c, axis=1) - radii[:k] - radius
            if np.all(gaps >= PASSAGE_WIDTH):
                centres[k] = c
                break
        else:
            return None
    return centres


def _place_waypoints(rng: np.random.Generator, start: np.ndarray, obstacles: np.ndarray, radii: np.ndarray,
                     count: int, tries: int = 200) -> Optional[np.ndarray]:
    """A chain of waypoints 2 - 4 m apart clear of obstacles and walls, or None at a dead end."""
    points, previous = np.zeros((count, 2)), start
    low, high = WAYPOINT_SPACING
    for k in range(count):
        for _ in range(tries):
            p = _inside(rng, WAYPOINT_CLEARANCE)
            if not low <= np.linalg.norm(p - previous) <= high:
                continue
            if len(radii) and np.min(np.linalg.norm(obstacles - p, axis=1) - radii) < WAYPOINT_CLEARANCE:
                continue
            points[k] = previous = p
            break
        else:
            return None
    return points


def sample_mission(rng: np.random.Generator, num_obstacles: int, num_waypoints: int) -> Mission:
    """A random mission meeting the placement rules (rejection sampling, redrawn whole on a
    dead end); a function of ``rng``'s state only."""
    radii = _obstacle_radii(num_obstacles)
    for _ in range(_MISSION_DRAWS):
        start = _inside(rng, START_WALL_CLEARANCE)
        yaw = float(rng.uniform(-np.pi, np.pi))
        obstacles = _place_obstacles(rng, start, radii)
        if obstacles is None:
            continue
        waypoints = _place_waypoints(rng, start, obstacles, radii, num_waypoints)
        if waypoints is not None:
            return Mission(start, yaw, obstacles, radii, waypoints)
    raise ValueError(f"num_obstacles={num_obstacles} do not fit the {2 * ARENA_HALF_SIZE:g} m arena with "
                     f"{PASSAGE_WIDTH} m passages ({_MISSION_DRAWS} missions drawn, none fitted)")


# ----------------------------------------------------------------------------- helpers


def _quat_wxyz_to_xyzw(q: np.ndarray) -> np.ndarray:
    return np.array([q[1], q[2], q[3], q[0]])


def _yaw_quat_wxyz(yaw: float) -> np.ndarray:
    return np.array([np.cos(yaw / 2.0), 0.0, 0.0, np.sin(yaw / 2.0)])


def wheel_speeds(linear_x: float, angular_z: float) -> Tuple[float, float]:
    """Differential-drive inverse kinematics: wheel angular velocities (left, right), rad/s."""
    half_track = TRACK_WIDTH / 2.0
    return ((linear_x - angular_z * half_track) / WHEEL_RADIUS, (linear_x + angular_z * half_track) / WHEEL_RADIUS)


def scan_observation(ranges: np.ndarray) -> np.ndarray:
    """Raw ranges (``inf`` for no return) as the interface's LaserScan converter reads them."""
    r = np.asarray(ranges, dtype=np.float32)
    r = np.where(np.isnan(r) | (r == np.inf), SCAN_RANGE_MAX, r)
    return np.clip(r, 0.0, SCAN_RANGE_MAX).astype(np.float32)


def observation_from_state(state: RobotState) -> np.ndarray:
    """The 78-value observation ``config/interface_ugv.yaml`` builds from these readings."""
    obs = np.empty(OBS_SIZE, dtype=np.float32)
    obs[SCAN_SLICE] = scan_observation(state.scan)
    obs[64:67], obs[67:70] = state.linear_velocity, state.angular_velocity
    obs[70:73], obs[73:76] = state.angular_velocity, state.linear_acceleration
    obs[GOAL_SLICE] = state.goal[:2]
    return obs


# ----------------------------------------------------------------------------- the env


class UgvEnv(gym.Env, RobotEnv):
    """Waypoint missions of the differential-drive robot; see the module docstring."""

    robot_name = "ugv"
    metadata = {"render_modes": ["rgb_array"], "render_fps": int(round(1.0 / CONTROL_PERIOD_S))}

    def __init__(self, num_waypoints: int = 3, num_obstacles: int = 6, camera: bool = False,
                 max_episode_steps: int = 600, render_mode: Optional[str] = None, disturbance: float = 0.0,
                 disturbance_hold_steps: int = 10):
        _check_count("num_waypoints", num_waypoints, minimum=1)
        _check_count("num_obstacles", num_obstacles, minimum=0)
        _check_count("max_episode_steps", max_episode_steps, minimum=1)
        _check_count("disturbance_hold_steps", disturbance_hold_steps, minimum=1)
        if isinstance(disturbance, (bool, np.bool_)) or not isinstance(disturbance, (int, float, np.floating)) \
                or not 0.0 <= float(disturbance) <= 2.0:
            raise ValueError(f"disturbance must be a number in [0, 2] (a fraction of half the action range), "
                             f"got {disturbance!r}")
        self.disturbance, self.disturbance_hold_steps = float(disturbance), int(disturbance_hold_steps)
        self._disturbance_rng: Optional[np.random.Generator] = None
        self._offset = np.zeros(2)
        if not isinstance(camera, (bool, np.bool_)):
            raise ValueError(f"camera must be a bool, got {camera!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.num_waypoints, self.num_obstacles = int(num_waypoints), int(num_obstacles)
        self.camera, self.max_episode_steps, self.render_mode = bool(camera), int(max_episode_steps), render_mode

        sample_mission(np.random.default_rng(0), self.num_obstacles, self.num_waypoints)  # too many obstacles fail here
        self.model = mujoco.MjModel.from_xml_string(ugv_mjcf(self.num_obstacles, self.camera))
        self.data = mujoco.MjData(self.model)
        self._bind_model()

        self.action_space = gym.spaces.Box(ACTION_LOW, ACTION_HIGH, dtype=np.float32)
        low = np.full(OBS_SIZE, -np.inf, dtype=np.float32)
        high = np.full(OBS_SIZE, np.inf, dtype=np.float32)
        low[SCAN_SLICE], high[SCAN_SLICE] = 0.0, SCAN_RANGE_MAX
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)

        self._camera_renderer: Optional[mujoco.Renderer] = None
        self._view_renderer: Optional[mujoco.Renderer] = None
        self._image: Optional[np.ndarray] = None
        self.mission: Optional[Mission] = None
        self._reset_episode_counters()

    # ------------------------------------------------------------------ set-up

    def _bind_model(self) -> None:
        """Look up ids and preallocate the lidar's buffers once."""
        m = self.model
        name = lambda kind, n: mujoco.mj_name2id(m, kind, n)  # noqa: E731
        self._base_body = name(mujoco.mjtObj.mjOBJ_BODY, "base_link")
        self._scan_site = name(mujoco.mjtObj.mjOBJ_SITE, "base_scan")
        self._base_qpos = m.jnt_qposadr[name(mujoco.mjtObj.mjOBJ_JOINT, "base")]
        self._obstacle_mocap = np.array(
            [m.body_mocapid[name(mujoco.mjtObj.mjOBJ_BODY, f"obstacle_{k}")] for k in range(self.num_obstacles)], int)
        self._goal_mocap = m.body_mocapid[name(mujoco.mjtObj.mjOBJ_BODY, "goal_marker")]
        first = m.sensor_adr[name(mujoco.mjtObj.mjOBJ_SENSOR, "touch_walls")]
        self._hazard_contacts = self.data.sensordata[first:first + 1 + self.num_obstacles]
        """A view: > 0 where the robot touches the walls or obstacle k (a collision)."""
        adr = {s: m.sensor_adr[name(mujoco.mjtObj.mjOBJ_SENSOR, s)] for s in ("velocimeter", "gyro", "accelerometer")}
        self._sensor_slices = {s: slice(a, a + 3) for s, a in adr.items()}
        self._beam_dirs_local = np.stack([np.cos(BEAM_ANGLES), np.sin(BEAM_ANGLES), np.zeros(NUM_BEAMS)], axis=1)
        self._ray_vec = np.zeros(3 * NUM_BEAMS)
        self._ray_dist = np.zeros(NUM_BEAMS)
        self._ray_geom = np.zeros(NUM_BEAMS, dtype=np.int32)
        self._scan = np.full(NUM_BEAMS, np.inf)

    def _reset_episode_counters(self) -> None:
        self._waypoint_index = 0
        self._steps = 0
        self._path_length = 0.0
        self._collision = False

    # ------------------------------------------------------------------ gym API

    def reset(self, *, seed: Optional[int] = None, options: Optional[Dict[str, Any]] = None
              ) -> Tuple[np.ndarray, Dict[str, Any]]:
        super().reset(seed=seed)
        self.mission = sample_mission(self.np_random, self.num_obstacles, self.num_waypoints)
        if self.disturbance > 0.0:  # its own stream, drawn only when on: missions stay those of the seed
            self._disturbance_rng = np.random.default_rng(self.np_random.integers(2 ** 63))
        self._reset_episode_counters()
        self._place(self.mission)
        self._settle()
        self._cast_lidar()
        self._image = None
        return self._observation(), self._info()

    def step(self, action: np.ndarray) -> Tuple[np.ndarray, float, bool, bool, Dict[str, Any]]:
        """One 0.1 s control step with the Twist held; the progress term is measured against
        the goal of the step's start, so reaching a waypoint does not count its successor's
        (larger) distance as a loss."""
        if self.mission is None:
            raise RuntimeError("UgvEnv.step() called before reset()")
        command = np.asarray(action, dtype=np.float64).reshape(2)
        if self.disturbance > 0.0:
            if self._steps % self.disturbance_hold_steps == 0:
                self._offset = self._disturbance_rng.normal(0.0, self.disturbance, 2) * (ACTION_HIGH - ACTION_LOW) / 2
            command = command + self._offset
        linear_x, angular_z = np.clip(command, ACTION_LOW, ACTION_HIGH)
        self.data.ctrl[:] = wheel_speeds(float(linear_x), float(angular_z))
        before = self._planar_position()
        distance_before = self._goal_distance(before)
        collided = self._simulate()
        after = self._planar_position()
        self._cast_lidar()
        self._image = None
        self._steps += 1
        self._path_length += float(np.linalg.norm(after - before))

        reward = -STEP_COST
        if distance_before is not None:
            distance_after = self._goal_distance(after)
            reward += PROGRESS_WEIGHT * (distance_before - distance_after)
            if distance_after <= WAYPOINT_RADIUS:
                reward += WAYPOINT_BONUS
                self._waypoint_index += 1
                self._move_goal_marker()
        if collided:
            self._collision = True
            reward -= COLLISION_PENALTY
        terminated = self._collision or self._mission_complete()
        truncated = not terminated and self._steps >= self.max_episode_steps
        return self._observation(), float(reward), bool(terminated), bool(truncated), self._info()

    def render(self) -> Optional[np.ndarray]:
        """``rgb_array``: the arena from above (240 x 240), the current goal as a green disc."""
        if self.render_mode != "rgb_array":
            return None
        if self._view_renderer is None:
            self._view_renderer = _renderer(self.model, 240)
        self._view_renderer.update_scene(self.data, camera="overview")
        return self._view_renderer.render().copy()

    def close(self) -> None:
        for renderer in (self._camera_renderer, self._view_renderer):
            if renderer is not None:
                renderer.close()
        self._camera_renderer = self._view_renderer = None

    # ------------------------------------------------------------------ readings

    @property
    def waypoints(self) -> Optional[np.ndarray]:
        """``(num_waypoints, 3)`` this episode's waypoints on the floor in odom, m (what the
        simulator node publishes as the mission); None before the first reset."""
        if self.mission is None:
            return None
        return np.column_stack([self.mission.waypoints, np.zeros(len(self.mission.waypoints))])

    def robot_state(self) -> RobotState:
        """The sensors' readings now; the camera frame is rendered here, on demand (it costs
        a render), and reused until the next step."""
        if self.mission is None:
            raise RuntimeError("UgvEnv.robot_state() called before reset()")
        return self._readings(with_image=self.camera)

    def _readings(self, with_image: bool) -> RobotState:
        d, s = self.data, self._sensor_slices
        position = d.xpos[self._base_body].copy()
        rotation = d.xmat[self._base_body].reshape(3, 3)
        goal_odom = self._goal_odom()
        goal = rotation.T @ (goal_odom - position) if goal_odom is not None else np.zeros(3)
        return RobotState(
            position=position,
            orientation=_quat_wxyz_to_xyzw(d.xquat[self._base_body]),
            linear_velocity=d.sensordata[s["velocimeter"]].copy(),
            angular_velocity=d.sensordata[s["gyro"]].copy(),
            linear_acceleration=d.sensordata[s["accelerometer"]].copy(),
            goal=goal,
            goal_odom=goal_odom if goal_odom is not None else self._last_waypoint_odom(),
            scan=self._scan.copy(),
            scan_angle_min=SCAN_ANGLE_MIN, scan_angle_max=SCAN_ANGLE_MAX,
            scan_range_min=SCAN_RANGE_MIN, scan_range_max=SCAN_RANGE_MAX,
            image=self._camera_image() if with_image else None,
        )

    def _observation(self) -> np.ndarray:
        return observation_from_state(self._readings(with_image=False))

    def _info(self) -> Dict[str, Any]:
        complete = self._mission_complete()
        return {"waypoints_reached": self._waypoint_index, "num_waypoints": self.num_waypoints,
                "collision": self._collision, "mission_complete": complete,
                "path_length": self._path_length, "is_success": complete}

    def _camera_image(self) -> np.ndarray:
        if self._image is None:
            if self._camera_renderer is None:
                self._camera_renderer = _renderer(self.model, IMAGE_SIZE)
            self._camera_renderer.update_scene(self.data, camera="front_camera")
            self._image = self._camera_renderer.render().copy()
        return self._image

    # ------------------------------------------------------------------ simulation

    def _place(self, mission: Mission) -> None:
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        q = self._base_qpos
        d.qpos[q:q + 3] = (mission.start[0], mission.start[1], WHEEL_RADIUS)
        d.qpos[q + 3:q + 7] = _yaw_quat_wxyz(mission.start_yaw)
        for k, mocap in enumerate(self._obstacle_mocap):
            d.mocap_pos[mocap] = (mission.obstacles[k, 0], mission.obstacles[k, 1], OBSTACLE_HEIGHT / 2.0)
        self._move_goal_marker()
        mujoco.mj_forward(m, d)

    def _settle(self) -> None:
        """Let the robot sink into its contacts at rest (wheels commanded still)."""
        self.data.ctrl[:] = 0.0
        mujoco.mj_step(self.model, self.data, nstep=_SETTLE_STEPS)
        mujoco.mj_forward(self.model, self.data)

    def _simulate(self) -> bool:
        """``FRAME_SKIP`` physics steps; True when any of them had a robot-vs-wall/obstacle
        contact (the contact sensors, read after every physics step, so a glancing touch is not
        missed). A final ``mj_forward`` makes the sensors and contacts those of the new state
        (``mj_step`` leaves them computed for the state before its integration)."""
        m, d = self.model, self.data
        collided = False
        for _ in range(FRAME_SKIP):
            mujoco.mj_step(m, d)
            collided = collided or self._touching_hazard()
        mujoco.mj_forward(m, d)
        return collided or self._touching_hazard()

    def _touching_hazard(self) -> bool:
        return bool(self._hazard_contacts.any())

    def _cast_lidar(self) -> None:
        """One ``mj_multiRay`` from the lidar, against group 0 (walls and obstacles) only."""
        d = self.data
        origin = d.site_xpos[self._scan_site]
        rotation = d.site_xmat[self._scan_site].reshape(3, 3)
        self._ray_vec[:] = (self._beam_dirs_local @ rotation.T).reshape(-1)
        mujoco.mj_multiRay(self.model, d, origin, self._ray_vec, _SCAN_GEOM_GROUPS, 1, -1,
                           self._ray_geom, self._ray_dist, None, NUM_BEAMS, SCAN_RANGE_MAX)
        hit = (self._ray_geom >= 0) & (self._ray_dist >= 0.0) & (self._ray_dist <= SCAN_RANGE_MAX)
        self._scan = np.where(hit, self._ray_dist, np.inf)

    # ------------------------------------------------------------------ mission state

    def _planar_position(self) -> np.ndarray:
        return self.data.qpos[self._base_qpos:self._base_qpos + 2].copy()

    def _mission_complete(self) -> bool:
        return self._waypoint_index >= self.num_waypoints

    def _goal_odom(self) -> Optional[np.ndarray]:
        """The current waypoint on the floor (z = 0) in odom, or None once all are reached."""
        if self.mission is None or self._mission_complete():
            return None
        x, y = self.mission.waypoints[self._waypoint_index]
        return np.array([x, y, 0.0])

    def _last_waypoint_odom(self) -> np.ndarray:
        x, y = self.mission.waypoints[-1]
        return np.array([x, y, 0.0])

    def _goal_distance(self, planar_position: np.ndarray) -> Optional[float]:
        goal = self._goal_odom()
        return None if goal is None else float(np.linalg.norm(goal[:2] - planar_position))

    def _move_goal_marker(self) -> None:
        goal = self._goal_odom()
        self.data.mocap_pos[self._goal_mocap] = (goal[0], goal[1], 0.005) if goal is not None else (0.0, 0.0, -1.0)


def _renderer(model: mujoco.MjModel, size: int) -> mujoco.Renderer:
    """An offscreen renderer; a missing OpenGL context gets a hint (mujoco picks its GL
    backend when first imported, before this module could default it to EGL)."""
    try:
        return mujoco.Renderer(model, size, size)
    except Exception as exc:  # mujoco.FatalError, ImportError of the GL backend
        raise RuntimeError(f"UgvEnv cannot render ({exc}); on a headless machine set MUJOCO_GL=egl before "
                           "mujoco is first imported") from exc


def _check_count(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


# ----------------------------------------------------------------------------- scripted driver

_DRIVE_HALF_WIDTH = 0.32
"""Half-width of the corridor a heading must keep free: the robot's 0.19 m plus a margin."""
_LOOKAHEAD = 1.5
_HEADINGS = np.linspace(-np.pi, np.pi, 144, endpoint=False)
_HEADING_DIRS = np.stack([np.cos(_HEADINGS), np.sin(_HEADINGS)], axis=1)
_BEAM_DIRS = np.stack([np.cos(BEAM_ANGLES), np.sin(BEAM_ANGLES)], axis=1)
_MAX_SPEED, _TURN_GAIN = 1.0, 2.5
_TURN_COST, _TURN_PERSISTENCE = 0.2, 0.15
"""rad of goal deviation per rad of turn, and per rad/s of the turn under way"""


def _free_distances(points: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """How far the robot's corridor (``_DRIVE_HALF_WIDTH`` either side) can run along each
    direction before it meets a lidar return; ``SCAN_RANGE_MAX`` where nothing blocks it."""
    along = directions @ points.T                        # (H, P)
    across = np.abs(directions[:, :1] * points[:, 1] - directions[:, 1:] * points[:, 0])
    blocking = (along > 0.0) & (across < _DRIVE_HALF_WIDTH)
    reach = along - np.sqrt(np.maximum(_DRIVE_HALF_WIDTH ** 2 - across ** 2, 0.0))
    return np.where(blocking, reach, SCAN_RANGE_MAX).min(axis=1, initial=SCAN_RANGE_MAX)


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2.0 * np.pi) - np.pi


def _choose_heading(points: np.ndarray, goal: np.ndarray, yaw_rate: float) -> float:
    """The free heading closest to the goal's bearing (a gap-following rule).

    A heading is free when its corridor is clear for the lookahead (or to the goal, if that is
    nearer); among free headings the one with the smallest deviation from the goal's bearing
    wins, with a small cost for the turn it needs and a bonus for the side the robot already
    turns to (``yaw_rate``). Those two break the tie of an obstacle right on the bearing, which
    otherwise flips from side to side as the robot turns (the beams turn with it); the yaw rate
    is the memory a memoryless rule lacks. With none free, the heading with the most room, so
    the robot turns away from the clutter it is in.
    """
    bearing, distance = float(np.arctan2(goal[1], goal[0])), float(np.hypot(goal[0], goal[1]))
    candidates = np.concatenate([[bearing], _HEADINGS])
    directions = np.vstack([[np.cos(bearing), np.sin(bearing)], _HEADING_DIRS])
    free = _free_distances(points, directions)
    need = min(distance + _DRIVE_HALF_WIDTH, _LOOKAHEAD)
    deviation = np.abs(_wrap(candidates - bearing))
    ok = free >= need
    if ok.any():
        cost = deviation + _TURN_COST * np.abs(candidates) - _TURN_PERSISTENCE * np.sign(candidates) * yaw_rate
        return float(candidates[np.flatnonzero(ok)[np.argmin(cost[ok])]])
    return float(candidates[np.argmax(free - 0.1 * deviation)])


def ugv_scripted_action(observation: np.ndarray) -> np.ndarray:
    """A Twist ``[linear.x, angular.z]`` from the 78-value observation alone.

    Steers towards the free heading nearest the goal (:func:`_choose_heading`), turning on the
    spot when the heading error is large and slowing as it turns, near the goal and when the
    corridor ahead is short. A pure function of the observation (no internal state), so
    behavioural cloning can learn it exactly. Zero once the mission is complete (goal (0, 0)).
    """
    obs = np.asarray(observation, dtype=np.float64)
    goal = obs[GOAL_SLICE]
    if not np.any(goal):
        return np.zeros(2, dtype=np.float32)
    ranges = obs[SCAN_SLICE]
    points = _BEAM_DIRS[ranges < SCAN_RANGE_MAX] * ranges[ranges < SCAN_RANGE_MAX, None]
    heading = _choose_heading(points, goal, yaw_rate=float(obs[TWIST_SLICE][5]))
    angular = np.clip(_TURN_GAIN * heading, ACTION_LOW[1], ACTION_HIGH[1])
    ahead = float(_free_distances(points, np.array([[1.0, 0.0]]))[0])
    turn_factor = max(0.0, 1.0 - abs(heading) / (np.pi / 3.0))
    speed = _MAX_SPEED * turn_factor
    speed = min(speed, 1.2 * (ahead - 0.1), 0.4 + 1.5 * float(np.hypot(*goal)))
    return np.array([np.clip(speed, 0.0, ACTION_HIGH[0]), angular], dtype=np.float32)
