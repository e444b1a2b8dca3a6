"""The embedded multirotor (``uav``): a quadrotor in velocity-setpoint mode flying through waypoints.

Registered as ``robot_training/Uav-v0`` (:class:`UavEnv`); its observation is what
``config/interface_uav.yaml`` builds from the simulator's Odometry, Imu and goal messages.

Robot
    A 0.5 kg X-configuration quadrotor (MJCF written here, :func:`uav_mjcf`) on a free joint
    above a ground plane. Four rotors sit at (±0.12, ±0.12, 0.02) m in ``base_link``; each is a
    MuJoCo ``motor`` on a site with ``gear = [0 0 1 0 0 ±k]``: thrust along the body z axis and a
    reaction torque about it proportional to thrust (k = 0.016 m), of alternating sign so that
    the diagonal pairs spin opposite ways. Thrust per rotor is limited to [0, 2.5] N (thrust to
    weight ≈ 2). Physics step 5 ms, control period 0.1 s (10 Hz, 20 physics steps per env step).

Inner controller (the simulated flight stack)
    The action is a velocity setpoint ``[linear.x, linear.y, linear.z, angular.z]`` (m/s, rad/s)
    in the yaw-aligned body frame (forward-left-up, no roll/pitch), as a flight stack's offboard
    velocity mode takes a Twist; it is clipped to the action bounds. At every physics step
    :class:`VelocityController` turns it into the four thrusts: velocity error → desired
    acceleration (P, horizontal part capped so the tilt stays ≤ 35°) → desired thrust vector with
    gravity compensation → collective thrust (its projection on the body z axis) and a tilt
    error (body z axis vs. thrust direction) → attitude PD torques; yaw-rate P → yaw torque;
    then a mixer (the exact inverse of the rotor geometry) to rotor thrusts, shifted down
    together if one would exceed the limit (attitude before climb) and clipped to [0, max].
    It is an idealised flight stack: mass and inertia are known exactly, there are no motor
    dynamics, no rotor drag, no wind and no sensor noise or delay, so holding the zero setpoint
    hovers in place, and a 2 m/s step settles within 2 % in 0.9 s without overshoot.

Sensors and frames (REP 103/105)
    ``odom`` is the MuJoCo world frame (x, y on the ground plane, z up, origin at the centre of
    the flight volume, the ground at z = 0); ``base_link`` the body (x forward, y left, z up),
    its origin the centre of mass. The Odometry is ideal (ground truth): pose in ``odom``,
    twist in ``base_link`` axes. The IMU (a MuJoCo accelerometer and gyro on the ``imu`` site
    at the ``base_link`` origin) reads specific force, +9.81 m/s² on z in hover; with thrust the
    only force besides gravity (no drag) its x and y read zero in free flight. With
    ``camera=True`` a 64×64 RGB camera looks straight down (image top = forward), rendered with
    :class:`mujoco.Renderer` only when :meth:`UavEnv.robot_state` is called (off-screen GL:
    ``MUJOCO_GL=egl`` is chosen here on a headless Linux when unset).

Observation (16 float32, the layout of ``config/interface_uav.yaml``)
    ``[0:4]`` orientation quaternion (x, y, z, w) of ``base_link`` in ``odom``;
    ``[4:7]`` linear and ``[7:10]`` angular velocity in ``base_link`` axes (the Odometry twist);
    ``[10:13]`` IMU linear acceleration in ``base_link``;
    ``[13:16]`` the next waypoint relative to the robot, in ``base_link`` axes (zeros once the
    mission is complete).

Mission
    At ``reset(seed=...)`` the robot starts hovering at 1 m altitude at a random (x, y) in
    [-4, 4]² m with a random heading, and ``num_waypoints`` random waypoints are drawn in the
    volume x, y ∈ [-5, 5] m, z ∈ [0.5, 3] m, each 2–5 m (3-D) from the one before it (the first
    from the start). The same seed gives the same mission. A waypoint is reached when the robot
    is within 0.4 m of it at the end of a control step; the next one then becomes the goal.

Reward (per control step)
    ``(previous distance − new distance)`` to the current goal (progress, m), +10 for each
    waypoint reached, −10 on a crash, −0.01 every step.

Termination and truncation
    Terminated on a crash — altitude below 0.1 m, any contact with the ground, tilt beyond
    60°, or leaving the box x, y ∈ [-7, 7] m, z ∈ [0, 5] m (checked at every physics step) —
    or when the mission is complete. Truncated after ``max_episode_steps`` (default 400 = 40 s).
    ``info`` holds ``waypoints_reached``, ``num_waypoints``, ``collision`` (crashed),
    ``mission_complete``, ``path_length`` (m flown) and ``is_success`` (= mission complete).

:func:`uav_scripted_action` is a scripted pilot acting on the observation alone (a saturated P
law on the relative goal, turning to face it): the reference any learned policy should beat.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    # MuJoCo picks its GL back end when it is first imported; a headless machine needs EGL.
    os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym
import mujoco
import numpy as np

from robot_training.envs.robots.base import RobotEnv, RobotState

# ----------------------------------------------------------------------------- the vehicle

GRAVITY = 9.81
"""m/s², the model's gravity (and what the controller compensates)."""
PHYSICS_TIMESTEP = 0.005
"""s, one MuJoCo step: the inner controller's rate (200 Hz)."""
CONTROL_PERIOD = 0.1
"""s, one env step (10 Hz, ``control_rate_hz`` of ``config/interface_uav.yaml``)."""
MASS = 0.5
"""kg, all of it in ``base_link`` (explicit inertial: the geoms are shape only)."""
ARM = 0.12
"""m, rotor offset along body x and y (X configuration, 0.17 m from the centre)."""
ROTOR_HEIGHT = 0.02
"""m, rotor plane above the centre of mass."""
INERTIA = (0.0023, 0.0023, 0.0040)
"""kg·m², principal moments about the centre of mass (body axes)."""
ROTOR_NAMES = ("front_right", "front_left", "rear_left", "rear_right")
ROTOR_XY = ((ARM, -ARM), (ARM, ARM), (-ARM, ARM), (-ARM, -ARM))
ROTOR_YAW_SIGN = (1.0, -1.0, 1.0, -1.0)
"""Sign of each rotor's reaction torque about body z: alternating round the frame."""
YAW_TORQUE_PER_THRUST = 0.016
"""m (N·m per N): rotor drag torque over thrust."""
MAX_ROTOR_THRUST = 2.5
"""N per rotor (4 × 2.5 N ≈ 2 × weight)."""
CAMERA_SIZE = 64
"""px, width and height of the downward camera."""


