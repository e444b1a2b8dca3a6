"""One rosbag2 bag, written with rosbags, flushed to disk often enough to survive a kill.

rosbags' MCAP writer keeps the open chunk in memory (up to 1 MiB) and writes the summary
and footer only in ``close()``. :class:`BagWriter` closes the pending chunk and flushes the
file every ``flush_period_s`` (and whenever ``flush()`` is called), so after a SIGKILL every
chunk older than that period is on disk as a complete MCAP chunk record that
:func:`robot_training.recording.repair.repair_bag` can recover. With sqlite3 the pending
transaction is committed on the same schedule.

The flush reaches into the rosbags storage object (``close_chunk``, ``bio``, ``conn``);
those are checked at open time, and without them the bag is still written, only with
rosbags' own chunking (then up to 1 MiB per chunk is at risk).
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from typing import Optional, Sequence

from rosbags.rosbag2 import Writer
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode, StoragePlugin
from rosbags.rosbag2.errors import WriterError

from robot_training.recording.typestore import RecordingTypestore

STORAGES = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
COMPRESSIONS = ('zstd', 'none')
BAG_FILE_SUFFIX = {'mcap': '.mcap', 'sqlite3': '.db3'}


class RecordingError(RuntimeError):
    """Recording cannot go on (disk full, directory not writable, bad settings)."""


def describe_os_error(err: OSError, path: Path, action: str) -> str:
    if err.errno == errno.ENOSPC:
        why = 'the disk is full'
    elif err.errno == errno.EDQUOT:
        why = 'the disk quota is exceeded'
    elif err.errno == errno.EFBIG:
        why = 'the file size limit was reached'
    elif err.errno in (errno.EACCES, errno.EPERM):
        why = 'permission denied'
    elif err.errno == errno.EROFS:
        why = 'the file system is read-only'
    elif err.errno == errno.ENOTDIR:
        why = 'a path component is not a directory'
    else:
        why = err.strerror or str(err)
    return f'cannot {action} {path}: {why} ({err.__class__.__name__}: {err})'


class BagWriter:
    """Writes one bag directory; topics are added on first use."""

    def __init__(self, path: Path, typestore: RecordingTypestore, *, storage: str = 'mcap',
                 compression: str = 'zstd', flush_period_s: float = 0.5) -> None:
        if storage not in STORAGES:
            raise RecordingError(f"storage must be one of {sorted(STORAGES)}, got {storage!r}")
        if compression not in COMPRESSIONS:
            raise RecordingError(f'compression must be one of {COMPRESSIONS}, got {compression!r}')
        self.path = Path(path)
        self.storage = storage
        # rosbags' sqlite3 writer has no storage-side compression.
        self.compression = compression if storage == 'mcap' else 'none'
        self.flush_period_s = float(flush_period_s)
        self.typestore = typestore
        self._writer: Optional[Writer] = None
        self._connections: dict[str, object] = {}
        self._last_flush = time.monotonic()
        self.bytes_written = 0
        self.message_count = 0
        self.first_ns: Optional[int] = None
        self.last_ns: Optional[int] = None
        self.can_flush = False

    @property
    def bag_file(self) -> Path:
        return self.path / f'{self.path.name}{BAG_FILE_SUFFIX[self.storage]}'

    def open(self) -> None:
        writer = Writer(self.path, version=9, storage_plugin=STORAGES[self.storage])
        if self.compression == 'zstd':
            writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        try:
            writer.open()
        except WriterError as err:
            raise RecordingError(f'cannot create bag {self.path}: {err}') from err
        except OSError as err:
            raise RecordingError(describe_os_error(err, self.path, 'create bag')) from err
        self._writer = writer
        st = writer.storage
        self.can_flush = (hasattr(st, 'close_chunk') and hasattr(st, 'bio')) or hasattr(st, 'conn')
        self._last_flush = time.monotonic()

    def add_topic(self, topic: str, msgtype: str, offered_qos: Sequence = ()) -> None:
        """Declare a topic (also done implicitly by the first ``write``)."""
        assert self._writer is not None, 'bag not open'
        if topic in self._connections:
            return
        msgdef, rihs01 = self.typestore.msgdef(msgtype)
        self._connections[topic] = self._writer.add_connection(
            topic, msgtype, msgdef=msgdef, rihs01=rihs01, offered_qos_profiles=list(offered_qos))

    def write(self, topic: str, msgtype: str, raw: bytes | memoryview, t_ns: int) -> None:
        assert self._writer is not None, 'bag not open'
        if topic not in self._connections:
            self.add_topic(topic, msgtype)
        try:
            self._writer.write(self._connections[topic], int(t_ns), raw)
        except OSError as err:
            raise RecordingError(describe_os_error(err, self.bag_file, 'write to')) from err
        self.bytes_written += len(raw)
        self.message_count += 1
        self.first_ns = t_ns if self.first_ns is None else min(self.first_ns, t_ns)
        self.last_ns = t_ns if self.last_ns is None else max(self.last_ns, t_ns)
        if time.monotonic() - self._last_flush >= self.flush_period_s:
            self.flush()

    def flush(self) -> None:
        """Put everything written so far on disk as complete records (chunk / commit)."""
        self._last_flush = time.monotonic()
        writer = self._writer
        if writer is None or not self.can_flush:
            return
        st = writer.storage
        try:
            if hasattr(st, 'close_chunk'):
                if st.chunk.msgs:  # only chunks that hold messages; schemas ride along
                    st.close_chunk()
                st.bio.flush()
            elif hasattr(st, 'conn'):
                st.conn.commit()
        except OSError as err:
            raise RecordingError(describe_os_error(err, self.bag_file, 'write to')) from err

    def set_custom_data(self, key: str, value: str) -> None:
        assert self._writer is not None
        self._writer.set_custom_data(key, value)

    def close(self, fsync: bool = True) -> None:
        """Write summary, footer and metadata.yaml; the bag is complete afterwards."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            writer.close()
        except OSError as err:
            try:
                writer.abort()
            except Exception:  # noqa: BLE001 - the first error is the one to report
                pass
            raise RecordingError(describe_os_error(err, self.path, 'finish bag')) from err
        if fsync:
            for p in (self.bag_file, self.path / 'metadata.yaml', self.path):
                _fsync_path(p)

    def abort(self) -> None:
        """Close the file without summary (the bag then needs repair)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.abort()
            except Exception:  # noqa: BLE001
                pass


def _fsync_path(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
