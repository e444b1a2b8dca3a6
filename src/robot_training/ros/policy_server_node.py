"""Policy server: runs a trained policy on the topics of an interface description.

    policy_server --ros-args --params-file config/policy_server.yaml -p checkpoint:=policy.pt

Lifecycle-like shape on a plain node: *configure* (read parameters, load the interface and
the checkpoint, create the subscriptions) then *activate* (start the control timer). A
checkpoint that cannot be deployed stops the node at configure time with one error line.

* one subscription per observation stream of the interface (sensor-data QoS, which accepts
  reliable and best-effort publishers); the latest message of each is kept;
* a timer at the interface's ``control_rate_hz`` (node clock: simulation time with
  ``-p use_sim_time:=true``) builds the observation exactly as the training dataset did,
  runs the policy and publishes the clipped action on the action topic;
* observations older than the interface's ``max_staleness_s`` (or missing): nothing is
  published, unless ``safe_action`` is set, which is then published instead; a warning is
  logged at most every ``warn_period_s``;
* ``~/load_policy`` (robot_training_msgs/LoadPolicy) swaps the checkpoint atomically: on a bad
  file the reply has ``success: false`` and the old policy keeps acting;
* EpisodeEvent START or RESET on the interface's episode topic clears recurrent state.

The logic is in :mod:`robot_training.deploy` (plain Python).
"""

from __future__ import annotations

from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data

from robot_training.ros._common import message_class, run_node

PARAMETERS = {
    # name: (default, description)   (use_sim_time is declared by rclpy itself)
    'checkpoint': ('', 'checkpoint file to deploy (ppo, sac, bc, dreamer); empty: wait for ~/load_policy'),
    'interface_file': ('', 'interface description YAML the policy was trained with'),
    'deterministic': (True, 'act with the mean action (false: sample)'),
    'safe_action': ([0.0], 'published when observations are stale; [] (or any empty list) publishes nothing'),
    'use_safe_action': (False, 'publish safe_action on stale observations (default: publish nothing)'),
    'warn_period_s': (2.0, 'at most one stale/waiting warning per this many seconds'),
}


class PolicyServerNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__('policy_server', **kwargs)
        for name, (default, _text) in PARAMETERS.items():
            self.declare_parameter(name, default)
        self.configure()
        self.activate()

    # ---------------------------------------------------------------- lifecycle
    def configure(self) -> None:
        from robot_training.data.interface import load_interface
        from robot_training.deploy import PolicyRunner

        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        if not p['interface_file']:
            raise ValueError('set the interface_file parameter (the interface the policy was trained with)')
        self.interface = load_interface(p['interface_file'])
        safe = list(p['safe_action'] or []) if p['use_safe_action'] else None
        self.runner = PolicyRunner(self.interface, deterministic=bool(p['deterministic']), safe_action=safe)
        if p['checkpoint']:
            policy = self.runner.load(p['checkpoint'])
            self.get_logger().info(f'loaded {policy.describe()}')
        self.warn_period_s = float(p['warn_period_s'])
        self._action_cls = message_class(self.interface.action.msgtype)
        self.action_pub = self.create_publisher(self._action_cls, self.interface.action.topic, 10)
        for s in self.interface.observations:
            self.create_subscription(message_class(s.msgtype), s.topic,
                                     lambda msg, topic=s.topic: self._on_observation(topic, msg),
                                     qos_profile_sensor_data)
        if self.interface.episodes.source == 'event':
            from robot_training_msgs.msg import EpisodeEvent
            self._event_cls = EpisodeEvent
            self.create_subscription(EpisodeEvent, self.interface.episodes.topic, self._on_episode_event, 10)
        from robot_training_msgs.srv import LoadPolicy
        self.create_service(LoadPolicy, '~/load_policy', self._load_policy)

    def activate(self) -> None:
        self.timer = self.create_timer(self.interface.control_period_s, self._tick)
        self.get_logger().info(
            f"acting at {self.interface.control_rate_hz:g} Hz on {self.interface.action.topic} from "
            f"{self.runner.topics} (max staleness {self.interface.max_staleness_s:g} s, on stale: "
            f"{'safe action ' + str(self.runner.safe_action.tolist()) if self.runner.safe_action is not None else 'publish nothing'})")

    # ---------------------------------------------------------------- callbacks
    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _on_observation(self, topic: str, msg) -> None:
        self.runner.on_message(topic, msg, self._now_ns())

    def _on_episode_event(self, msg) -> None:
        if msg.event in (self._event_cls.EVENT_START, self._event_cls.EVENT_RESET):
            self.runner.reset()

    def _tick(self) -> None:
        now = self._now_ns()
        tick = self.runner.tick(now)
        if tick.action is not None:
            self.action_pub.publish(self.interface.action_to_message(tick.action, self._action_cls, stamp=now))
        if tick.status != 'ok':
            log = self.get_logger().error if tick.status == 'error' else self.get_logger().warning
            log(f'not acting ({tick.status}): {tick.detail}', throttle_duration_sec=self.warn_period_s)

    def _load_policy(self, request, response):
        from robot_training.deploy import DeployError

        try:
            policy = self.runner.load(request.checkpoint_path)
        except DeployError as err:
            response.success = False
            response.message = f'refused, previous policy kept: {err}'
            self.get_logger().error(response.message)
            return response
        response.success = True
        response.message = f'loaded {policy.describe()}'
        self.get_logger().info(response.message)
        return response


def main(args=None) -> None:
    from robot_training.deploy import DeployError

    def report(node, _cause):
        counts = getattr(getattr(node, 'runner', None), 'counts', None)
        if counts:
            print(f'[policy_server] ticks: {counts}', flush=True)

    run_node('policy_server', PolicyServerNode, (DeployError, ValueError, OSError),  # checkpoint, interface, parameters
             cleanup=report, args=args)


if __name__ == '__main__':
    main()
