"""Crash-safe rosbag2 recorder node: one bag per episode, written as raw CDR.

    recorder --ros-args --params-file config/recorder.yaml -p dataset_dir:=/data/run1

Records the topics of an interface description (``interface_file``), an explicit
``topics`` list and/or every topic (``all_topics``), each with a raw subscription whose
reliability and durability match its publishers. Episodes split on EpisodeEvent END/RESET
(``episode_event_topic``), ``max_episode_duration_s`` and ``max_episode_size_mb``.

Services (std_srvs/Trigger): ``~/start``, ``~/stop``, ``~/split``.
Status: ``~/status`` (diagnostic_msgs/DiagnosticArray, one status per topic with received,
written, dropped, gaps and missing counts) every ``status_period_s``; the same counts are
logged every ``log_period_s``. SIGINT and SIGTERM finish the open bag before exiting.
The bag logic is in :mod:`robot_training.recording` (plain Python).
"""

from __future__ import annotations

import sys

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from std_srvs.srv import Trigger

from robot_training.recording import (
    DatasetRecorder,
    RecorderConfig,
    RecordingError,
    RepairError,
    incomplete_episodes,
    repair_bag,
)
from robot_training.recording.episode_meta import EPISODE_EVENT_TYPE
from robot_training.ros._common import (REALTIME_PRIORITY, TopicRecorder, apply_realtime_priority, declare_parameters,
                                        run_node)

PARAMETERS = {
    # name: (default, description)
    'dataset_dir': ('dataset', 'folder that receives one episode_NNNNNN bag per episode'),
    'storage': ('mcap', "rosbag2 storage: 'mcap' or 'sqlite3'"),
    'compression': ('zstd', "MCAP chunk compression: 'zstd' or 'none'"),
    'interface_file': ('', 'interface description YAML: record the topics it describes'),
    'topics': ([''], 'explicit list of topics to record (any type)'),
    'all_topics': (False, 'record every topic on the graph (except /rosout, /parameter_events)'),
    'exclude_topics': ([''], 'topics never recorded'),
    'max_episode_duration_s': (0.0, 'split bags after this many seconds (0: no limit)'),
    'max_episode_size_mb': (0.0, 'split bags after this many MB (0: no limit)'),
    'episode_event_topic': ('/episode_event', 'EpisodeEvent topic that splits episodes; empty: none'),
    'discovery_period_s': (1.0, 'how often to look for new topics and publishers', (0.01, None)),
    'flush_period_s': (0.5, 'chunk flush period: at most this much is lost on SIGKILL'),
    'status_period_s': (1.0, 'period of the ~/status message'),
    'log_period_s': (10.0, 'period of the per-topic counts in the log (0: never)'),
    'autostart': (True, 'start recording at once (else wait for ~/start)'),
    'repair_on_start': (True, 'repair bags left incomplete by a killed recorder'),
    'realtime_priority': REALTIME_PRIORITY,
}


