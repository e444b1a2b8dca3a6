"""Embedded MuJoCo simulator over ROS, shaped like a robot described by an interface file.

    sim --ros-args --params-file config/sim.yaml

Publishes the interface's observation topics (``/joint_states`` for the pendulum), its reward
topic (``std_msgs/Float64``), EpisodeEvent on its episode topic (START after every reset, END
with reason ``terminated``/``truncated``, RESET on a ``reset`` request) and ``/clock``
(rosgraph_msgs/Clock: simulation time, ``1 / control_rate_hz`` per step, for nodes run with
``use_sim_time``). Subscribes to the interface's action topic (``/cmd``).

Stepping (parameter ``step_mode``):
  * ``timer`` (default): a wall-clock timer at ``control_rate_hz * real_time_factor`` steps the
    env with the last command held, as a real robot would keep moving whatever the controller
    does; a command that arrives late acts one step later.
  * ``command``: one step per command received (lock-step, as fast as the controller goes).
    While no command arrives for ``command_timeout_s`` (wall clock) the latest observation is
    published again, so a controller that subscribed after the first one still gets it.

Every step publishes ``/clock`` first, then the observation topics (in the interface's
order), then the reward and the episode events: a node on simulation time (the recorder)
therefore receives the step's reward and the commands that answer its observation after
the clock has reached the step's time. A timer-driven controller on simulation time must
not act before the observation of its tick has arrived (the policy server waits for it).

``~/status`` (diagnostic_msgs/DiagnosticArray, every ``status_period_s``): steps, episodes,
commands and, in timer mode, ``held_steps``: steps taken with no new command since the
previous step, once a controller has started commanding (control ticks it missed).

The embedded robots (``env: robot_training/Ugv-v0`` or ``robot_training/Uav-v0``, with
``interface_file`` ``interface_ugv.yaml`` / ``interface_uav.yaml``) are served as a Gazebo +
``ros_gz_bridge`` robot would be: full Odometry, Imu, LaserScan, Image and goal PoseStamped
messages in the frames ``odom``, ``base_link``, ``base_scan``, ``camera_link``, and ``/tf``
(``odom → base_link``) plus ``/tf_static`` (sensor mounts) where ``tf2_msgs`` is installed
(system ROS; the pip-only set-up has no wheel of it, and the pose is in ``/odom`` anyway).
Every episode's waypoints go out on ``/mission/waypoints`` (nav_msgs/Path in ``odom``, latched)
for the navigator node (``navigator``) and RViz. ``env_kwargs`` passes options to the env as YAML mapping text; quote it on the command line so
that ROS reads a string: ``-p "env_kwargs:='{camera: true}'"``.

World control with standard types, named after Gazebo's ``/world/<name>/...``:
``/world/<world_name>/reset`` (std_srvs/Trigger: new episode) and
``/world/<world_name>/pause`` (std_srvs/SetBool: true pauses, false resumes).
The env logic is in :mod:`robot_training.envs.ros_sim` (plain Python).
"""

from __future__ import annotations

import time

from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from std_msgs.msg import Float32, Float64
from std_srvs.srv import SetBool, Trigger

from robot_training.recording.episode_meta import EVENT_START
from robot_training.ros._common import (REALTIME_PRIORITY, apply_realtime_priority, declare_parameters,
                                        message_class, run_node)

