"""Crash-safe recording of ROS 2 topics into rosbag2 bags, one bag per episode.

Plain Python (no rclpy): :class:`DatasetRecorder` takes serialized messages and writes
them with rosbags; :func:`repair_bag` rebuilds a bag whose writer was killed. The ROS
node is ``robot_training.ros.recorder_node``.

The names below are imported on first use, so that reading bags (which needs only
:mod:`robot_training.recording.typestore`) does not load the writer and repair modules.
"""

import importlib

_WHERE = {
    'BagWriter': 'bag_writer', 'RecordingError': 'bag_writer',
    'DatasetRecorder': 'recorder', 'RecorderConfig': 'recorder', 'incomplete_episodes': 'recorder',
    'list_episode_dirs': 'recorder', 'read_sidecar': 'episode_meta', 'write_sidecar': 'episode_meta',
    'RepairError': 'repair', 'RepairReport': 'repair', 'repair_bag': 'repair',
    'TopicStats': 'stats',
    'RecordingTypestore': 'typestore', 'UnknownMessageType': 'typestore',
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = getattr(importlib.import_module(f'{__name__}.{_WHERE[name]}'), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_WHERE))
