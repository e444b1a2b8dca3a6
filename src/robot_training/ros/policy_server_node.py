"""Policy server: runs a trained policy on the topics of an interface description.

    policy_server --ros-args --params-file config/policy_server.yaml -p checkpoint:=policy.pt

An ``rclpy`` lifecycle node: *configure* reads the parameters, loads the interface and the
checkpoint and creates the subscriptions and services; *activate* starts acting (the action
publisher is a lifecycle publisher); *deactivate* stops acting, observations still arrive;
*cleanup* releases everything configure made. With ``autostart`` (default) the node configures
and activates itself at start, and a checkpoint that cannot be deployed stops it with one error
line; with ``autostart:=false`` it waits unconfigured for a lifecycle manager
(``/policy_server/change_state``, ``ros2 lifecycle set /policy_server configure``), and a
failed configure is logged and leaves it unconfigured.

* one subscription per observation stream of the interface (sensor-data QoS, which accepts
  reliable and best-effort publishers); the latest message of each is kept;
* when to act (``act_on``, see :class:`robot_training.deploy.ActTrigger`): ``observation``
  (default) answers every new message of ``trigger_topic`` at once, which is how the policy
  acted in training, on wall time, simulation time and in lock-step alike; ``timer`` acts at
  the interface's ``control_rate_hz`` on the node clock and, on simulation time, waits for the
  observation of its tick. Each action is built with the training dataset's
  ``build_observation``, clipped and published on the action topic;
* observations older than the interface's ``max_staleness_s`` (or missing): nothing is
  published, unless ``use_safe_action`` is set (``safe_action`` is then published); a warning is
  logged at most every ``warn_period_s``; NaN or infinite actions are never published;
* ``~/load_policy`` (robot_training_msgs/LoadPolicy) swaps the checkpoint atomically: on a bad
  file the reply has ``success: false`` and the old policy keeps acting;
* ``checkpoint_topic`` (robot_training_msgs/Checkpoint, e.g. a learner's
  ``/learner/checkpoints``): every announced checkpoint is hot-reloaded in a loader thread,
  verified (interface fingerprint, sha256, loadable) and swapped in between two ticks; a
  recurrent policy continues from its predecessor's state. A refused one is logged and
  counted in ``~/status``, and the old policy keeps acting;
* ``random_until_loaded``: uniform random actions until the first policy is loaded (a learning
  loop's first episodes); ``deterministic: false`` explores with the policy's own samples;
* EpisodeEvent START or RESET on the interface's episode topic clears recurrent state;
* ``~/status`` (diagnostic_msgs/DiagnosticArray, every ``status_period_s``): the policy, tick
  counts, reloads and refusals, tick cost p50/p99 and the gaps between published actions.

The logic is in :mod:`robot_training.deploy` (plain Python).
"""

from __future__ import annotations

import threading
import time

from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn

from robot_training.interface.converters import stamp_ns
from robot_training.ros._common import (REALTIME_PRIORITY, apply_realtime_priority, declare_parameters, message_class,
                                        run_node, subscribe_observations)

PARAMETERS = {
    # name: (default, description)   (use_sim_time is declared by rclpy itself)
    'checkpoint': ('', 'checkpoint file to deploy (ppo, sac, bc, dreamer); empty: wait for ~/load_policy'),
    'interface_file': ('', 'interface description YAML the policy was trained with'),
    'deterministic': (True, 'act with the mean action (false: sample, to explore while learning)'),
    'safe_action': ([0.0], 'published when observations are stale; [] (or any empty list) publishes nothing'),
    'use_safe_action': (False, 'publish safe_action on stale observations (default: publish nothing)'),
    'warn_period_s': (2.0, 'at most one stale/waiting warning per this many seconds'),
    'act_on': ('observation', "'observation' (answer each trigger_topic message) or 'timer' (control rate)"),
    'trigger_topic': ('', 'act_on observation: the topic whose messages trigger an action (default: the '
                          "interface's last observation stream)"),
    'checkpoint_topic': ('', 'robot_training_msgs/Checkpoint topic to hot-reload from (empty: none)'),
    'random_until_loaded': (False, 'uniform random actions until a policy is loaded'),
    'seed': (0, 'seed of the random actions'),
    'status_period_s': (1.0, 'period of ~/status (0: none)'),
    'torch_threads': (1, 'CPU threads for the policy (0: PyTorch default)'),
    'autostart': (True, 'configure and activate at start (false: wait for lifecycle transitions)'),
    'cpu_latency_us': (-1, 'hold a Linux PM QoS CPU wake-up latency request of this many us while the node runs '
                           '(0: idle CPUs poll, no cold wake-up before a tick; needs root; -1: none)', (-1, None)),
    'realtime_priority': REALTIME_PRIORITY,
}