PARAMETERS = {
    # name: (default, description)
    'interface_file': ('', 'interface description YAML (default: the shipped interface of the env: '
                           'interface_ugv.yaml, interface_uav.yaml or interface_inverted_pendulum.yaml)'),
    'env': ('InvertedPendulum-v5', 'Gymnasium id of the simulated robot'),
    'seed': (0, 'seed of the first episode (episode k uses seed + k)'),
    'max_episode_steps': (0, 'truncate episodes after this many steps (0: the env default)'),
    'env_kwargs': ('', "options of the env as a YAML mapping, e.g. '{camera: true, num_obstacles: 4}'"),
    'step_mode': ('timer', "'timer' (hold the last command, step at the control rate) or 'command'"),
    'real_time_factor': (1.0, 'timer mode: simulated seconds per wall-clock second', (0.001, 1000.0)),
    'world_name': ('', 'name in /world/<name>/reset and /pause (default: the interface name)'),
    'publish_clock': (True, 'publish /clock (simulation time)'),
    'start_paused': (False, 'wait for /world/<name>/pause false before stepping'),
    'wait_for_subscribers': (0, 'start the first episode only once each observation topic and the command topic '
                                'have this many subscribers (the loop: 2, the actor and the recorder on the '
                                'observations, the simulator itself and the recorder on the command; 0: at once)'),
    'wait_for_command': (False, 'timer mode: hold the first episode at its first observation until a first command '
                                'arrives (published again every command_timeout_s meanwhile), so a slow-starting '
                                'actor does not leave that episode uncommanded (the loop: true; false: step at once)'),
    'command_timeout_s': (0.5, 'command mode (and timer mode while waiting for the first command): publish the '
                               'observation again after this long without a command'),
    'status_period_s': (1.0, 'period of ~/status (0: none)'),
    'realtime_priority': REALTIME_PRIORITY,
}


def parse_env_kwargs(text: str) -> dict:
    """The ``env_kwargs`` parameter: a YAML mapping of plain values (never code)."""
    import yaml

    if not text.strip():
        return {}
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"env_kwargs: not YAML ({str(exc).splitlines()[0]}): {text!r}") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"env_kwargs: expected a mapping like '{{camera: true}}', got {text!r}")
    return value


def default_interface_file(env: str) -> str:
    """The shipped interface of an embedded robot (``interface_ugv.yaml`` for
    ``robot_training/Ugv-v0``), else the pendulum's."""
    from robot_training.envs.robots import ROBOT_ENV_IDS, interface_file

    robot = next((name for name, env_id in ROBOT_ENV_IDS.items() if env_id == env), 'inverted_pendulum')
    return str(interface_file(robot))


class SimNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__('sim', **kwargs)
        p = declare_parameters(self, PARAMETERS)
        if p['step_mode'] not in ('timer', 'command'):
            raise ValueError(f"step_mode must be 'timer' or 'command', got {p['step_mode']!r}")
        from robot_training.interface.description import load_interface
        from robot_training.envs.ros_sim import InterfaceSim

        interface = load_interface(p['interface_file'] or default_interface_file(p['env']))
        self.interface = interface
        factories = {s.topic: message_class(s.msgtype) for s in interface.observations}
        self.sim = InterfaceSim(interface, p['env'], seed=p['seed'], message_factories=factories,
                                max_episode_steps=p['max_episode_steps'] or None,
                                env_kwargs=parse_env_kwargs(p['env_kwargs']))
        self._tf = self._make_tf_publishers() if self.sim.robot else None
        self.mission_pub = None
        if self.sim.robot:  # each episode's waypoints (_publish_mission skips a robot without any)
            from nav_msgs.msg import Path
            from rclpy.qos import DurabilityPolicy, QoSProfile

            self._path_cls = Path
            self.mission_pub = self.create_publisher(
                Path, '/mission/waypoints', QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self.obs_pubs = {topic: self.create_publisher(cls, topic, 10) for topic, cls in factories.items()}
        self.reward_pub = None
        if interface.reward.source == 'topic':
            self._reward_cls = Float32 if interface.reward.msgtype.endswith('Float32') else Float64
            self.reward_pub = self.create_publisher(self._reward_cls, interface.reward.topic, 10)
        self.event_pub = None
        if interface.episodes.source == 'event':
            from robot_training_msgs.msg import EpisodeEvent
            self._event_cls = EpisodeEvent
            self.event_pub = self.create_publisher(EpisodeEvent, interface.episodes.topic, 10)
        self.clock_pub = self.create_publisher(Clock, '/clock', 10) if p['publish_clock'] else None
        self.step_mode = p['step_mode']
        self._step_timer = None
        self.paused = bool(p['start_paused'])
        self.create_subscription(message_class(interface.action.msgtype), interface.action.topic, self._on_cmd, 10)
        world = p['world_name'] or interface.name or 'default'
        self.create_service(Trigger, f'/world/{world}/reset', self._reset)
        self.create_service(SetBool, f'/world/{world}/pause', self._pause)
        self.commands = 0
        self.held_steps = 0
        self._fresh_command = False
        self._last_out = None
        self._last_command_wall = time.monotonic()
        self.wait_for_command = bool(p['wait_for_command']) and self.step_mode == 'timer'
        if self.step_mode == 'timer':
            self._step_timer = self.create_timer(interface.control_period_s / p['real_time_factor'], self._step)
        if (self.step_mode == 'command' or self.wait_for_command) and p['command_timeout_s'] > 0:
            self.create_timer(min(p['command_timeout_s'], 0.5) / 2, self._republish_if_idle)
        self.command_timeout_s = float(p['command_timeout_s'])
        if p['status_period_s'] > 0:
            from diagnostic_msgs.msg import DiagnosticArray
            self._diag = DiagnosticArray
            self.status_pub = self.create_publisher(DiagnosticArray, '~/status', 10)
            self.create_timer(p['status_period_s'], self._publish_status)
        self.wait_for_subscribers = int(p['wait_for_subscribers'])
        self.started = self.wait_for_subscribers == 0
        self.get_logger().info(
            f"simulating {p['env']} as '{world}' at {interface.control_rate_hz:g} Hz ({self.step_mode} stepping"
            f"{', paused' if self.paused else ''}); action {interface.action.topic}"
            + ('' if self.started else f'; first episode once {", ".join(self._watched_topics())} have '
               f'{self.wait_for_subscribers} subscribers each')
            + (f'; first step once a command arrives on {interface.action.topic}' if self.wait_for_command else ''))
        if self.started:
            self._publish_reset()
        else:  # no episode the actor does not answer or the recorder does not see
            self._ready_timer = self.create_timer(0.05, self._start_when_subscribed)
        apply_realtime_priority(self, p['realtime_priority'])  # last: the start-up above at normal priority

    def _make_tf_publishers(self):
        """``/tf`` and ``/tf_static`` publishers, or None where tf2_msgs is not installed."""
        try:
            from geometry_msgs.msg import TransformStamped
            from tf2_msgs.msg import TFMessage
        except ImportError:
            self.get_logger().info('tf2_msgs is not installed: no /tf (the pose is in /odom)')
            return None
        from rclpy.qos import DurabilityPolicy, QoSProfile

        from robot_training.envs.robot_messages import static_transforms, transforms

        static = self.create_publisher(TFMessage, '/tf_static',
                                       QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        static.publish(TFMessage(transforms=static_transforms(TransformStamped, 0)))
        return self.create_publisher(TFMessage, '/tf', 10), TFMessage, TransformStamped, static, transforms

    def _publish_mission(self, stamp_ns: int) -> None:
        """The new episode's waypoints (nav_msgs/Path in odom) for a navigator or RViz."""
        from geometry_msgs.msg import PoseStamped

        points = self.sim.mission_waypoints()
        if points is None:
            return
        msg = self._path_cls()
        msg.header.frame_id = 'odom'
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        for x, y, z in points:
            pose = PoseStamped()
            pose.header = msg.header
            pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = float(x), float(y), float(z)
            pose.pose.orientation.w = 1.0
            msg.poses.append(pose)
        self.mission_pub.publish(msg)

    def _watched_topics(self) -> list:
        return [*(s.topic for s in self.interface.observations), self.interface.action.topic]

    def _start_when_subscribed(self) -> None:
        # count on the names as remapped (a robot of a fleet: /robot1/cmd); count_subscribers does not remap
        counts = {topic: self.count_subscribers(self.resolve_topic_name(topic)) for topic in self._watched_topics()}
        if min(counts.values()) < self.wait_for_subscribers:
            self._subscribed_since = None
            return
        # the graph lists a subscription before every publisher has matched it: give DDS a second
        now = time.monotonic()
        self._subscribed_since = getattr(self, '_subscribed_since', None) or now
        if now - self._subscribed_since < 1.0:
            return
        self.destroy_timer(self._ready_timer)
        self.started = True
        self.get_logger().info(f"subscribers {', '.join(f'{t} {n}' for t, n in counts.items())}: "
                               'starting the first episode')
        self._publish_reset()

    # ---------------------------------------------------------------- callbacks
    def _on_cmd(self, msg) -> None:
        try:
            self.sim.set_action(msg)
        except ValueError as err:  # wrong size: keep the previous command
            self.get_logger().warning(f'ignored command: {err}', throttle_duration_sec=2.0)
            return
        self.commands += 1
        self._fresh_command = True
        self._last_command_wall = time.monotonic()
        if self.step_mode == 'command' and not self.paused and self.started:
            self._step()

    def _step(self) -> None:
        if self.paused or not self.started:
            return
        if self.wait_for_command and not self.commands:  # the first episode waits for its controller
            return
        resetting = self.sim.need_reset
        if not resetting and not self._fresh_command and self.commands:  # a controller is acting
            self.held_steps += 1
        self._fresh_command = False
        self._publish(self.sim.step())

    def _republish_if_idle(self) -> None:
        """Command mode, or timer mode before the first command: nobody answered the latest
        observation; send it again."""
        if self.paused or self._last_out is None or (self.step_mode == 'timer' and self.commands):
            return
        if time.monotonic() - self._last_command_wall >= self.command_timeout_s:
            self._last_command_wall = time.monotonic()
            for topic, msg in self._last_out.observations.items():
                self.obs_pubs[topic].publish(msg)

    def status(self) -> dict:
        return {'steps': self.sim.steps, 'episodes': self.sim.episode_id, 'commands': self.commands,
                'held_steps': self.held_steps, 'step_mode': self.step_mode, 'paused': self.paused,
                'started': self.started, 'waiting_for_command': self.wait_for_command and not self.commands}

    def _publish_status(self) -> None:
        from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

        msg = self._diag()
        msg.header.stamp = self.get_clock().now().to_msg()
        st = DiagnosticStatus(name='sim', hardware_id=self.get_name(), level=DiagnosticStatus.OK,
                              message='paused' if self.paused else 'waiting for subscribers' if not self.started
                              else 'waiting for the first command' if self.wait_for_command and not self.commands
                              else 'running')
        st.values = [KeyValue(key=k, value=str(v)) for k, v in self.status().items()]
        msg.status.append(st)
        self.status_pub.publish(msg)

    def _reset(self, _request, response):
        self._publish_reset(reason='operator')
        response.success = True
        response.message = f'episode {self.sim.episode_id} started'
        return response

    def _pause(self, request, response):
        self.paused = bool(request.data)
        response.success = True
        response.message = 'paused' if self.paused else 'running'
        return response

    def _publish_reset(self, reason: str = '') -> None:
        """A new episode's first observation; in timer mode the first step follows a full
        control period later (the timer restarts), so a controller has the whole period to
        answer, whatever phase of the timer the reset came at."""
        self._publish(self.sim.reset(reason=reason) if reason else self.sim.reset())
        if self._step_timer is not None:
            self._step_timer.reset()

    def _publish(self, out) -> None:
        self._last_out = out
        sec, nsec = divmod(out.sim_time_ns, 1_000_000_000)
        if self.clock_pub is not None:
            clock = Clock()
            clock.clock.sec, clock.clock.nanosec = sec, nsec
            self.clock_pub.publish(clock)
        for topic, msg in out.observations.items():
            self.obs_pubs[topic].publish(msg)
        if self._tf is not None:
            pub, tf_message, transform, _, transforms = self._tf
            pub.publish(tf_message(transforms=transforms(self.sim.last_state, transform, out.sim_time_ns)))
        if self.mission_pub is not None and any(e.event == EVENT_START for e in out.events):
            self._publish_mission(out.sim_time_ns)
        if out.reward is not None and self.reward_pub is not None:
            self.reward_pub.publish(self._reward_cls(data=float(out.reward)))
        if self.event_pub is not None:
            for e in out.events:
                msg = self._event_cls(episode_id=e.episode_id, event=e.event, episode_return=float(e.episode_return),
                                      length=e.length, success=e.success, reason=e.reason)
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(
                    out.sim_time_ns if e.stamp_ns is None else e.stamp_ns, 1_000_000_000)
                self.event_pub.publish(msg)


def main(args=None) -> None:
    def cleanup(node, _cause):
        print(f'[sim] stopped: {node.status()}', flush=True)
        node.sim.close()

    run_node('sim', SimNode, (ValueError, OSError),  # parameters, interface file, env id
             cleanup=cleanup, args=args)


if __name__ == '__main__':
    main()