def _rotor_xml() -> Tuple[str, str]:
    """The rotors' geoms and sites (inside ``base_link``) and their thrust actuators."""
    geoms, actuators = [], []
    for name, (x, y), sign in zip(ROTOR_NAMES, ROTOR_XY, ROTOR_YAW_SIGN):
        colour = "0.8 0.2 0.2 1" if x > 0 else "0.2 0.2 0.2 1"  # red props at the front
        geoms.append(
            f'<geom name="arm_{name}" type="capsule" fromto="0 0 0 {x} {y} 0" size="0.008" rgba="0.4 0.4 0.45 1"/>\n'
            f'      <geom name="prop_{name}" type="cylinder" pos="{x} {y} {ROTOR_HEIGHT}" size="0.05 0.004" '
            f'rgba="{colour}"/>\n'
            f'      <site name="rotor_{name}" pos="{x} {y} {ROTOR_HEIGHT}" size="0.01"/>')
        actuators.append(
            f'<motor name="thrust_{name}" site="rotor_{name}" ctrlrange="0 {MAX_ROTOR_THRUST}" '
            f'gear="0 0 1 0 0 {sign * YAW_TORQUE_PER_THRUST}"/>')
    return "\n      ".join(geoms), "\n    ".join(actuators)


def uav_mjcf(camera: bool) -> str:
    """The quadrotor's MJCF: ground plane, the free-flying ``base_link`` with four thrust
    actuators, an IMU site with accelerometer and gyro, and (``camera=True``) a 64×64
    downward camera ``down``. A ``chase`` camera and a ``goal`` marker (site group 4, hidden
    from the robot's camera) serve :meth:`UavEnv.render`."""
    rotor_geoms, actuators = _rotor_xml()
    # Camera axes: image x = body -y (right), image y = body x (forward): it looks along -z.
    down_camera = (f'<camera name="down" pos="0 0 -0.035" xyaxes="0 -1 0 1 0 0" fovy="90" '
                   f'resolution="{CAMERA_SIZE} {CAMERA_SIZE}"/>' if camera else "")
    ixx, iyy, izz = INERTIA
    return f"""<mujoco model="uav">
  <compiler angle="radian"/>
  <option timestep="{PHYSICS_TIMESTEP}" gravity="0 0 {-GRAVITY}"/>
  <visual>
    <global offwidth="640" offheight="480"/>
    <quality shadowsize="1024"/>
  </visual>
  <asset>
    <texture name="grid" type="2d" builtin="checker" width="512" height="512"
             rgb1="0.35 0.45 0.3" rgb2="0.25 0.35 0.22" mark="edge" markrgb="0.8 0.8 0.7"/>
    <material name="grid" texture="grid" texrepeat="1 1" texuniform="true"/>
    <texture name="sky" type="skybox" builtin="gradient" rgb1="0.55 0.7 0.9" rgb2="0.9 0.95 1" width="64" height="64"/>
  </asset>
  <worldbody>
    <light name="sun" directional="true" pos="0 0 10" dir="0.2 0.3 -1" diffuse="0.8 0.8 0.8"/>
    <geom name="ground" type="plane" size="10 10 0.1" material="grid"/>
    <site name="goal" type="sphere" size="0.4" rgba="1 0.55 0 0.35" group="4"/>
    <body name="base_link" pos="0 0 1">
      <freejoint name="root"/>
      <inertial pos="0 0 0" mass="{MASS}" diaginertia="{ixx} {iyy} {izz}"/>
      <geom name="hull" type="box" size="0.06 0.04 0.025" rgba="0.25 0.28 0.32 1"/>
      {rotor_geoms}
      <site name="imu" pos="0 0 0" size="0.01"/>
      {down_camera}
      <camera name="chase" mode="trackcom" pos="-1.4 -1.4 1.0" xyaxes="0.707 -0.707 0 0.35 0.35 0.87"/>
    </body>
  </worldbody>
  <actuator>
    {actuators}
  </actuator>
  <sensor>
    <framepos name="position" objtype="site" objname="imu"/>
    <framequat name="orientation" objtype="site" objname="imu"/>
    <velocimeter name="linear_velocity" site="imu"/>
    <gyro name="angular_velocity" site="imu"/>
    <accelerometer name="linear_acceleration" site="imu"/>
  </sensor>
</mujoco>
"""


