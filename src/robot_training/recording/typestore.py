"""Message definitions for the bags: rosbags' Kilted typestore plus our own interfaces.

rosbags needs the text definition and RIHS01 hash of every type it writes. Standard types
come from ``Stores.ROS2_KILTED``; ``robot_training_msgs`` (and any other interface package
a topic on the graph uses) are registered from their ``.msg`` text, found in the ament
index (``<prefix>/share/<pkg>/msg/<Type>.msg``) or, for our own package, in the source tree.
Only text files are read: nothing named by a topic or a bag is imported or run.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Iterable, Optional

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from robot_training.utils.files import ament_prefixes

OWN_PACKAGE = 'robot_training_msgs'
# pkg/msg/Type, the only form a recorded topic type may take.
MSGTYPE_RE = re.compile(r'^[A-Za-z][A-Za-z0-9_]*/msg/[A-Z][A-Za-z0-9_]*$')

_SOURCE_MSG_DIR = Path(__file__).resolve().parents[2] / OWN_PACKAGE / 'msg'


class UnknownMessageType(LookupError):
    """A type with no definition in the typestore, the ament index or the source tree."""


def valid_msgtype(name: str) -> bool:
    """True for a well-formed ``pkg/msg/Type`` name."""
    return bool(MSGTYPE_RE.match(name))




def find_msg_file(msgtype: str, extra_dirs: Iterable[Path] = ()) -> Optional[Path]:
    """The ``.msg`` file of ``pkg/msg/Type`` in the ament index (or given dirs), or None."""
    if not valid_msgtype(msgtype):
        return None
    pkg, _, name = msgtype.split('/')
    candidates = [prefix / 'share' / pkg / 'msg' / f'{name}.msg' for prefix in ament_prefixes()]
    candidates += [Path(d) / f'{name}.msg' for d in extra_dirs]
    if pkg == OWN_PACKAGE:
        candidates.append(_SOURCE_MSG_DIR / f'{name}.msg')
    for path in candidates:
        if path.is_file():
            return path
    return None


class RecordingTypestore:
    """A Kilted typestore that learns missing types from ``.msg`` files on demand."""

    def __init__(self) -> None:
        self.store: Typestore = get_typestore(Stores.ROS2_KILTED)
        self._lock = threading.Lock()
        self.ensure(f'{OWN_PACKAGE}/msg/EpisodeEvent')

    def has(self, msgtype: str) -> bool:
        return msgtype in self.store.fielddefs

    def ensure(self, msgtype: str) -> None:
        """Register ``msgtype`` (and the types it uses) unless known; raise if impossible."""
        with self._lock:
            self._ensure(msgtype, depth=0)

    def _ensure(self, msgtype: str, depth: int) -> None:
        if self.has(msgtype):
            return
        if depth > 16:
            raise UnknownMessageType(f'{msgtype}: nesting of message types too deep')
        path = find_msg_file(msgtype)
        if path is None:
            raise UnknownMessageType(
                f'no definition for message type {msgtype!r}: not in the ROS 2 Kilted '
                f'typestore and no share/<pkg>/msg/<Type>.msg in AMENT_PREFIX_PATH')
        types = get_types_from_msg(path.read_text(encoding='utf-8'), msgtype)
        # Field types defined elsewhere must be registered first.
        for fields in (t[1] for t in types.values()):
            for _, ftype in fields:
                for ref in _referenced_names(ftype):
                    if ref not in types and not self.has(ref):
                        self._ensure(ref, depth + 1)
        self.store.register(types)

    def msgdef(self, msgtype: str) -> tuple[str, str]:
        """(concatenated ros2msg definition, RIHS01 hash) of a known type."""
        self.ensure(msgtype)
        text, _ = self.store.generate_msgdef(msgtype, ros_version=2)
        return text, self.store.hash_rihs01(msgtype)

    def has_header(self, msgtype: str) -> bool:
        """True when the first field is ``std_msgs/msg/Header`` (stamp at a fixed offset)."""
        fields = self.store.fielddefs.get(msgtype, (None, []))[1]
        return bool(fields) and fields[0][0] == 'header' and fields[0][1][1] == 'std_msgs/msg/Header'

    def deserialize(self, raw: bytes | memoryview, msgtype: str) -> object:
        self.ensure(msgtype)
        return self.store.deserialize_cdr(raw, msgtype)


def header_stamp_ns(raw: bytes | memoryview) -> Optional[int]:
    """``header.stamp`` of a serialized message whose first field is a Header, in ns.

    The stamp is the first thing after the 4-byte encapsulation header (int32 sec, uint32
    nanosec), in the byte order that header names. None when the bytes are too short.
    """
    if len(raw) < 12:
        return None
    order = 'little' if raw[1] & 1 else 'big'
    sec = int.from_bytes(raw[4:8], order, signed=True)
    nsec = int.from_bytes(raw[8:12], order)
    return sec * 1_000_000_000 + nsec


def _referenced_names(ftype: object) -> list[str]:
    """Names of message types used by a rosbags field description (nested tuples)."""
    names: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, str):
            if '/msg/' in node:
                names.append(node)
        elif isinstance(node, tuple):
            for item in node:
                walk(item)

    walk(ftype)
    return names
