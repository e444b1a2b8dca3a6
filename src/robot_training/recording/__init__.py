"""Crash-safe recording of ROS 2 topics into rosbag2 bags, one bag per episode.

Plain Python (no rclpy): :class:`DatasetRecorder` takes serialized messages and writes
them with rosbags; :func:`repair_bag` rebuilds a bag whose writer was killed. The ROS
node is ``robot_training.ros.recorder_node``.
"""

from robot_training.recording.bag_writer import BagWriter, RecordingError
from robot_training.recording.recorder import (
    DatasetRecorder,
    RecorderConfig,
    incomplete_episodes,
    list_episode_dirs,
    read_sidecar,
)
from robot_training.recording.repair import RepairError, RepairReport, repair_bag
from robot_training.recording.stats import TopicStats
from robot_training.recording.typestore import RecordingTypestore, UnknownMessageType

__all__ = [
    'BagWriter', 'DatasetRecorder', 'RecorderConfig', 'RecordingError', 'RecordingTypestore',
    'RepairError', 'RepairReport', 'TopicStats', 'UnknownMessageType', 'incomplete_episodes',
    'list_episode_dirs', 'read_sidecar', 'repair_bag',
]