# ----------------------------------------------------------------------------- inner controller


@dataclass(frozen=True)
class ControllerGains:
    """Gains of the simulated flight stack. Attitude: ω_n = 20 rad/s, ζ = 0.8 (an order of
    magnitude faster than the velocity loop, whose time constant is 1/3.5 s ≈ 0.29 s)."""

    velocity_xy: float = 3.5
    """1/s, desired horizontal acceleration per m/s of velocity error."""
    velocity_z: float = 4.0
    """1/s, the same vertically (no tilt lag there)."""
    attitude_p: float = 400.0
    """1/s², angular acceleration per rad of tilt error."""
    attitude_d: float = 32.0
    """1/s, angular acceleration per rad/s of roll/pitch rate."""
    yaw_rate_p: float = 12.0
    """1/s, yaw angular acceleration per rad/s of yaw-rate error."""
    max_tilt: float = math.radians(35.0)
    """rad, the largest tilt the acceleration command may ask for."""
    max_climb_acceleration: float = 5.0
    """m/s², upwards."""
    max_sink_acceleration: float = 4.0
    """m/s², downwards (keeps the thrust well above zero)."""


def mixer_matrix() -> np.ndarray:
    """(4, 4) map from [collective thrust, roll, pitch, yaw torque] to the rotor thrusts: the
    inverse of the wrench the rotors exert on ``base_link`` (thrust f at (x, y) gives torque
    (y·f, −x·f, ±k·f))."""
    wrench_per_thrust = np.array([
        [1.0] * 4,
        [y for _, y in ROTOR_XY],
        [-x for x, _ in ROTOR_XY],
        [s * YAW_TORQUE_PER_THRUST for s in ROTOR_YAW_SIGN],
    ])
    return np.linalg.inv(wrench_per_thrust)


