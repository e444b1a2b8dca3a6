"""Parity player: plays a recorded episode to a real policy server and compares its actions
with the trainer's offline ``predict`` on the episode's dataset tensors.

    python -m robot_training.bags parity BAG --checkpoint policy.pt [--interface FILE] [--episodes 5]

It starts ``policy_server`` as its own process (simulation time, ``act_on: observation``),
then, tick by tick in lock-step on the bag's clock: ``/clock`` at the tick's time, the raw
CDR bytes of the messages the dataset built that tick's observation from (interface order,
the trigger stream last), and waits for the server's action. Each episode starts with an
EpisodeEvent START (interfaces whose episodes come from events) or a reload of the
checkpoint through ``~/load_policy`` (episodes per bag), so recurrent policies start fresh as
in training. The plan and the comparison are :mod:`robot_training.deploy.parity`; exit
status 0 when every action came back within ``--tolerance`` (default 1e-5), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

PROGRAM = 'parity'


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='bags parity', description=__doc__.split('\n\n')[0])
    p.add_argument('bag', help='one recorded bag (a folder with metadata.yaml, or an .mcap / .db3 file)')
    p.add_argument('--checkpoint', required=True, help='ppo, sac, bc or dreamer checkpoint to deploy')
    p.add_argument('--interface', default=None, help='interface description (default: the one stored with the bag)')
    p.add_argument('--episodes', type=int, default=5, help='episodes of the bag to play (0: all)')
    p.add_argument('--tolerance', type=float, default=1e-5, help='largest accepted |online - offline| per action value')
    p.add_argument('--timeout', type=float, default=5.0, help='seconds to wait for each action')
    p.add_argument('--json', default=None, help='also write the report to this JSON file')
    return p


class _Server:
    """The policy server process, its output collected."""

    def __init__(self, checkpoint: Path, interface_file: Path, env: dict):
        cmd = [sys.executable, '-m', 'robot_training.ros.policy_server_node', '--ros-args',
               '-p', 'use_sim_time:=true', '-p', f'checkpoint:={checkpoint}', '-p', f'interface_file:={interface_file}',
               '-p', 'act_on:=observation', '-p', 'status_period_s:=0.0', '-p', 'warn_period_s:=1.0']
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: List[str] = []
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip('\n'))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(2)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._pump.join(timeout=5)

    def tail(self, n: int = 15) -> str:
        return '\n'.join(self.lines[-n:])


def _clock(t_ns: int):
    from rosgraph_msgs.msg import Clock

    msg = Clock()
    msg.clock.sec, msg.clock.nanosec = divmod(int(t_ns), 1_000_000_000)
    return msg


def play(plans, interface, checkpoint: Path, interface_file: Path, timeout: float = 5.0,
         log=print) -> Dict[str, np.ndarray]:
    """Play every planned episode to a fresh policy server; the actions it answered, per episode
    (``(T, A)``, NaN rows where none came within ``timeout``)."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock

    from robot_training.ros._common import message_class

    rclpy.init()
    server = _Server(checkpoint, interface_file, dict(os.environ))
    node = rclpy.create_node('parity_player')
    try:
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        clock_pub = node.create_publisher(Clock, '/clock', 10)
        pubs = {s.topic: node.create_publisher(message_class(s.msgtype), s.topic, qos) for s in interface.observations}
        received: List = []
        action_cls = message_class(interface.action.msgtype)
        node.create_subscription(action_cls, interface.action.topic, received.append, 100)
        events = None
        if interface.episodes.source == 'event':
            from robot_training_msgs.msg import EpisodeEvent
            events = node.create_publisher(EpisodeEvent, interface.episodes.topic, 10)
        load_client = None
        if events is None:
            from robot_training_msgs.srv import LoadPolicy
            load_client = node.create_client(LoadPolicy, '/policy_server/load_policy')

        def spin_until(predicate, seconds: float) -> bool:
            deadline = time.monotonic() + seconds
            while not predicate():
                if time.monotonic() > deadline or server.proc.poll() is not None:
                    return predicate()
                rclpy.spin_once(node, timeout_sec=0.01)
            return True

        def connected() -> bool:
            return (all(p.get_subscription_count() > 0 for p in pubs.values()) and clock_pub.get_subscription_count() > 0
                    and node.count_publishers(interface.action.topic) > 0
                    and any(line.find('acting on every') >= 0 for line in server.lines)
                    and (events is None or events.get_subscription_count() > 0)
                    and (load_client is None or load_client.service_is_ready()))

        if not spin_until(connected, 90.0):
            raise RuntimeError(f'the policy server did not come up (exit {server.proc.poll()}):\n{server.tail()}')
        # matched here is not yet matched there: a best-effort reader drops what arrives before it
        # has matched this writer, so give discovery a moment before the first tick
        spin_until(lambda: False, 1.0)
        trigger = interface.observations[-1].topic
        out: Dict[str, np.ndarray] = {}
        for plan in plans:
            first = plan.ticks[0].time_ns
            clock_pub.publish(_clock(max(0, first - int(round(1e9 * interface.control_period_s)))))
            if events is not None:
                from robot_training_msgs.msg import EpisodeEvent
                ev = EpisodeEvent(event=EpisodeEvent.EVENT_START, reason='parity')
                ev.header.stamp.sec, ev.header.stamp.nanosec = divmod(first, 1_000_000_000)
                events.publish(ev)
            else:
                from robot_training_msgs.srv import LoadPolicy
                future = load_client.call_async(LoadPolicy.Request(checkpoint_path=str(checkpoint)))
                if not spin_until(future.done, 60.0) or not future.result().success:
                    raise RuntimeError(f'~/load_policy did not reset the policy: {future.result()}')
            spin_until(lambda: False, 0.05)  # the reset reaches the server before the first tick
            actions = np.full((len(plan), interface.action_dim), np.nan)
            for k, tick in enumerate(plan.ticks):
                before = len(received)
                clock_pub.publish(_clock(tick.time_ns))
                for topic, _msgtype, raw in tick.messages:
                    if topic == trigger and len(tick.messages) > 1:
                        spin_until(lambda: False, 0.002)  # the other streams first, as the sim orders them
                    pubs[topic].publish(raw)
                if spin_until(lambda: len(received) > before, timeout):
                    actions[k] = interface.action.converter.to_array(received[before])
                    del received[:]
                else:
                    log(f'[{PROGRAM}] {plan.episode_id}: no action for tick {k} within {timeout:g} s; '
                        f'the server said: {server.tail(3)}')
            out[plan.episode_id] = actions
            log(f'[{PROGRAM}] {plan.episode_id}: {len(plan)} ticks played, '
                f'{int((~np.isnan(actions).any(axis=1)).sum())} actions back')
        return out
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        server.stop()