class PolicyServerNode(LifecycleNode):
    def __init__(self, **kwargs) -> None:
        super().__init__('policy_server', **kwargs)
        declare_parameters(self, PARAMETERS)
        self.runner = None
        self._active = False
        self._loader = None
        self._made = {}
        self._autostart = bool(self.get_parameter('autostart').value)
        self._cpu_latency_fd = self._hold_cpu_latency(int(self.get_parameter('cpu_latency_us').value))
        self._configure_error = None
        if self._autostart:
            if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                raise self._configure_error or ValueError('configure failed')
            if self.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                raise ValueError('activate failed (see the log above)')
        # last: imports and the checkpoint load above ran at normal priority, beside the other nodes' start
        apply_realtime_priority(self, self.get_parameter('realtime_priority').value)

    # ---------------------------------------------------------------- lifecycle
    def _entities(self) -> dict:
        return {'subscriptions': set(self.subscriptions), 'services': set(self.services),
                'timers': set(self.timers), 'publishers': set(self.publishers)}

    def on_configure(self, state):
        from robot_training.deploy import DeployError

        before = self._entities()
        try:
            self.configure()
        except (DeployError, ValueError, OSError) as err:
            self._configure_error = err
            if not self._autostart:  # (autostart: the one line is the node's exit message)
                self.get_logger().error(f'configure failed: {err}')
            self._made = {k: v - before[k] for k, v in self._entities().items()}
            self._release()
            return TransitionCallbackReturn.FAILURE
        self._made = {k: v - before[k] for k, v in self._entities().items()}
        return super().on_configure(state)

    def on_activate(self, state):
        self.activate()
        self._active = True
        return super().on_activate(state)

    def on_deactivate(self, state):
        self._active = False
        self.destroy_timer(self.timer)
        return super().on_deactivate(state)

    def on_cleanup(self, state):
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state):
        self._active = False
        self.close()
        return super().on_shutdown(state)

    def _release(self) -> None:
        """Undo configure: the loader thread, then every entity it created."""
        self.close()
        made = self._made
        for sub in made.get('subscriptions', ()):
            self.destroy_subscription(sub)
        for srv in made.get('services', ()):
            self.destroy_service(srv)
        for tmr in made.get('timers', ()):
            self.destroy_timer(tmr)
        for pub in made.get('publishers', ()):
            if pub is getattr(self, 'action_pub', None):
                self.destroy_lifecycle_publisher(pub)
            else:
                self.destroy_publisher(pub)
        self._made, self.runner, self._loader = {}, None, None

    def _hold_cpu_latency(self, microseconds: int):
        if microseconds < 0:
            return None
        from robot_training.utils.priority import CPU_DMA_LATENCY, hold_cpu_latency

        fd = hold_cpu_latency(microseconds)
        if fd is None:
            self.get_logger().warning(f'cpu_latency_us {microseconds}: cannot write {CPU_DMA_LATENCY} (needs root or a '
                                      'udev rule); the CPUs keep their idle states')
        else:
            self.get_logger().info(f'holding a CPU wake-up latency of {microseconds} us ({CPU_DMA_LATENCY})')
        return fd

    def configure(self) -> None:
        from robot_training.interface.description import load_interface
        from robot_training.deploy import ActorStats, ActTrigger, PolicyRunner

        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        if not p['interface_file']:
            raise ValueError('set the interface_file parameter (the interface the policy was trained with)')
        if p['torch_threads'] > 0:
            import torch
            torch.set_num_threads(int(p['torch_threads']))
        self.interface = load_interface(p['interface_file'])
        safe = list(p['safe_action'] or []) if p['use_safe_action'] else None
        self.runner = PolicyRunner(self.interface, deterministic=bool(p['deterministic']), safe_action=safe,
                                   random_until_loaded=bool(p['random_until_loaded']), seed=int(p['seed']))
        topics = [s.topic for s in self.interface.observations]
        trigger = p['trigger_topic'] or topics[-1]
        if trigger not in topics:
            raise ValueError(f'trigger_topic {trigger!r} is not an observation topic of the interface {topics}')
        sim_time = bool(self.get_parameter('use_sim_time').value)
        self.trigger = ActTrigger(p['act_on'], trigger, int(round(1e9 * self.interface.control_period_s)),
                                  wait_for_observation=sim_time)
        self.stats = ActorStats()
        self.reloads, self.refused, self.last_refusal = 0, 0, ''
        if p['checkpoint']:
            policy = self.runner.load(p['checkpoint'])
            self.get_logger().info(f'loaded {policy.describe()}')
        self.warn_period_s = float(p['warn_period_s'])
        self._action_cls = message_class(self.interface.action.msgtype)
        self.action_pub = self.create_lifecycle_publisher(self._action_cls, self.interface.action.topic, 10)
        subscribe_observations(self, self.interface, self._on_observation)
        if self.interface.episodes.source == 'event':
            from robot_training_msgs.msg import EpisodeEvent
            self._event_cls = EpisodeEvent
            self.create_subscription(EpisodeEvent, self.interface.episodes.topic, self._on_episode_event, 10)
        from robot_training_msgs.srv import LoadPolicy
        self.create_service(LoadPolicy, '~/load_policy', self._load_policy)
        self._pending = None
        self._pending_cv = threading.Condition()
        self._closing = False
        if p['checkpoint_topic']:
            from robot_training_msgs.msg import Checkpoint

            from robot_training.deploy.policy import import_loaders
            import_loaders()  # now, not in the loader thread: imports hold the GIL for seconds
            self.create_subscription(Checkpoint, p['checkpoint_topic'], self._on_checkpoint, 10)
            self._loader = threading.Thread(target=self._load_announced, name='policy-loader', daemon=True)
            self._loader.start()
        self.status_pub = None
        if p['status_period_s'] > 0:
            from diagnostic_msgs.msg import DiagnosticArray
            self._diag = DiagnosticArray
            self.status_pub = self.create_publisher(DiagnosticArray, '~/status', 10)
            self.create_timer(float(p['status_period_s']), self._publish_status)
        self._p = p

    def activate(self) -> None:
        if self.trigger.mode == 'timer':
            self.timer = self.create_timer(self.interface.control_period_s, self._on_timer)
        else:  # a trigger stream that went quiet still gets its stale verdict (safe action or nothing)
            self._last_trigger_ns = None
            self.timer = self.create_timer(self.interface.control_period_s, self._watchdog)
        when = (f'on every {self.trigger.trigger_topic} message' if self.trigger.mode == 'observation'
                else f'at {self.interface.control_rate_hz:g} Hz on the node clock')
        self.get_logger().info(
            f"acting {when} on {self.interface.action.topic} from {self.runner.topics} (max staleness "
            f"{self.interface.max_staleness_s:g} s, on stale: "
            f"{'safe action ' + str(self.runner.safe_action.tolist()) if self.runner.safe_action is not None else 'publish nothing'}"
            f"{', random actions until a policy is loaded' if self.runner.random_until_loaded else ''}"
            f"{', hot reload from ' + self._p['checkpoint_topic'] if self._p['checkpoint_topic'] else ''})")

    # ---------------------------------------------------------------- callbacks
    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _on_observation(self, topic: str, msg) -> None:
        start = time.perf_counter()
        now = self._now_ns()
        self.runner.on_message(topic, msg, now)
        if self.trigger.on_message(topic, stamp_ns(msg)) and self._active:
            self._last_trigger_ns = now
            self._act(now, start)

    def _watchdog(self) -> None:
        now = self._now_ns()
        last = self._last_trigger_ns
        if last is not None and now - last > self.runner.max_staleness_ns:
            self._act(now, time.perf_counter())

    def _on_timer(self) -> None:
        start = time.perf_counter()
        now = self._now_ns()
        latest = self.runner.latest_stamp_ns(self.trigger.trigger_topic)
        if self.trigger.on_timer(now, latest):
            self._act(now, start)

    def _on_episode_event(self, msg) -> None:
        if msg.event in (self._event_cls.EVENT_START, self._event_cls.EVENT_RESET):
            self.runner.reset()
        if msg.event in (self._event_cls.EVENT_END, self._event_cls.EVENT_RESET):
            self.stats.break_gap()  # the reset between episodes is the robot's pause, not a missed tick

    def _act(self, now: int, start: float) -> None:
        begin = time.perf_counter()
        tick = self.runner.tick(now)
        compute = time.perf_counter() - begin
        if tick.action is not None:
            self.action_pub.publish(self.interface.action_to_message(tick.action, self._action_cls, stamp=now))
        self.stats.on_tick(time.perf_counter() - start, tick.action is not None, compute_s=compute)
        if not tick.acted:  # one call site per severity: rclpy refuses a severity change at one
            if tick.status == 'error':
                self.get_logger().error(f'not acting (error): {tick.detail}', throttle_duration_sec=self.warn_period_s)
            else:
                self.get_logger().warning(f'not acting ({tick.status}): {tick.detail}',
                                          throttle_duration_sec=self.warn_period_s)

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

    # ---------------------------------------------------------------- hot reload
    def _on_checkpoint(self, msg) -> None:
        with self._pending_cv:
            self._pending = msg  # only the newest announcement matters
            self._pending_cv.notify()

    def _load_announced(self) -> None:
        from robot_training.deploy import DeployError
        from robot_training.utils.priority import set_thread_normal

        while True:
            with self._pending_cv:
                while self._pending is None and not self._closing:
                    self._pending_cv.wait(timeout=1.0)
                if self._closing:
                    return
                msg, self._pending = self._pending, None
            set_thread_normal()  # loading is not the control loop's work (realtime_priority): never ahead of a tick
            start = time.perf_counter()
            try:
                policy = self.runner.load_verified(msg.path, msg.sha256, msg.interface_fingerprint)
            except DeployError as err:
                self.refused += 1
                self.last_refusal = str(err)
                self.get_logger().error(f'refused checkpoint {msg.path} (step {msg.step}), previous policy kept: {err}')
                continue
            self.reloads += 1
            self.get_logger().info(f'hot-reloaded {policy.describe()} step {msg.step} '
                                   f'({1000 * (time.perf_counter() - start):.0f} ms, reload {self.reloads})')

    # ---------------------------------------------------------------- status
    def status(self) -> dict:
        policy = self.runner.policy
        out = {'policy': policy.describe() if policy is not None else 'none', 'reloads': self.reloads,
               'refused': self.refused, 'last_refusal': self.last_refusal, 'timer_ticks_missed': self.trigger.missed}
        out.update({f'ticks_{k}': v for k, v in self.runner.counts.items()})
        out.update({k: round(v, 3) if isinstance(v, float) else v for k, v in self.stats.summary().items()})
        return out

    def _publish_status(self) -> None:
        from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

        st = self.status()
        msg = self._diag()
        msg.header.stamp = self.get_clock().now().to_msg()
        level = DiagnosticStatus.WARN if st['refused'] or st['ticks_error'] else DiagnosticStatus.OK
        entry = DiagnosticStatus(name='policy_server', hardware_id=self.get_name(), level=level,
                                 message=st['last_refusal'] or st['policy'])
        entry.values = [KeyValue(key=k, value=str(v)) for k, v in st.items()]
        msg.status.append(entry)
        self.status_pub.publish(msg)

    def close(self) -> None:
        """Stop the loader thread (a thread still inside torch when Python exits aborts it)."""
        loader = getattr(self, '_loader', None)
        if loader is None:
            return
        with self._pending_cv:
            self._closing = True
            self._pending_cv.notify()
        loader.join(timeout=30)


def main(args=None) -> None:
    from robot_training.deploy import DeployError

    def report(node, _cause):
        if hasattr(node, 'close'):
            node.close()
        if getattr(node, 'runner', None) is not None:
            st = node.status()
            print(f"[policy_server] stopped: ticks {node.runner.counts}, reloads {st['reloads']}, refused "
                  f"{st['refused']}, tick cost p50 {st['cost_p50_ms']:.3f} ms p99 {st['cost_p99_ms']:.3f} ms "
                  f"(observation + policy p50 {st['compute_p50_ms']:.3f} ms p99 {st['compute_p99_ms']:.3f} ms), "
                  f"longest gap {st['gap_max_ms']:.1f} ms"
                  + (f", timer ticks missed {st['timer_ticks_missed']}" if node.trigger.mode == 'timer' else ''),
                  flush=True)

    run_node('policy_server', PolicyServerNode, (DeployError, ValueError, OSError),  # checkpoint, interface, parameters
             cleanup=report, args=args)


if __name__ == '__main__':
    main()