class VelocityController:
    """The flight stack's velocity mode: velocity setpoint (yaw-aligned FLU) → rotor thrusts.

    Runs at every physics step on the true state (the ideal estimator of a simulator)."""

    def __init__(self, mass: float, inertia: Sequence[float], gains: ControllerGains = ControllerGains()):
        self.mass = float(mass)
        self.inertia = tuple(float(i) for i in np.asarray(inertia).reshape(3))
        """kg·m², principal moments (body axes)."""
        self.gains = gains
        self.mixer = mixer_matrix()
        self._tan_max_tilt = math.tan(gains.max_tilt)

    def desired_acceleration(self, setpoint: np.ndarray, yaw: float,
                             velocity: np.ndarray) -> Tuple[float, float, float]:
        """World-frame acceleration that drives the velocity to the setpoint, within the limits."""
        g = self.gains
        c, s = math.cos(yaw), math.sin(yaw)
        vx_ref = c * setpoint[0] - s * setpoint[1]
        vy_ref = s * setpoint[0] + c * setpoint[1]
        az = g.velocity_z * (setpoint[2] - velocity[2])
        az = min(max(az, -g.max_sink_acceleration), g.max_climb_acceleration)
        ax = g.velocity_xy * (vx_ref - velocity[0])
        ay = g.velocity_xy * (vy_ref - velocity[1])
        # Cap the horizontal part so the thrust direction stays within max_tilt of vertical.
        limit = self._tan_max_tilt * (GRAVITY + az)
        norm = math.hypot(ax, ay)
        if norm > limit:
            ax, ay = ax * limit / norm, ay * limit / norm
        return ax, ay, az

    def body_wrench(self, setpoint: np.ndarray, rotation: np.ndarray, velocity: np.ndarray,
                    body_rates: np.ndarray) -> np.ndarray:
        """[collective thrust (N), roll, pitch, yaw torque (N·m)] for this state.

        ``rotation``: (3, 3) body → world; ``velocity`` in world axes; ``body_rates`` in body
        axes. Scalar arithmetic: this runs 200 times per simulated second, and NumPy's
        per-call overhead on 3-vectors would dominate the env's step time."""
        g = self.gains
        yaw = math.atan2(rotation[1, 0], rotation[0, 0])
        ax, ay, az = self.desired_acceleration(setpoint, yaw, velocity)
        fx, fy, fz = ax, ay, az + GRAVITY  # thrust per unit mass, world axes
        norm = math.sqrt(fx * fx + fy * fy + fz * fz)
        # Desired thrust direction in body axes; the body z axis is (0, 0, 1) there.
        (r00, r01, r02), (r10, r11, r12), (r20, r21, r22) = rotation.tolist()
        dx = (r00 * fx + r10 * fy + r20 * fz) / norm
        dy = (r01 * fx + r11 * fy + r21 * fz) / norm
        dz = (r02 * fx + r12 * fy + r22 * fz) / norm
        collective = self.mass * norm * max(dz, 0.0)  # thrust vector projected on body z
        tilt_x, tilt_y = -dy, dx  # e_z × d: rotation axis × sin(tilt error)
        p, q, r = body_rates.tolist()
        ixx, iyy, izz = self.inertia
        return np.array([
            collective,
            ixx * (g.attitude_p * tilt_x - g.attitude_d * p),
            iyy * (g.attitude_p * tilt_y - g.attitude_d * q),
            izz * g.yaw_rate_p * (setpoint[3] - r),
        ])

    def rotor_thrusts(self, setpoint: np.ndarray, rotation: np.ndarray, velocity: np.ndarray,
                      body_rates: np.ndarray) -> np.ndarray:
        """The four thrusts (N, in :data:`ROTOR_NAMES` order), within [0, max]."""
        thrusts = self.mixer @ self.body_wrench(setpoint, rotation, velocity, body_rates)
        excess = thrusts.max() - MAX_ROTOR_THRUST
        if excess > 0.0:  # give up collective thrust, not the torques that keep it level
            thrusts -= excess
        return np.clip(thrusts, 0.0, MAX_ROTOR_THRUST)