def run(args) -> int:
    from robot_training.data.bag_dataset import BagError
    from robot_training.interface.description import InterfaceError, load_interface
    from robot_training.deploy.parity import ParityError, make_report, plan_playback

    checkpoint = Path(args.checkpoint).resolve()
    if not checkpoint.is_file():
        print(f'{PROGRAM}: {checkpoint}: checkpoint not found', file=sys.stderr)
        return 2
    try:
        from robot_training.data.bag_dataset import find_bags, find_interface

        interface = load_interface(args.interface) if args.interface else find_interface(args.bag, find_bags(args.bag))
        plans = plan_playback(args.bag, interface, episodes=args.episodes or None)
        with tempfile.TemporaryDirectory(prefix='parity_') as tmp:
            interface_file = Path(args.interface).resolve() if args.interface else Path(tmp) / 'interface.yaml'
            if not args.interface:  # the one stored with the bag, for the server to read
                interface_file.write_text(interface.to_yaml())
            online = play(plans, interface, checkpoint, interface_file, timeout=args.timeout)
        report = make_report(checkpoint, plans, online, interface)
    except (BagError, InterfaceError, ParityError) as err:
        print(f'{PROGRAM}: {err}', file=sys.stderr)
        return 2
    print(report.table())
    verdict = report.passed(args.tolerance)
    print(f'{PROGRAM}: {report.kind} {"PASS" if verdict else "FAIL"}: max |online - offline| = {report.max_abs:.3g} '
          f'over {report.ticks} ticks of {len(report.episodes)} episodes, {report.missing} actions missing '
          f'(tolerance {args.tolerance:g})')
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=2))
    return 0 if verdict else 1


def main(argv: Optional[List[str]] = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
