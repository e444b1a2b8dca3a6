"""ROSDataCollector: record ROS topics for a while, get the data back in Python.

::

    collector = ROSDataCollector(interface='config/interface_inverted_pendulum.yaml')
    collector.start_recording()
    ...                                   # the robot or simulator runs
    trajectories = collector.stop_recording()
    collector.close()

Built on the recorder core: every ``start_recording()`` writes a new session folder
``<dataset_dir>/session_NNN/`` of per-episode bags (exactly what the recorder node writes:
raw CDR from ``raw=True`` subscriptions with publisher-matched QoS, split on EpisodeEvent),
so a recording is also a dataset on disk.

What ``stop_recording()`` returns
    * with ``interface``: ``list[Trajectory]``, the session's bags read through
      :func:`robot_training.data.bag_dataset.load_bag_dataset` and that description;
    * without: ``dict[topic, list[message]]``: every recorded message of the session in
      receive order, deserialized by rosbags (field access as with rclpy messages,
      ``msg.header.stamp.sec``, ``msg.data``); receive times (ns) are in
      :attr:`last_receive_times` under the same keys.

With no ``node`` the collector creates its own node and spins it in a background thread
(calling ``rclpy.init()`` if needed). With a ``node`` of yours, you spin it.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Optional, Sequence, Union

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rosbags.rosbag2 import Reader

from robot_training.recording import DatasetRecorder, RecorderConfig, list_episode_dirs
from robot_training.recording.episode_meta import EPISODE_EVENT_TYPE
from robot_training.ros._common import TopicRecorder


class ROSDataCollector:
    """Records topics into per-episode bags between start_recording() and stop_recording()."""

    def __init__(self, topics: Optional[Sequence[str]] = None, interface=None, *,
                 dataset_dir: Optional[Union[str, Path]] = None, node: Optional[Node] = None,
                 storage: str = 'mcap', all_topics: bool = False,
                 episode_event_topic: str = '/episode_event', discovery_period_s: float = 0.5,
                 max_episode_duration_s: float = 0.0) -> None:
        self.interface = None
        wanted = {t: '' for t in (topics or [])}
        if interface is not None:
            from robot_training.interface.description import load_interface
            self.interface = load_interface(interface)
            wanted.update({t: m for t, m in self.interface.streams()})
        if episode_event_topic:
            wanted.setdefault(episode_event_topic, EPISODE_EVENT_TYPE)
        self.dataset_dir = Path(dataset_dir) if dataset_dir else Path(
            tempfile.mkdtemp(prefix='robot_training_collect_'))
        self._config = dict(storage=storage, episode_event_topic=episode_event_topic,
                            max_episode_duration_s=max_episode_duration_s,
                            interface_fingerprint=self.interface.fingerprint if self.interface else '')
        self._session = 0
        self.session_dir: Optional[Path] = None
        self.last_receive_times: dict = {}
        self._owns_node = node is None
        self._executor = None
        self._thread = None
        if node is None:
            if not rclpy.ok():
                rclpy.init()
            node = rclpy.create_node('data_collector')
        self.node = node
        self.recorder = self._new_recorder()  # idle until start_recording()
        self.topics = TopicRecorder(node, self.recorder, wanted=wanted, all_topics=all_topics)
        self._timer = node.create_timer(discovery_period_s, self.topics.discover)
        if self._owns_node:
            self._executor = SingleThreadedExecutor()
            self._executor.add_node(node)
            self._thread = threading.Thread(target=self._spin, daemon=True)
            self._thread.start()

    def _spin(self) -> None:
        try:
            self._executor.spin()
        except Exception:  # noqa: BLE001 - context shut down from outside
            pass

    def _new_recorder(self) -> DatasetRecorder:
        self._session += 1
        self.session_dir = self.dataset_dir / f'session_{self._session:03d}'
        return DatasetRecorder(RecorderConfig(dataset_dir=str(self.session_dir), **self._config))

    @property
    def recording(self) -> bool:
        return self.recorder.recording

    def start_recording(self) -> Path:
        """Begin a new session; returns its folder."""
        if self.recorder.recording:
            return self.session_dir
        if self.recorder.closed_episodes or list_episode_dirs(self.session_dir):
            self.topics.use_recorder(self._new_recorder())
            self.recorder = self.topics.recorder
        self.recorder.start()
        return self.session_dir

    def stop_recording(self):
        """Finish the session's bags and return its data (see the module doc)."""
        self.recorder.stop()
        bags = list_episode_dirs(self.session_dir)
        if self.interface is not None:
            from robot_training.data.bag_dataset import load_bag_dataset
            return load_bag_dataset(bags, self.interface, cache=False) if bags else []
        messages: dict = {}
        times: dict = {}
        store = self.recorder.typestore
        for bag in bags:
            with Reader(bag) as reader:
                for conn, t, raw in reader.messages():
                    messages.setdefault(conn.topic, []).append(
                        store.deserialize(raw, conn.msgtype))
                    times.setdefault(conn.topic, []).append(t)
        self.last_receive_times = times
        return messages

    def status(self) -> dict:
        return self.recorder.status()

    def close(self) -> None:
        """Finish any open bag, destroy subscriptions (and the own node and its thread)."""
        self.recorder.close()
        self.node.destroy_timer(self._timer)
        self.topics.destroy()
        if self._owns_node:
            self._executor.shutdown(timeout_sec=2)
            self.node.destroy_node()
            if self._thread is not None:
                self._thread.join(timeout=5)

    def __enter__(self) -> 'ROSDataCollector':
        return self

    def __exit__(self, *exc) -> None:
        self.close()