# ----------------------------------------------------------------------------- mission

START_ALTITUDE = 1.0
START_XY_RANGE = 4.0
"""m, the start's x and y are uniform in [-4, 4]."""
WAYPOINT_LOW = np.array([-5.0, -5.0, 0.5])
WAYPOINT_HIGH = np.array([5.0, 5.0, 3.0])
WAYPOINT_SPACING = (2.0, 5.0)
"""m, 3-D distance between consecutive waypoints (and from the start to the first)."""
WAYPOINT_RADIUS = 0.4
"""m, a waypoint is reached within this 3-D distance."""
FLIGHT_BOX = ((-7.0, -7.0, 0.0), (7.0, 7.0, 5.0))
"""m, (low, high) corners of the box the robot must stay in."""
MIN_ALTITUDE = 0.1
"""m, below this the robot has crashed."""
MAX_TILT = math.radians(60.0)
"""rad, beyond this tilt the robot has crashed (lost control)."""
REWARD_WAYPOINT, REWARD_CRASH, REWARD_STEP = 10.0, -10.0, -0.01


def draw_waypoints(rng: np.random.Generator, start: np.ndarray, count: int) -> np.ndarray:
    """(count, 3) waypoints in the mission volume, each 2–5 m from the previous (rejection
    sampling of uniform points: a few draws per waypoint, deterministic given ``rng``)."""
    low_spacing, high_spacing = WAYPOINT_SPACING
    waypoints = np.empty((count, 3))
    previous = np.asarray(start, dtype=np.float64)
    for i in range(count):
        for _ in range(10_000):
            candidate = rng.uniform(WAYPOINT_LOW, WAYPOINT_HIGH)
            if low_spacing <= np.linalg.norm(candidate - previous) <= high_spacing:
                break
        else:  # pragma: no cover - probability ~ 0.7**10000
            raise RuntimeError(f"no waypoint 2-5 m from {previous} found in the mission volume")
        waypoints[i] = previous = candidate
    return waypoints


def _quat_wxyz_to_matrix(q: np.ndarray) -> np.ndarray:
    matrix = np.empty(9)
    mujoco.mju_quat2Mat(matrix, np.asarray(q, dtype=np.float64))
    return matrix.reshape(3, 3)


# ----------------------------------------------------------------------------- the env


def _check_kwargs(num_waypoints: Any, camera: Any, max_episode_steps: Any, render_mode: Any) -> None:
    """Raise ValueError naming a keyword argument that cannot be used."""
    if isinstance(num_waypoints, bool) or not isinstance(num_waypoints, (int, np.integer)) or num_waypoints < 1:
        raise ValueError(f"UavEnv: num_waypoints must be an int >= 1, got {num_waypoints!r}")
    if not isinstance(camera, (bool, np.bool_)):
        raise ValueError(f"UavEnv: camera must be True or False, got {camera!r}")
    if isinstance(max_episode_steps, bool) or not isinstance(max_episode_steps, (int, np.integer)) \
            or max_episode_steps < 1:
        raise ValueError(f"UavEnv: max_episode_steps must be an int >= 1, got {max_episode_steps!r}")
    if render_mode is not None and render_mode not in UavEnv.metadata["render_modes"]:
        raise ValueError(f"UavEnv: render_mode must be None or one of {UavEnv.metadata['render_modes']}, "
                         f"got {render_mode!r}")


