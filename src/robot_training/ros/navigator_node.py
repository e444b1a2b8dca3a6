"""Waypoint navigator over ROS: follows a robot's waypoint missions and reports the results.

    navigator --ros-args -p robot:=ugv -p drive:=scripted -p missions:=5

* **The mission.** With the embedded simulator, each episode's waypoints arrive on
  ``mission_topic`` (nav_msgs/Path in ``odom``, latched, published by the simulator at every
  episode start) and the simulator publishes ``/goal_pose`` itself. With Gazebo or a real
  robot, give ``waypoints`` (x, y, z triples in ``odom``): the navigator then *sends* each
  next waypoint as ``/goal_pose`` in ``base_link`` (computed from ``/odom``, as the embedded
  robot does), which is what the interface description observes.
* **The actions** come from a pluggable source: ``drive: scripted`` acts with the robot's
  scripted controller on the interface's observation (answering every observation, so in
  the simulator's lock-step mode the mission runs as fast as the machine goes);
  ``drive: none`` leaves acting to a policy server (a trained checkpoint).
* **The results**: for every mission, waypoints reached, collision, time (the observation
  stamps: simulation time), wall-clock time, path length (from ``/odom``), logged and published as JSON on
  ``~/result`` (std_msgs/String). After ``missions`` missions (0: never) it writes
  ``report_file`` (JSON, when set) and exits with status 0.

The mission logic is :class:`robot_training.scenarios.mission.MissionTracker` (plain Python).
"""

from __future__ import annotations

import json
import time

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data

from robot_training.ros._common import declare_parameters, message_class, run_node, subscribe_observations

REACH_RADIUS = {'ugv': 0.3, 'uav': 0.4}

PARAMETERS = {
    'robot': ('ugv', "'ugv' or 'uav': its interface description, scripted controller and reach radius"),
    'interface_file': ('', 'interface description YAML (default: the shipped interface_<robot>.yaml)'),
    'drive': ('scripted', "'scripted' (the robot's scripted controller acts) or 'none' (a policy server acts)"),
    'missions': (1, 'missions to follow before exiting (0: keep going)'),
    'mission_topic': ('/mission/waypoints', 'nav_msgs/Path of each episode (embedded simulator)'),
    'waypoints': ([0.0], 'own mission: x, y, z triples in odom; the navigator then publishes /goal_pose '
                         '([0.0] or any list shorter than 3: use mission_topic)'),
    'goal_topic': ('/goal_pose', 'where the next waypoint is sent (own mission only)'),
    'odom_topic': ('/odom', 'nav_msgs/Odometry of the robot'),
    'reach_radius': (0.0, 'a waypoint is reached within this distance, m (0: the robot default)'),
    'report_file': ('', 'write every mission result here as JSON when done (empty: none)'),
}


class NavigatorNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__('navigator', **kwargs)
        p = declare_parameters(self, PARAMETERS)
        from robot_training.interface.description import load_interface
        from robot_training.envs.robots import interface_file
        from robot_training.scenarios.waypoint import ROBOTS, scripted_controller, vector_observation

        if p['robot'] not in ROBOTS:
            raise ValueError(f"robot: expected one of {', '.join(ROBOTS)}, got {p['robot']!r}")
        if p['drive'] not in ('scripted', 'none'):
            raise ValueError(f"drive: expected 'scripted' or 'none', got {p['drive']!r}")
        self.robot = p['robot']
        self.interface = load_interface(p['interface_file'] or str(interface_file(self.robot)))
        self.reach_radius = p['reach_radius'] or REACH_RADIUS[self.robot]
        self.missions_wanted = int(p['missions'])
        self.report_file = p['report_file']
        self.results: list = []
        self.tracker = None
        self.mission_start_ns = None
        self.last_stamp_ns = None
        own = list(p['waypoints'] or [])
        self.own_mission = len(own) >= 3
        if self.own_mission and len(own) % 3:
            raise ValueError(f'waypoints: {len(own)} numbers is not a list of x, y, z triples')
        from nav_msgs.msg import Odometry

        self.create_subscription(Odometry, p['odom_topic'], self._on_odom, qos_profile_sensor_data)
        if self.own_mission:
            from geometry_msgs.msg import PoseStamped

            self._goal_cls = PoseStamped
            self.goal_pub = self.create_publisher(PoseStamped, p['goal_topic'], 10)
            self._new_mission(own)
        else:
            from nav_msgs.msg import Path

            latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
            self.create_subscription(Path, p['mission_topic'], self._on_mission, latched)
        if self.interface.episodes.source == 'event':
            from robot_training_msgs.msg import EpisodeEvent

            self._event = EpisodeEvent
            self.create_subscription(EpisodeEvent, self.interface.episodes.topic, self._on_event, 10)
        self.controller = scripted_controller(self.robot) if p['drive'] == 'scripted' else None
        self._vector = vector_observation
        if self.controller is not None:
            self._latest: dict = {}
            self._trigger = self.interface.observations[-1].topic
            self._action_cls = message_class(self.interface.action.msgtype)
            self.action_pub = self.create_publisher(self._action_cls, self.interface.action.topic, 10)
            subscribe_observations(self, self.interface, self._on_observation)
        self.result_pub = self.create_publisher(message_class('std_msgs/msg/String'), '~/result', 10)
        self.get_logger().info(
            f"{self.robot} missions ({'own waypoints' if self.own_mission else p['mission_topic']}), actions: "
            f"{'scripted controller' if self.controller else 'a policy server'}, "
            f"{self.missions_wanted or 'unlimited'} mission(s)")

    # ---------------------------------------------------------------- mission
    def _new_mission(self, flat) -> None:
        from robot_training.scenarios.mission import MissionTracker

        self.tracker = MissionTracker(flat, self.reach_radius, planar=self.robot == 'ugv')
        self.mission_start_ns = None
        self.mission_start_wall = None

    def _on_mission(self, msg) -> None:
        points = [(ps.pose.position.x, ps.pose.position.y, ps.pose.position.z) for ps in msg.poses]
        if points:
            self._new_mission(points)

    def _on_odom(self, msg) -> None:
        if self.tracker is None:
            return
        from robot_training.interface.converters import stamp_ns

        stamp = stamp_ns(msg)
        if self.mission_start_wall is None:
            self.mission_start_wall = time.monotonic()
        if stamp is not None:
            self.mission_start_ns = stamp if self.mission_start_ns is None else self.mission_start_ns
            self.last_stamp_ns = stamp
        pose = msg.pose.pose
        goal = self.tracker.update((pose.position.x, pose.position.y, pose.position.z),
                                   (pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w))
        if self.own_mission:
            out = self._goal_cls()
            out.header.stamp, out.header.frame_id = msg.header.stamp, 'base_link'
            out.pose.position.x, out.pose.position.y, out.pose.position.z = (float(v) for v in goal)
            out.pose.orientation.w = 1.0
            self.goal_pub.publish(out)
            if self.tracker.complete:
                self._finish(collision=False, reason='complete')

    def _on_event(self, msg) -> None:
        if msg.event in (self._event.EVENT_END, self._event.EVENT_RESET):
            terminated = msg.reason == 'terminated'
            if self.tracker is not None and msg.success:  # the simulator saw the last waypoint reached
                self.tracker.reached = len(self.tracker.waypoints)
            self._finish(collision=terminated and not msg.success, reason=msg.reason or 'reset',
                         episode_return=float(msg.episode_return), steps=int(msg.length))

    def _finish(self, collision: bool, reason: str, episode_return: float = float('nan'), steps: int = -1) -> None:
        if self.tracker is None:
            return
        t = self.tracker
        elapsed = ((self.last_stamp_ns - self.mission_start_ns) / 1e9
                   if self.mission_start_ns is not None and self.last_stamp_ns is not None else float('nan'))
        result = {'robot': self.robot, 'mission': len(self.results), 'waypoints_reached': t.reached,
                  'num_waypoints': len(t.waypoints), 'collision': bool(collision), 'reason': reason,
                  'time_s': elapsed, 'wall_s': (time.monotonic() - self.mission_start_wall
                                                if self.mission_start_wall is not None else float('nan')),
                  'path_length_m': t.path_length, 'steps': steps, 'episode_return': episode_return}
        self.results.append(result)
        self.tracker = None
        self.get_logger().info(f"mission {result['mission']}: {t.reached}/{len(t.waypoints)} waypoints, "
                               f"{'collision' if collision else 'no collision'}, {elapsed:.1f} s, "
                               f"{t.path_length:.1f} m ({reason})")
        self.result_pub.publish(message_class('std_msgs/msg/String')(data=json.dumps(result)))
        if self.missions_wanted and len(self.results) >= self.missions_wanted:
            self._write_report()
            raise SystemExit(0)

    def _write_report(self) -> None:
        if not self.report_file:
            return
        from robot_training.utils.files import atomic_write

        with atomic_write(self.report_file, 'w') as f:
            json.dump({'robot': self.robot, 'missions': self.results}, f, indent=1)

    # ---------------------------------------------------------------- scripted actions
    def _on_observation(self, topic: str, msg) -> None:
        self.interface.observe(topic, msg)  # stateful streams (a pose from /tf) see every message
        self._latest[topic] = msg
        if topic != self._trigger or len(self._latest) < len(self.interface.observations):
            return
        observation = self._vector(self.interface, self.interface.build_observation(self._latest))
        self.action_pub.publish(self.interface.action_to_message(self.controller(observation), self._action_cls))


def main(args=None) -> None:
    def cleanup(node, _cause):
        node._write_report()

    run_node('navigator', NavigatorNode, (ValueError, OSError), cleanup=cleanup, args=args)


if __name__ == '__main__':
    main()