class RecorderNode(Node):
    """Parameters, subscriptions, services and timers around a DatasetRecorder."""

    def __init__(self, **kwargs) -> None:
        super().__init__('recorder', **kwargs)
        p = declare_parameters(self, PARAMETERS)
        topics = [t for t in (p['topics'] or []) if t]
        wanted = {t: '' for t in topics}
        fingerprint, rates, interface_yaml = '', {}, ''
        if p['interface_file']:
            from robot_training.interface.description import load_interface
            interface = load_interface(p['interface_file'])
            fingerprint = interface.fingerprint
            interface_yaml = interface.to_yaml()
            for topic, msgtype in interface.streams():
                wanted[topic] = msgtype
        event_topic = p['episode_event_topic']
        if event_topic:
            wanted.setdefault(event_topic, EPISODE_EVENT_TYPE)
        if not wanted and not p['all_topics']:
            raise RecordingError('nothing to record: set interface_file, topics or all_topics')
        config = RecorderConfig(
            dataset_dir=p['dataset_dir'], storage=p['storage'], compression=p['compression'],
            flush_period_s=p['flush_period_s'], max_episode_duration_s=p['max_episode_duration_s'],
            max_episode_size_mb=p['max_episode_size_mb'], episode_event_topic=event_topic,
            interface_fingerprint=fingerprint, interface_yaml=interface_yaml,
            expected_rates_hz=rates)
        self.recorder = DatasetRecorder(config, on_episode_closed=self._on_episode_closed)
        if p['repair_on_start']:
            self._repair_leftovers()
        self._error_logged = False
        self.status_pub = self.create_publisher(DiagnosticArray, '~/status', 10)
        exclude = [t for t in (p['exclude_topics'] or []) if t] + [self.status_pub.topic_name]
        self.topics = TopicRecorder(self, self.recorder, wanted=wanted, all_topics=p['all_topics'],
                                    exclude=exclude, on_error=self._on_error)
        self.create_service(Trigger, '~/start', self._start)
        self.create_service(Trigger, '~/stop', self._stop)
        self.create_service(Trigger, '~/split', self._split)
        # Discovery, flushing and status run on the wall clock whatever use_sim_time says: a
        # recorder on sim time must find the simulator's topics before its clock starts, and
        # what a SIGKILL can lose is a wall-clock flush period, paused simulation or not.
        wall = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(p['discovery_period_s'], self.topics.discover, clock=wall)
        self.create_timer(min(p['flush_period_s'], 1.0) or 0.5, self._flush, clock=wall)
        self.create_timer(p['status_period_s'], self._publish_status, clock=wall)
        if p['log_period_s'] > 0:
            self.create_timer(p['log_period_s'], self._log_counts, clock=wall)
        if p['autostart']:
            self.recorder.start()
        self.topics.discover()
        self.get_logger().info(
            f"recording into {self.recorder.dataset} ({config.storage}), "
            f"{'all topics' if p['all_topics'] else sorted(wanted)}"
            f"{'' if p['autostart'] else '; waiting for ~/start'}")
        apply_realtime_priority(self, p['realtime_priority'])  # last: repairs and start-up at normal priority

    def _repair_leftovers(self) -> None:
        for bag in incomplete_episodes(self.recorder.dataset):
            try:
                self.get_logger().warning(f'repaired: {repair_bag(bag).summary()}')
            except RepairError as err:
                self.get_logger().error(f'left as is (partial, unrecoverable): {err}')

    # ---------------------------------------------------------------- callbacks
    def _on_episode_closed(self, record: dict) -> None:
        counts = ', '.join(f"{t} {c['written']}" for t, c in record['topics'].items())
        say = (self.get_logger().info if self.context.ok()
               else (lambda text: print(f'[recorder] {text}', file=sys.stderr, flush=True)))
        say(
            f"episode {record['bag']} finished ({record['end_cause']}): "
            f"{record['message_count']} messages, {record['duration_s']:.1f} s [{counts}]")

    def _on_error(self, text: str) -> None:
        if not self._error_logged:
            self._error_logged = True
            self.get_logger().error(f'recording stopped: {text}')

    def _flush(self) -> None:
        try:
            self.recorder.flush()
        except RecordingError as err:
            self._on_error(str(err))

    def _reply(self, response, fn, ok_text):
        try:
            result = fn()
            response.success = True
            response.message = ok_text(result)
        except RecordingError as err:
            response.success = False
            response.message = str(err)
        return response

    def _start(self, _request, response):
        self._error_logged = False
        return self._reply(response, self.recorder.start, lambda _: 'recording')

    def _stop(self, _request, response):
        return self._reply(response, self.recorder.stop,
                           lambda r: f"stopped; finished {r['bag']}" if r else 'stopped')

    def _split(self, _request, response):
        return self._reply(response, self.recorder.split,
                           lambda r: f"finished {r['bag']}" if r else 'no open episode')

    def _publish_status(self) -> None:
        status = self.recorder.status()
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        overall = DiagnosticStatus(name='recorder', hardware_id=str(self.recorder.dataset))
        overall.level = DiagnosticStatus.ERROR if status['error'] else DiagnosticStatus.OK
        overall.message = status['error'] or ('recording' if status['recording'] else 'stopped')
        overall.values = [KeyValue(key='episode', value=str(status['episode'])),
                          KeyValue(key='episodes_closed', value=str(status['episodes_closed']))]
        msg.status.append(overall)
        for topic, c in status['topics'].items():
            s = DiagnosticStatus(name=f'recorder: {topic}', hardware_id=c['type'])
            s.level = DiagnosticStatus.WARN if (c['gaps'] or c['dropped']) else DiagnosticStatus.OK
            s.message = f"received {c['received']} written {c['written']} gaps {c['gaps']}"
            s.values = [KeyValue(key=k, value=str(c[k])) for k in
                        ('received', 'written', 'dropped', 'gaps', 'missing_estimate', 'bytes',
                         'rate_hz')]
            msg.status.append(s)
        self.status_pub.publish(msg)

    def _log_counts(self) -> None:
        for topic, c in self.recorder.status()['topics'].items():
            self.get_logger().info(
                f"{topic}: received {c['received']} written {c['written']} dropped "
                f"{c['dropped']} gaps {c['gaps']} (~{c['missing_estimate']} missing)")

    def shutdown(self, cause: str) -> None:
        """Finish the open bag (metadata written); safe to call twice."""
        # after a signal the context is gone and /rosout with it: plain stderr then
        say = (self.get_logger().info if self.context.ok()
               else (lambda text: print(f'[recorder] {text}', file=sys.stderr, flush=True)))
        try:
            record = self.recorder.close(cause)
        except RecordingError as err:
            say(f'ERROR could not finish the open bag: {err}')
            return
        if record is not None:
            say(f"closed {record['bag']} on {cause}")


def main(args=None) -> None:
    run_node('recorder', RecorderNode, (RecordingError, ValueError, OSError),  # settings, interface file, disk
             cleanup=lambda node, cause: node.shutdown(cause), args=args)


if __name__ == '__main__':
    main()