class UavEnv(gym.Env, RobotEnv):
    """The quadrotor flying a waypoint mission through velocity setpoints (see the module doc)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": int(round(1.0 / CONTROL_PERIOD))}
    robot_name = "uav"

    def __init__(self, num_waypoints: int = 3, camera: bool = False, max_episode_steps: int = 400,
                 render_mode: Optional[str] = None):
        _check_kwargs(num_waypoints, camera, max_episode_steps, render_mode)
        self.num_waypoints = int(num_waypoints)
        self.camera = bool(camera)
        self.max_episode_steps = int(max_episode_steps)
        self.render_mode = render_mode

        self.model = mujoco.MjModel.from_xml_string(uav_mjcf(self.camera))
        self.data = mujoco.MjData(self.model)
        self._body = self.model.body("base_link").id
        self._goal_site = self.model.site("goal").id
        self._substeps = int(round(CONTROL_PERIOD / self.model.opt.timestep))
        self._sensor = {name: slice(self.model.sensor(name).adr[0],
                                    self.model.sensor(name).adr[0] + self.model.sensor(name).dim[0])
                        for name in ("position", "orientation", "linear_velocity", "angular_velocity",
                                     "linear_acceleration")}
        self.controller = VelocityController(self.model.body_subtreemass[self._body],
                                             self.model.body_inertia[self._body])

        self.action_space = gym.spaces.Box(np.array([-2.0, -2.0, -1.0, -1.5], dtype=np.float32),
                                           np.array([2.0, 2.0, 1.0, 1.5], dtype=np.float32), dtype=np.float32)
        high = np.full(16, np.inf, dtype=np.float32)
        high[0:4] = 1.0
        self.observation_space = gym.spaces.Box(-high, high, dtype=np.float32)

        self._setpoint = np.zeros(4)
        self._waypoints = np.zeros((self.num_waypoints, 3))
        self._next_waypoint = 0
        self._goal_distance = 0.0
        self._steps = 0
        self._path_length = 0.0
        self._crashed = False
        self._camera_renderer: Optional[mujoco.Renderer] = None
        self._view_renderer: Optional[mujoco.Renderer] = None

    # ------------------------------------------------------------------ Gymnasium API
    def reset(self, *, seed: Optional[int] = None, options: Optional[Dict[str, Any]] = None):
        super().reset(seed=seed)
        rng = self.np_random
        start = np.array([*rng.uniform(-START_XY_RANGE, START_XY_RANGE, size=2), START_ALTITUDE])
        heading = rng.uniform(-math.pi, math.pi)
        self._waypoints = draw_waypoints(rng, start, self.num_waypoints)

        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[0:3] = start
        self.data.qpos[3:7] = (math.cos(heading / 2), 0.0, 0.0, math.sin(heading / 2))
        self._setpoint[:] = 0.0
        mujoco.mj_kinematics(self.model, self.data)
        self.data.ctrl[:] = self._control()  # hover thrust: the IMU reads +g from the first step
        mujoco.mj_forward(self.model, self.data)

        self._next_waypoint = 0
        self._goal_distance = self._distance_to_goal()
        self._steps = 0
        self._path_length = 0.0
        self._crashed = False
        self._show_goal()
        return self._observation(), self._info()

    def step(self, action):
        self._setpoint[:] = np.clip(np.asarray(action, dtype=np.float64).reshape(4),
                                    self.action_space.low, self.action_space.high)
        self._crashed = self._fly_one_control_period()
        self._steps += 1

        reward = REWARD_STEP
        if self._crashed:
            reward += REWARD_CRASH
        elif not self.mission_complete:
            distance = self._distance_to_goal()
            reward += self._goal_distance - distance
            self._goal_distance = distance
            if distance < WAYPOINT_RADIUS:
                reward += REWARD_WAYPOINT
                self._next_waypoint += 1
                if not self.mission_complete:
                    self._goal_distance = self._distance_to_goal()
                self._show_goal()
        terminated = self._crashed or self.mission_complete
        truncated = not terminated and self._steps >= self.max_episode_steps
        return self._observation(), float(reward), terminated, truncated, self._info()

    def render(self) -> Optional[np.ndarray]:
        """``rgb_array``: a 240×320 view from the chase camera, the goal shown in orange."""
        if self.render_mode != "rgb_array":
            return None
        if self._view_renderer is None:
            self._view_renderer = mujoco.Renderer(self.model, height=240, width=320)
        option = mujoco.MjvOption()
        option.sitegroup[4] = 1
        self._view_renderer.update_scene(self.data, camera="chase", scene_option=option)
        return self._view_renderer.render()

    def close(self) -> None:
        for renderer in (self._camera_renderer, self._view_renderer):
            if renderer is not None:
                renderer.close()
        self._camera_renderer = self._view_renderer = None

    # ------------------------------------------------------------------ the robot's sensors
    def robot_state(self) -> RobotState:
        """The sensors' readings now (the same numbers as the last observation), the camera
        frame rendered here when the robot has a camera."""
        position = self._reading("position")
        orientation_wxyz = self._reading("orientation")
        return RobotState(
            position=position,
            orientation=np.roll(orientation_wxyz, -1),
            linear_velocity=self._reading("linear_velocity"),
            angular_velocity=self._reading("angular_velocity"),
            linear_acceleration=self._reading("linear_acceleration"),
            goal=self._goal_in_base_link(),
            goal_odom=self._goal_odom(),
            image=self._camera_frame() if self.camera else None,
        )

    @property
    def waypoints(self) -> np.ndarray:
        """(num_waypoints, 3) the mission's waypoints in ``odom`` (a copy)."""
        return self._waypoints.copy()

    @property
    def waypoints_reached(self) -> int:
        return self._next_waypoint

    @property
    def mission_complete(self) -> bool:
        return self._next_waypoint >= self.num_waypoints

    # ------------------------------------------------------------------ internals
    def _control(self) -> np.ndarray:
        """Rotor thrusts for the held setpoint at the current (kinematics-computed) state."""
        data = self.data
        rotation = data.xmat[self._body].reshape(3, 3)
        return self.controller.rotor_thrusts(self._setpoint, rotation, data.qvel[0:3], data.qvel[3:6])

    def _fly_one_control_period(self) -> bool:
        """Advance one control period with the inner controller at every physics step; True
        (and stop early) on a crash. mj_step1 / mj_step2 let the controller see the state
        the step integrates from."""
        model, data = self.model, self.data
        before = data.qpos[0:3].tolist()
        for _ in range(self._substeps):
            mujoco.mj_step1(model, data)
            data.ctrl[:] = self._control()
            mujoco.mj_step2(model, data)
            after = data.qpos[0:3].tolist()
            self._path_length += math.dist(before, after)
            before = after
            if self._has_crashed():
                break
        mujoco.mj_forward(model, data)  # sensors and frames at the state reached
        return self._has_crashed()

    def _has_crashed(self) -> bool:
        """Too low, touching the ground, tilted past 60° or out of the flight box (from qpos,
        so that it holds right after an integration step; contacts of the last collision pass)."""
        x, y, z, _, qx, qy, _ = self.data.qpos.tolist()
        body_z_up = 1.0 - 2.0 * (qx * qx + qy * qy)  # world-z component of the body z axis
        (x_low, y_low, z_low), (x_high, y_high, z_high) = FLIGHT_BOX
        return (z < MIN_ALTITUDE or self.data.ncon > 0 or body_z_up < math.cos(MAX_TILT)
                or not (x_low <= x <= x_high and y_low <= y <= y_high and z_low <= z <= z_high))

    def _reading(self, sensor: str) -> np.ndarray:
        return self.data.sensordata[self._sensor[sensor]].copy()

    def _goal_odom(self) -> np.ndarray:
        """The next waypoint in ``odom``; the last one once the mission is complete."""
        return self._waypoints[min(self._next_waypoint, self.num_waypoints - 1)].copy()

    def _distance_to_goal(self) -> float:
        return float(np.linalg.norm(self._goal_odom() - self.data.qpos[0:3]))

    def _goal_in_base_link(self) -> np.ndarray:
        if self.mission_complete:
            return np.zeros(3)
        rotation = _quat_wxyz_to_matrix(self._reading("orientation"))
        return rotation.T @ (self._goal_odom() - self._reading("position"))

    def _observation(self) -> np.ndarray:
        return np.concatenate([
            np.roll(self._reading("orientation"), -1),
            self._reading("linear_velocity"),
            self._reading("angular_velocity"),
            self._reading("linear_acceleration"),
            self._goal_in_base_link(),
        ]).astype(np.float32)

    def _info(self) -> Dict[str, Any]:
        return {
            "waypoints_reached": self._next_waypoint,
            "num_waypoints": self.num_waypoints,
            "collision": self._crashed,
            "mission_complete": self.mission_complete,
            "path_length": self._path_length,
            "is_success": self.mission_complete,
        }

    def _show_goal(self) -> None:
        """Move the (render-only) goal marker to the current goal; a world site's frame is its
        model position, so both are set and no kinematics pass is needed."""
        goal = self._goal_odom()
        self.model.site_pos[self._goal_site] = goal
        self.data.site_xpos[self._goal_site] = goal

    def _camera_frame(self) -> np.ndarray:
        if self._camera_renderer is None:
            self._camera_renderer = mujoco.Renderer(self.model, height=CAMERA_SIZE, width=CAMERA_SIZE)
        self._camera_renderer.update_scene(self.data, camera="down")
        return self._camera_renderer.render().copy()


