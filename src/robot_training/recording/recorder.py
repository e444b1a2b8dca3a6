"""The recorder core: serialized messages in, one finished bag per episode out.

Plain Python, no rclpy: the recorder node (and ``ROSDataCollector``) feed it
``(topic, type, raw CDR bytes, receive time ns, header stamp ns)`` and it writes

    <dataset>/episode_000001/episode_000001.mcap   the bag (rosbags, zstd chunks)
    <dataset>/episode_000001/metadata.yaml         rosbag2 metadata, custom_data included
    <dataset>/episode_000001/episode.yaml          the episode's own record (see below)

An episode ends on an ``EpisodeEvent`` END or RESET: messages stamped at or before the
event's own stamp that arrive after it (DDS does not order topics with respect to each
other, so a simulator's last observation and reward can overtake its END) still go into that
bag; the first later message, or ``end_grace_s`` of wall time, closes it. It also ends when it reaches ``max_duration_s`` or ``max_size_mb``, on ``split()``,
``stop()`` and ``close()``. An EVENT_START labels the open bag with its episode id; only a
second START (no END or RESET in between) starts a new bag. Messages received between an END
and the next START therefore open the next bag, just before its START (topics are not
ordered with respect to each other in DDS, so the START is not always first).

``episode.yaml`` is written when the bag is opened (``status: recording``) and replaced
atomically when it is finished (``status: complete``), so a bag whose recorder was killed
is recognisable (``status: recording`` and no ``metadata.yaml``) and ``repair_bag`` turns it
into ``status: repaired`` (partial). It holds the episode index, the EpisodeEvent fields
(id, return, length, success, reason), why the bag ended, interface fingerprint, storage,
times and per-topic counts (received, written, dropped, gaps).
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import yaml

from robot_training.recording.bag_writer import (
    COMPRESSIONS,
    STORAGES,
    BagWriter,
    RecordingError,
    describe_os_error,
)
from robot_training.recording.episode_meta import (  # noqa: F401 - read_sidecar: this module's API too
    EPISODE_CUSTOM_KEY,
    EPISODE_EVENT_TYPE,
    EVENT_END,
    EVENT_RESET,
    EVENT_START,
    INTERFACE_FILE,
    SIDECAR_FORMAT,
    STATUS_COMPLETE,
    STATUS_FAILED,
    STATUS_RECORDING,
    YAML_DUMPER,
    read_sidecar,
    write_sidecar,
)
from robot_training.recording.stats import TopicStats
from robot_training.recording.typestore import RecordingTypestore
from robot_training.utils.files import atomic_write

EPISODE_DIR_RE = re.compile(r'^episode_(\d{6,})$')


@dataclass
class RecorderConfig:
    """Settings of the recorder core (the node maps its parameters onto these)."""

    dataset_dir: str = 'dataset'
    """Folder that receives one ``episode_NNNNNN`` bag per episode."""
    storage: str = 'mcap'
    """``mcap`` (default) or ``sqlite3``."""
    compression: str = 'zstd'
    """MCAP chunk compression: ``zstd`` or ``none`` (sqlite3 always ``none``)."""
    flush_period_s: float = 0.5
    """Close the open chunk and flush the file at least this often (crash-loss bound)."""
    max_episode_duration_s: float = 0.0
    """Split the bag after this long (0: no limit)."""
    max_episode_size_mb: float = 0.0
    """Split the bag once this many MB of messages were written (0: no limit)."""
    episode_event_topic: str = '/episode_event'
    """Topic of ``robot_training_msgs/msg/EpisodeEvent``; '' disables event splitting."""
    interface_fingerprint: str = ''
    """sha256 of the interface description the topics come from, kept with every bag."""
    interface_yaml: str = ''
    """The description itself, written once as ``<dataset_dir>/interface.yaml`` so that the
    dataset loads for training without naming the description again."""
    expected_rates_hz: dict = field(default_factory=dict)
    """Known publishing rates per topic for gap detection (others: median interval)."""
    fsync: bool = True
    """fsync bag, metadata and sidecar when an episode is finished."""
    end_grace_s: float = 0.5
    """After an END/RESET, keep the bag open this long (wall clock) for messages stamped at or
    before the event that arrive after it; a later message closes it sooner."""

    def validate(self) -> None:
        """Raise RecordingError naming the first bad setting."""
        if self.storage not in STORAGES:
            raise RecordingError(f'storage must be one of {sorted(STORAGES)}, got {self.storage!r}')
        if self.compression not in COMPRESSIONS:
            raise RecordingError(f'compression must be one of {COMPRESSIONS}, got {self.compression!r}')
        for name in ('flush_period_s', 'max_episode_duration_s', 'max_episode_size_mb'):
            if not float(getattr(self, name)) >= 0:
                raise RecordingError(f'{name} must be >= 0, got {getattr(self, name)!r}')


@dataclass
class EpisodeInfo:
    """What is known about the episode being written."""

    index: int
    path: Path
    started_wall: str
    episode_id: Optional[int] = None
    episode_return: Optional[float] = None
    length: Optional[int] = None
    success: Optional[bool] = None
    reason: str = ''
    end_cause: str = ''
    started_by_event: bool = False
    topics: dict = field(default_factory=dict)  # topic -> TopicStats


def episode_dir_name(index: int) -> str:
    return f'episode_{index:06d}'


def list_episode_dirs(dataset: Path) -> list[Path]:
    """Episode folders of a dataset, in index order."""
    if not dataset.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in dataset.iterdir()
             if p.is_dir() and (m := EPISODE_DIR_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def incomplete_episodes(dataset: Path) -> list[Path]:
    """Episode folders with no ``metadata.yaml`` (recorder killed, or write failed)."""
    return [p for p in list_episode_dirs(Path(dataset)) if not (p / 'metadata.yaml').is_file()]


class DatasetRecorder:
    """Writes incoming serialized messages into per-episode bags of one dataset folder.

    Thread-safe: every public method takes one lock. ``on_episode_closed`` (if given) is
    called with the finished sidecar dict after each episode.
    """

    def __init__(self, config: RecorderConfig, *, typestore: Optional[RecordingTypestore] = None,
                 on_episode_closed: Optional[Callable[[dict], None]] = None,
                 clock: Callable[[], int] = time.time_ns) -> None:
        config.validate()
        self.config = config
        self.dataset = Path(config.dataset_dir).expanduser()
        self.typestore = typestore or RecordingTypestore()
        self.on_episode_closed = on_episode_closed
        self.clock = clock
        self._lock = threading.RLock()
        self._recording = False
        self._bag: Optional[BagWriter] = None
        self._episode: Optional[EpisodeInfo] = None
        self._topic_types: dict[str, str] = {}
        self._topic_qos: dict[str, list] = {}
        self.totals: dict[str, TopicStats] = {}
        self.closed_episodes: list[dict] = []
        self.error: Optional[str] = None
        self._next_index = 1
        self._ending: Optional[tuple] = None  # (event time ns, wall deadline ns, cause) after END/RESET
        self._prepare_dataset()

    # ------------------------------------------------------------------ set-up
    def _prepare_dataset(self) -> None:
        try:
            self.dataset.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RecordingError(describe_os_error(err, self.dataset, 'create dataset folder')) from err
        if not os.access(self.dataset, os.W_OK | os.X_OK):
            raise RecordingError(f'cannot record into {self.dataset}: folder is not writable')
        existing = list_episode_dirs(self.dataset)
        if existing:
            self._next_index = int(EPISODE_DIR_RE.match(existing[-1].name).group(1)) + 1
        if self.config.interface_yaml:
            self._store_interface()

    def _store_interface(self) -> None:
        """Write ``interface.yaml`` once; refuse a dataset recorded with another description."""
        path = self.dataset / INTERFACE_FILE
        if path.is_file():
            try:
                stored = yaml.safe_load(path.read_text(encoding='utf-8')) or {}
            except (OSError, yaml.YAMLError) as err:
                raise RecordingError(f'{path}: unreadable interface description ({err})') from err
            new = yaml.safe_load(self.config.interface_yaml) or {}
            if stored != new:
                raise RecordingError(
                    f'{self.dataset} was recorded with another interface description ({path}); '
                    'record into a new dataset_dir so that episodes of one dataset share one description')
            return
        try:
            with atomic_write(path, 'w') as f:
                f.write(self.config.interface_yaml)
        except OSError as err:
            raise RecordingError(describe_os_error(err, path, 'write interface description')) from err

    def add_topic(self, topic: str, msgtype: str, offered_qos: Optional[list] = None) -> None:
        """Declare a topic to record (bags get its connection even with no message yet)."""
        with self._lock:
            self.typestore.ensure(msgtype)
            self._topic_types[topic] = msgtype
            if offered_qos is not None:
                self._topic_qos[topic] = list(offered_qos)
            self.totals.setdefault(topic, self._new_stats(topic, msgtype))
            if self._bag is not None:
                self._bag.add_topic(topic, msgtype, self._topic_qos.get(topic, ()))
                self._episode.topics.setdefault(topic, self._new_stats(topic, msgtype))

    def _new_stats(self, topic: str, msgtype: str) -> TopicStats:
        return TopicStats(topic, msgtype, self.config.expected_rates_hz.get(topic))

    # ------------------------------------------------------------------ control
    @property
    def recording(self) -> bool:
        return self._recording

    def start(self) -> None:
        """Accept messages (the bag itself is opened by the first message).

        After a write error (disk full) this is how recording resumes, into a new bag; the
        error is cleared and the failed bag stays as it is, for ``repair_bag``.
        """
        with self._lock:
            self.error = None
            self._recording = True

    def stop(self, cause: str = 'stop') -> Optional[dict]:
        """Stop accepting messages and finish the open episode (returns its record)."""
        with self._lock:
            self._recording = False
            return self._close_episode(self._ending[2] if self._ending else cause)

    def split(self, cause: str = 'split') -> Optional[dict]:
        """Finish the open episode; the next message starts a new one."""
        with self._lock:
            return self._close_episode(self._ending[2] if self._ending else cause)

    def close(self, cause: str = 'shutdown') -> Optional[dict]:
        return self.stop(cause)

    def flush(self) -> None:
        """Put everything received so far on disk (called by a timer in the node)."""
        with self._lock:
            if self._bag is not None:
                try:
                    self._bag.flush()
                except RecordingError as err:
                    self._fail(err)
                    raise
            if self._ending is not None and self.clock() >= self._ending[1]:
                self._close_episode(self._ending[2])
            self._check_duration()

    # ------------------------------------------------------------------ data
    def write(self, topic: str, msgtype: str, raw: bytes | memoryview, receive_ns: int,
              stamp_ns: Optional[int] = None) -> bool:
        """Record one serialized message; returns False when it was not written."""
        with self._lock:
            total = self.totals.get(topic)
            if total is None:
                total = self.totals[topic] = self._new_stats(topic, msgtype)
                self._topic_types.setdefault(topic, msgtype)
            if self._recording and self._ending is not None:
                has_stamp = stamp_ns is not None and self.typestore.has_header(msgtype)
                t = stamp_ns if has_stamp else receive_ns
                if t > self._ending[0] or self.clock() >= self._ending[1]:
                    self._close_episode(self._ending[2])  # before counting: this message is the next episode's
            total.on_received(receive_ns, stamp_ns)
            if not self._recording:
                total.on_dropped()
                return False
            event = None
            if topic == self.config.episode_event_topic and msgtype == EPISODE_EVENT_TYPE:
                event = self._decode_event(raw)
                if (event is not None and event['event'] == EVENT_START
                        and self._episode is not None and self._episode.started_by_event):
                    self._close_episode('start')  # a second START: the first had no END
            try:
                if self._bag is None:
                    self._open_episode()
                ep = self._episode
                stats = ep.topics.get(topic)
                if stats is None:
                    stats = ep.topics[topic] = self._new_stats(topic, msgtype)
                stats.on_received(receive_ns, stamp_ns)
                self._bag.write(topic, msgtype, raw, receive_ns)
            except RecordingError as err:
                total.on_dropped()
                self._fail(err)
                raise
            stats.on_written(len(raw))
            total.on_written(len(raw))
            if event is not None:
                self._apply_event(event, stamp_ns or receive_ns)
            elif self._ending is None:
                self._check_limits()
            return True

    def _decode_event(self, raw: bytes | memoryview) -> Optional[dict]:
        try:
            msg = self.typestore.deserialize(raw, EPISODE_EVENT_TYPE)
        except Exception:  # noqa: BLE001 - a malformed event is recorded, not obeyed
            return None
        return {'episode_id': int(msg.episode_id), 'event': int(msg.event),
                'episode_return': float(msg.episode_return), 'length': int(msg.length),
                'success': bool(msg.success), 'reason': str(msg.reason)}

    def _apply_event(self, event: dict, t_ns: int) -> None:
        ep = self._episode
        ep.episode_id = event['episode_id']
        if event['event'] == EVENT_START:
            ep.started_by_event = True
            self._mark_boundary()  # a robot may pause again between its reset and the START
        if event['event'] in (EVENT_END, EVENT_RESET):
            ep.episode_return = event['episode_return']
            ep.length = event['length']
            ep.success = event['success']
            ep.reason = event['reason']
            cause = 'end' if event['event'] == EVENT_END else 'reset'
            if self.config.end_grace_s > 0:
                self._ending = (int(t_ns), self.clock() + int(self.config.end_grace_s * 1e9), cause)
            else:
                self._close_episode(cause)

    def _check_limits(self) -> None:
        bag = self._bag
        if bag is None:
            return
        limit_mb = self.config.max_episode_size_mb
        if limit_mb and bag.bytes_written >= limit_mb * 1e6:
            self._close_episode('max_size')
            return
        self._check_duration()

    def _check_duration(self) -> None:
        bag = self._bag
        limit = self.config.max_episode_duration_s
        if bag is None or not limit or bag.first_ns is None:
            return
        if self.clock() - bag.first_ns >= limit * 1e9:
            self._close_episode('max_duration')

    # ------------------------------------------------------------------ episodes
    def _open_episode(self) -> None:
        index = self._next_index
        path = self.dataset / episode_dir_name(index)
        while path.exists():  # someone else's folder: never write into it
            index += 1
            path = self.dataset / episode_dir_name(index)
        bag = BagWriter(path, self.typestore, storage=self.config.storage,
                        compression=self.config.compression,
                        flush_period_s=self.config.flush_period_s)
        bag.open()
        self._next_index = index + 1
        self._bag = bag
        self._episode = EpisodeInfo(index=index, path=path,
                                    started_wall=_dt.datetime.now(_dt.timezone.utc).isoformat())
        for topic, msgtype in self._topic_types.items():
            bag.add_topic(topic, msgtype, self._topic_qos.get(topic, ()))
            self._episode.topics[topic] = self._new_stats(topic, msgtype)
        try:
            write_sidecar(path, self._record(STATUS_RECORDING))
            bag.flush()  # header, schemas and channels on disk
        except OSError as err:
            raise RecordingError(describe_os_error(err, path, 'write episode record in')) from err

    def _record(self, status: str) -> dict:
        ep, bag = self._episode, self._bag
        first = bag.first_ns if bag else None
        last = bag.last_ns if bag else None
        return {
            'format': SIDECAR_FORMAT,
            'status': status,
            'index': ep.index,
            'bag': ep.path.name,
            'storage': self.config.storage,
            'episode_id': ep.episode_id,
            'episode_return': ep.episode_return,
            'length': ep.length,
            'success': ep.success,
            'reason': ep.reason,
            'end_cause': ep.end_cause,
            'interface_fingerprint': self.config.interface_fingerprint or None,
            'started': ep.started_wall,
            'start_ns': first,
            'end_ns': last,
            'duration_s': (last - first) / 1e9 if first is not None and last is not None else 0.0,
            'message_count': bag.message_count if bag else 0,
            'topics': {t: s.as_dict() for t, s in sorted(ep.topics.items())},
        }

    def _close_episode(self, cause: str) -> Optional[dict]:
        self._ending = None
        bag, ep = self._bag, self._episode
        if bag is None or ep is None:
            return None
        ep.end_cause = cause
        record = self._record(STATUS_COMPLETE)
        try:
            bag.set_custom_data(EPISODE_CUSTOM_KEY, yaml.dump(
                {k: v for k, v in record.items() if k != 'topics'}, Dumper=YAML_DUMPER, sort_keys=False))
            bag.close(fsync=self.config.fsync)
            write_sidecar(ep.path, record, fsync=self.config.fsync)
        except (RecordingError, OSError) as err:
            self._bag = self._episode = None
            err = err if isinstance(err, RecordingError) else RecordingError(
                describe_os_error(err, ep.path, 'finish episode in'))
            self._fail(err, already_closed=True)
            raise err
        finally:
            self._bag = self._episode = None
        if cause in ('end', 'reset'):
            self._mark_boundary()
        self.closed_episodes.append(record)
        if self.on_episode_closed is not None:
            self.on_episode_closed(record)
        return record

    def _mark_boundary(self) -> None:
        """Episode boundary: the session counters do not count the pause to the next message as a gap."""
        for stats in self.totals.values():
            stats.mark_boundary()

    def _fail(self, err: Exception, already_closed: bool = False) -> None:
        """Stop after a write error; the broken bag is left for repair_bag, marked failed."""
        self.error = str(err)
        self._recording = False
        bag, ep = self._bag, self._episode
        self._bag = self._episode = None
        if bag is not None:
            bag.abort()
        if ep is not None and not already_closed:
            try:
                self._episode, self._bag = ep, bag
                record = self._record(STATUS_FAILED)
                record['error'] = str(err)
                write_sidecar(ep.path, record)
            except OSError:
                pass  # the disk refused; the missing metadata.yaml still marks the bag
            finally:
                self._bag = self._episode = None

    # ------------------------------------------------------------------ status
    def status(self) -> dict:
        """Counters for logging / the status topic."""
        with self._lock:
            return {
                'recording': self._recording,
                'episode': self._episode.path.name if self._episode else None,
                'episodes_closed': len(self.closed_episodes),
                'error': self.error,
                'topics': {t: s.as_dict() for t, s in sorted(self.totals.items())},
            }
