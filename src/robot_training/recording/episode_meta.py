"""Episode events and the files kept with each recorded episode: the one place for their names.

* ``EpisodeEvent`` (``robot_training_msgs/msg/EpisodeEvent``): its ``event`` codes
  (:data:`EVENT_START`, :data:`EVENT_END`, :data:`EVENT_RESET`, as in the ``.msg``), their
  names, and the END reasons that make the last step terminal unless the interface says
  otherwise (:data:`TERMINAL_REASONS`).
* Per episode folder the recorder writes ``episode.yaml`` (:data:`SIDECAR`, format
  :data:`SIDECAR_FORMAT`, ``status`` one of :data:`STATUS_RECORDING`, :data:`STATUS_COMPLETE`,
  :data:`STATUS_FAILED`, :data:`STATUS_REPAIRED`), read by :func:`read_sidecar` and replaced atomically by
  :func:`write_sidecar`; per dataset ``interface.yaml`` (:data:`INTERFACE_FILE`). The bag's
  ``custom_data`` keys are :data:`EPISODE_CUSTOM_KEY` and :data:`INTERFACE_CUSTOM_KEY`.

Plain Python (yaml only), so that the recorder, the dataset builder, ``bags``, repair and the
simulator agree without importing one another.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from robot_training.utils.files import atomic_write

EPISODE_EVENT_TYPE = 'robot_training_msgs/msg/EpisodeEvent'
EVENT_START, EVENT_END, EVENT_RESET = 0, 1, 2
EVENT_NAMES = {EVENT_START: 'START', EVENT_END: 'END', EVENT_RESET: 'RESET'}
TERMINAL_REASONS = ('terminated', 'success', 'failure')

SIDECAR = 'episode.yaml'
SIDECAR_FORMAT = 'robot_training.episode/1'
STATUS_RECORDING, STATUS_COMPLETE, STATUS_FAILED, STATUS_REPAIRED = 'recording', 'complete', 'failed', 'repaired'
INTERFACE_FILE = 'interface.yaml'
"""The dataset's interface description, as ``robot_training.data.bag_dataset`` looks for it."""
EPISODE_CUSTOM_KEY = 'robot_training.episode'
INTERFACE_CUSTOM_KEY = 'robot_training.interface'

YAML_DUMPER = getattr(yaml, 'CSafeDumper', yaml.SafeDumper)  # libyaml: an episode's records cost far less CPU


def read_sidecar(bag) -> dict:
    """The recorder's ``episode.yaml`` of a bag folder (or of the folder of a bag file); {} if none
    or unreadable."""
    bag = Path(bag)
    path = (bag.parent if bag.is_file() else bag) / SIDECAR
    try:
        data = yaml.safe_load(path.read_text(encoding='utf-8')) if path.is_file() else {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def write_sidecar(bag_dir, data: dict, fsync: bool = False) -> None:
    """Replace ``episode.yaml`` atomically."""
    with atomic_write(Path(bag_dir) / SIDECAR, 'w', fsync=fsync) as f:
        yaml.dump(data, f, Dumper=YAML_DUMPER, sort_keys=False)