# ----------------------------------------------------------------------------- scripted pilot

SCRIPTED_SPEED_GAIN = 1.0
"""1/s: commanded speed per m to the goal (so it slows within 2 m of it)."""
SCRIPTED_YAW_GAIN = 1.0
"""1/s: yaw rate per rad of bearing to the goal."""
SCRIPTED_TURN_DISTANCE = 1.0
"""m: closer than this (horizontally) it stops turning, where the bearing swings."""


def uav_scripted_action(observation: np.ndarray) -> np.ndarray:
    """A velocity setpoint towards the goal from the 16-value observation alone.

    The goal (body axes) is turned into the yaw-aligned frame the setpoint is expressed in
    (undoing roll and pitch with the observed quaternion), then a P law, saturated to the
    action bounds with its direction kept, flies at it; the robot turns to face it while it is
    more than 1 m away. Zeros (hover) once the mission is complete."""
    observation = np.asarray(observation, dtype=np.float64)
    goal_body = observation[13:16]
    if not np.any(goal_body):
        return np.zeros(4, dtype=np.float32)
    qx, qy, qz, qw = observation[0:4]
    body_to_world = _quat_wxyz_to_matrix(np.array([qw, qx, qy, qz]))
    goal_world = body_to_world @ goal_body
    yaw = math.atan2(body_to_world[1, 0], body_to_world[0, 0])
    c, s = math.cos(yaw), math.sin(yaw)
    goal = np.array([c * goal_world[0] + s * goal_world[1], -s * goal_world[0] + c * goal_world[1], goal_world[2]])

    velocity = SCRIPTED_SPEED_GAIN * goal
    horizontal_speed = math.hypot(velocity[0], velocity[1])
    if horizontal_speed > 2.0:
        velocity[0:2] *= 2.0 / horizontal_speed
    velocity[2] = min(max(velocity[2], -1.0), 1.0)
    bearing = math.atan2(goal[1], goal[0])
    yaw_rate = SCRIPTED_YAW_GAIN * bearing if math.hypot(goal[0], goal[1]) > SCRIPTED_TURN_DISTANCE else 0.0
    return np.array([*velocity, min(max(yaw_rate, -1.5), 1.5)], dtype=np.float32)
