"""Repair a rosbag2 bag whose writer died before ``close()``.

A killed MCAP writer leaves the header and every chunk it flushed, but no summary, footer
or ``metadata.yaml``. :func:`repair_bag` reads the records that are complete with the
``mcap`` library's stream reader (stopping at the first truncated or undecodable record),
writes them into a fresh bag with rosbags (so the summary, footer and metadata are rosbags'
own), and swaps it in:

    episode_000007/episode_000007.mcap          the rebuilt bag
    episode_000007/metadata.yaml                rebuilt by rosbags
    episode_000007/episode_000007.mcap.damaged  the original bytes, kept
    episode_000007/episode.yaml                 status: repaired, partial: true

A file cut inside a chunk (often its only one: a short episode, or a copy that stopped
half-way) still holds the start of that chunk's compressed records. The chunk's fixed fields
are read with the ``mcap`` library's data stream, the part of its zstd / lz4 stream that is on
disk is decoded as a stream (``zstandard`` / ``lz4``: every complete compression block comes
out), and every complete record in it is kept.

A sqlite3 bag keeps what its writer committed; those rows are copied into a fresh bag the
same way. They are read from a copy of the database taken with its ``-wal`` (WAL mode, as
rosbag2's ``resilient`` preset writes: the transactions committed since the last checkpoint)
or hot ``-journal`` (the transaction the writer was in is rolled back), so the original bytes
stay untouched; a database sqlite reports as malformed is read row by row. A bag that is already readable is reported ``intact`` and left alone. A writer killed before
its first message reached the disk leaves an empty file or an MCAP header alone: that bag is
rebuilt empty (readable, 0 messages, ``partial``), so a dataset does not list it as needing
repair forever, and its original bytes are kept like any other. Foreign files and files cut
inside the MCAP magic raise :class:`RepairError`, which names the file and what is wrong with
it; nothing is changed on disk in that case.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml
from mcap.data_stream import ReadDataStream
from mcap.exceptions import McapError
from mcap.opcode import Opcode
from mcap.records import Channel, Chunk, Footer, Message, Schema
from mcap.stream_reader import StreamReader, breakup_chunk
from rosbags.rosbag2 import Writer
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode, StoragePlugin

from robot_training.data.bag_reader import MCAP_MAGIC, SQLITE_MAGIC, BagError, open_reader
from robot_training.recording.episode_meta import SIDECAR_FORMAT, STATUS_REPAIRED, read_sidecar, write_sidecar
from robot_training.recording.typestore import CATALOG, DecodeError, msgdef_text


class RepairError(RuntimeError):
    """The input cannot be repaired (missing, empty, foreign, nothing recoverable)."""


@dataclass
class RepairReport:
    """What :func:`repair_bag` found and did."""

    path: str
    status: str
    """``intact`` (readable already, untouched) or ``repaired`` (rebuilt from what was on disk)."""
    storage: str
    partial: bool
    """True when the end of the recording was lost (the bag holds what reached the disk)."""
    message_counts: dict = field(default_factory=dict)
    """Messages per topic in the (rebuilt) bag."""
    total_messages: int = 0
    bytes_scanned: int = 0
    bytes_unusable: int = 0
    """Bytes after the last complete record (the torn tail)."""
    stop_reason: str = ''
    kept_original: Optional[str] = None

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def summary(self) -> str:
        if self.status == STATUS_REPAIRED and not self.total_messages:
            return f'{self.path}: repaired as an empty bag, nothing was recorded ({self.stop_reason})'
        topics = ', '.join(f'{t}: {n}' for t, n in sorted(self.message_counts.items()))
        text = f'{self.path}: {self.status}, {self.total_messages} messages ({topics})'
        if self.partial:
            text += (f'; partial: {self.bytes_unusable} trailing bytes unusable'
                     f' ({self.stop_reason})')
        return text


def _bag_dir_and_file(path: Path) -> tuple[Path, Optional[Path]]:
    if not path.exists():
        raise RepairError(f'{path}: no such file or directory')
    if path.is_file():
        bag_dir = path.parent
        return bag_dir, path
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in ('.mcap', '.db3'))
    if not files:
        inner = sorted(p.parent.name for p in path.glob('*/*') if p.suffix in ('.mcap', '.db3'))
        hint = (f' (it holds bags: {", ".join(inner[:5])}{" ..." if len(inner) > 5 else ""};'
                ' repair them one by one)') if inner else ''
        raise RepairError(f'{path}: no .mcap or .db3 file in this folder; not a rosbag2 bag{hint}')
    if len(files) > 1:
        preferred = [p for p in files if p.stem == path.name]
        if len(preferred) != 1:
            raise RepairError(f'{path}: several bag files ({[p.name for p in files]}); '
                              'pass the one to repair')
        files = preferred
    return path, files[0]


def _intact(bag_dir: Path) -> Optional[RepairReport]:
    """The report of a bag that reads in full (with its metadata.yaml), else None."""
    if not (bag_dir / 'metadata.yaml').is_file():
        return None
    try:
        with open_reader(bag_dir) as reader:
            counts = dict.fromkeys((c.topic for c in reader.connections), 0)
            for conn, _, _ in reader.messages():
                counts[conn.topic] += 1
    except BagError:  # any failure means "needs repair"
        return None
    return RepairReport(str(bag_dir), 'intact', reader.storage, False, counts, sum(counts.values()))


def repair_bag(path: str | os.PathLike) -> RepairReport:
    """Make the bag at ``path`` (a bag folder or its .mcap/.db3 file) readable again."""
    path = Path(path)
    report = _intact(path) if path.is_dir() else None  # a split bag is intact as a whole
    if report is not None:
        return report
    bag_dir, bag_file = _bag_dir_and_file(path)
    report = _intact(bag_dir)
    if report is not None:
        return report
    size = bag_file.stat().st_size
    if size == 0:  # killed before it wrote even the MCAP header / sqlite's first page: nothing was recorded
        scan = _Scan(stop_reason='the file was empty: the writer died before any message reached the disk')
        report = _rewrite(bag_dir, bag_file, scan, 'sqlite3' if bag_file.suffix == '.db3' else 'mcap')
        return report
    with open(bag_file, 'rb') as f:
        head = f.read(16)
    if head.startswith(MCAP_MAGIC):
        scan = _scan_mcap(bag_file)
        storage = 'mcap'
    elif head.startswith(SQLITE_MAGIC):
        scan = _scan_sqlite(bag_file)
        storage = 'sqlite3'
    elif len(head) < len(MCAP_MAGIC) and MCAP_MAGIC.startswith(head):
        raise RepairError(f'{bag_file}: truncated inside the MCAP magic ({size} bytes)')
    else:
        raise RepairError(f'{bag_file}: not an MCAP or sqlite3 file (starts with {head[:8]!r})')
    if not scan.channels:  # the header (and maybe schemas) only: no message had been flushed yet
        scan.stop_reason = ('no message reached the disk before the writer died (no complete channel record; '
                            f'{scan.stop_reason or "nothing after the header"})')
    report = _rewrite(bag_dir, bag_file, scan, storage)
    report.bytes_scanned = size
    return report


@dataclass
class _Scan:
    schemas: dict = field(default_factory=dict)   # id -> (name, encoding, text)
    channels: dict = field(default_factory=dict)  # id -> (topic, schema_id, encoding, metadata)
    messages: list = field(default_factory=list)  # (channel_id, log_time, data)
    good_bytes: int = 0
    stop_reason: str = ''
    complete: bool = False
    distro: str = ''  # the ROS 2 distribution an sqlite3 bag names, if any


def _scan_mcap(bag_file: Path) -> _Scan:
    scan = _Scan()
    size = bag_file.stat().st_size
    with open(bag_file, 'rb') as f:
        reader = StreamReader(f, emit_chunks=True, record_size_limit=size)
        records = reader.records
        while True:
            try:
                record = next(records)
            except StopIteration:
                break
            except McapError as err:  # EndOfFile: a record cut short by the kill
                if scan.good_bytes == size:
                    scan.stop_reason = 'end of file before the summary and footer'
                else:
                    scan.stop_reason = (_scan_cut_chunk(f, scan.good_bytes, size, scan)
                                        or f'record cut short ({err.__class__.__name__} {err})'.strip())
                break
            except Exception as err:  # noqa: BLE001 - a torn fixed-size field, garbage
                scan.stop_reason = f'unreadable record ({err.__class__.__name__}: {err})'
                break
            if isinstance(record, Chunk):
                try:
                    inner = breakup_chunk(record, validate_crc=True)
                except Exception as err:  # noqa: BLE001 - torn chunk: stop here
                    scan.stop_reason = f'undecodable chunk ({err.__class__.__name__}: {err})'
                    break
                for rec in inner:
                    _take(scan, rec)
            else:
                _take(scan, record)
            scan.good_bytes = f.tell()
            if isinstance(record, Footer):
                scan.complete = True
                break
    if not scan.stop_reason and not scan.complete:
        scan.stop_reason = 'end of file before the summary and footer'
    return scan


def _scan_cut_chunk(f, offset: int, size: int, scan: _Scan) -> str:
    """Records of a chunk record cut short at the end of the file, starting at ``offset``.

    Takes every complete record that the on-disk part of the chunk's compressed stream decodes
    to and returns a stop reason, or '' when there is no cut chunk at ``offset``.
    """
    f.seek(offset)
    rest = f.read(size - offset)
    if not rest or rest[0] != Opcode.CHUNK:
        return ''
    stream = ReadDataStream(_BytesReader(rest[1:]))
    try:
        stream.read8()  # record length (beyond the end of the file)
        stream.read8(), stream.read8()  # message start and end time
        uncompressed_size = stream.read8()
        stream.read4()  # crc of the whole uncompressed records: cannot be checked on a part
        compression = stream.read_prefixed_string()
        records_length = stream.read8()
    except Exception:  # noqa: BLE001 - cut inside the chunk's own fields
        return f'cut inside the fields of a chunk at byte {offset}; nothing in it recovered'
    compressed = rest[1 + stream.count:]
    try:
        records = _decode_prefix(compression, compressed)
    except RepairError as err:
        return f'cut inside a chunk at byte {offset}: {err}'
    before = len(scan.messages)
    complete = _take_complete_records(scan, records)
    return (f'cut inside a {compression or "uncompressed"} chunk at byte {offset}: decoded '
            f'{len(compressed)} of its {records_length} stored bytes as a stream, {len(records)} of '
            f'{uncompressed_size} record bytes, {len(scan.messages) - before} complete messages kept'
            f'{"" if complete else ", the record after them was cut"}')


class _BytesReader:
    """The ``read(n)`` of a bytes object, for mcap's ReadDataStream."""

    def __init__(self, data: bytes):
        self._data, self._pos = data, 0

    def read(self, n: int = -1) -> bytes:
        end = len(self._data) if n < 0 else self._pos + n
        out = self._data[self._pos:end]
        self._pos += len(out)
        return out


def _decode_prefix(compression: str, data: bytes) -> bytes:
    """What the start of a compressed stream decodes to (complete compression blocks only)."""
    if compression in ('', 'none'):
        return data
    if compression == 'zstd':
        try:
            import zstandard
        except ImportError:
            raise RepairError('decoding a cut zstd chunk needs the zstandard package') from None
        try:
            return zstandard.ZstdDecompressor().decompressobj().decompress(data)
        except zstandard.ZstdError as err:
            raise RepairError(f'its zstd stream does not decode ({err})') from None
    if compression == 'lz4':
        try:
            import lz4.frame
        except ImportError:
            raise RepairError('decoding a cut lz4 chunk needs the lz4 package') from None
        try:
            return lz4.frame.LZ4FrameDecompressor().decompress(data)
        except RuntimeError as err:
            raise RepairError(f'its lz4 stream does not decode ({err})') from None
    raise RepairError(f'unknown chunk compression {compression!r}')


def _take_complete_records(scan: _Scan, records: bytes) -> bool:
    """Every complete record of a chunk's (partial) records; True when none was cut."""
    import io

    reader = StreamReader(io.BytesIO(records), skip_magic=True, record_size_limit=max(len(records), 1))
    try:
        for rec in reader.records:
            _take(scan, rec)
    except Exception:  # noqa: BLE001 - McapError / struct.error on the record that was cut
        return False
    return True


def _take(scan: _Scan, rec: object) -> None:
    if isinstance(rec, Schema):
        scan.schemas[rec.id] = (rec.name, rec.encoding, rec.data.decode('utf-8'))
    elif isinstance(rec, Channel):
        scan.channels[rec.id] = (rec.topic, rec.schema_id, rec.message_encoding,
                                 dict(rec.metadata))
    elif isinstance(rec, Message):
        scan.messages.append((rec.channel_id, rec.log_time, rec.data))


SQLITE_SIDE_FILES = ('-wal', '-journal', '-shm')
"""Files a sqlite3 writer keeps beside its database: the write-ahead log of WAL mode (rosbag2's
``resilient`` preset), the rollback journal of the default mode, WAL's shared-memory index."""


def _scan_sqlite(bag_file: Path) -> _Scan:
    """Rows a killed sqlite3 writer committed.

    The database is read from a copy taken together with the files beside it: a ``-wal`` left
    by a WAL-mode writer holds transactions committed since its last checkpoint (sqlite reads
    them from the copy), a hot ``-journal`` left in the middle of a transaction is rolled back
    (its uncommitted pages undone in the copy), and the originals stay as they were. A file
    sqlite reports as malformed (a writer that ran without a journal) is read row by row and
    the rows that read are kept.
    """
    import tempfile

    scan = _Scan()
    with tempfile.TemporaryDirectory(prefix='.repair-sqlite-', dir=bag_file.parent) as tmp:
        copy = Path(tmp) / bag_file.name
        shutil.copyfile(bag_file, copy)
        present = []
        for suffix in SQLITE_SIDE_FILES[:2]:
            side = bag_file.with_name(bag_file.name + suffix)
            if side.is_file() and side.stat().st_size > 0:
                shutil.copyfile(side, copy.with_name(copy.name + suffix))
                present.append(suffix)
        try:
            conn = sqlite3.connect(f'file:{copy}', uri=True)
        except sqlite3.DatabaseError as err:
            raise RepairError(f'{bag_file}: unreadable sqlite3 bag ({err})') from err
        try:
            try:
                defs = {row[0]: (row[1], row[2]) for row in conn.execute(
                    'SELECT topic_type, encoding, encoded_message_definition FROM message_definitions')}
            except sqlite3.DatabaseError:
                defs = {}  # older bags have no definitions table; rosbags' own store fills in
            try:  # any rosbag2 schema: Foxy's first one has no offered_qos_profiles column
                cols = {r[1] for r in conn.execute('PRAGMA table_info(topics)')}
                qos = 'offered_qos_profiles' if 'offered_qos_profiles' in cols else "''"
                topics = list(conn.execute(f'SELECT id, name, type, serialization_format, {qos} FROM topics'))
            except sqlite3.DatabaseError as err:
                raise RepairError(f'{bag_file}: unreadable sqlite3 bag: its topics table cannot be read '
                                  f'({err}); nothing to recover') from err
            try:
                scan.distro = str(conn.execute('SELECT ros_distro FROM schema').fetchone()[0])
            except (sqlite3.DatabaseError, TypeError):
                pass  # older schemas name no distribution
            for tid, name, mtype, ser, qos in topics:
                enc, text = defs.get(mtype, ('ros2msg', ''))
                scan.schemas[tid] = (mtype, enc, text)
                scan.channels[tid] = (name, tid, ser, {'offered_qos_profiles': qos})
            scan.messages, unreadable = _sqlite_rows(conn)
        finally:
            conn.close()
    scan.good_bytes = bag_file.stat().st_size
    reasons = []
    if '-wal' in present:
        reasons.append('committed transactions read from its write-ahead log (-wal)')
    if '-journal' in present:
        reasons.append("the killed writer's open transaction rolled back from its journal")
    if unreadable:
        reasons.append(f'{unreadable} message rows unreadable (malformed database pages) skipped')
    reasons.append('uncommitted rows of the killed writer are lost')
    scan.stop_reason = '; '.join(reasons)
    return scan


def _sqlite_rows(conn: sqlite3.Connection, batch: int = 4096) -> tuple[list, int]:
    """``(rows, unreadable)``: all message rows in id order; where sqlite reports a malformed
    page, the rows of that range are tried one by one and the unreadable ones counted."""
    query = 'SELECT topic_id, timestamp, data FROM messages'
    try:
        return list(conn.execute(query + ' ORDER BY id')), 0
    except sqlite3.DatabaseError:
        pass
    try:
        last = conn.execute('SELECT max(id) FROM messages').fetchone()[0] or 0
    except sqlite3.DatabaseError:
        last = None  # the rightmost pages are damaged: probe until a long run of misses
    rows, unreadable, misses, low = [], 0, 0, 1
    while last is None or low <= last:
        high = low + batch - 1
        try:
            found = list(conn.execute(query + ' WHERE id BETWEEN ? AND ? ORDER BY id', (low, high)))
        except sqlite3.DatabaseError:
            found = []
            for rowid in range(low, high + 1):
                try:
                    found.extend(conn.execute(query + ' WHERE id = ?', (rowid,)))
                except sqlite3.DatabaseError:
                    unreadable += 1
        rows.extend(found)
        if last is None:
            misses = 0 if found else misses + 1
            if misses >= 16:
                break
        low = high + 1
    return rows, unreadable


def _definition(bag_file: Path, msgtype: str, encoding: str, text: str, sample: Optional[bytes],
                distro: str) -> tuple[str, str]:
    """(ros2msg text, RIHS01) to write for ``msgtype``: the bag's own definition, or for a bag that
    carries none (older sqlite3 schemas) the one of its distribution that decodes its messages."""
    try:
        _, source, defs = CATALOG.resolve(msgtype, sample, (encoding, text), distro)
    except DecodeError as exc:
        if text and encoding == 'ros2msg':
            return text, ''  # kept as the bag has it, even though its first message does not decode
        raise RepairError(f'{bag_file}: {msgtype}: {exc}') from None
    if source == "the bag's definition" and encoding == 'ros2msg':
        return text, msgdef_text(msgtype, defs)[1]
    return msgdef_text(msgtype, defs)


def _rewrite(bag_dir: Path, bag_file: Path, scan: _Scan, storage: str) -> RepairReport:
    samples: dict = {}
    for cid, _, data in scan.messages:
        samples.setdefault(cid, data)
    work = bag_dir.parent / f'.{bag_dir.name}.repair'
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    new_dir = work / bag_dir.name
    writer = Writer(new_dir, version=9,
                    storage_plugin=StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3)
    if storage == 'mcap':
        writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    counts: dict[str, int] = {}
    try:
        writer.open()
        conns = {}
        for cid, (topic, schema_id, encoding, metadata) in sorted(scan.channels.items()):
            msgtype = scan.schemas.get(schema_id, (None,))[0]
            if msgtype is None:
                raise RepairError(f'{bag_file}: channel {topic!r} refers to a missing schema')
            _, def_encoding, text = scan.schemas[schema_id]
            msgdef, rihs01 = _definition(bag_file, msgtype, def_encoding, text, samples.get(cid), scan.distro)
            conns[cid] = writer.add_connection(topic, msgtype, msgdef=msgdef, rihs01=rihs01,
                                               serialization_format=encoding or 'cdr')
            counts[topic] = 0
        for cid, log_time, data in scan.messages:
            conn = conns.get(cid)
            if conn is None:
                continue
            writer.write(conn, log_time, data)
            counts[conn.topic] += 1
        sidecar = read_sidecar(bag_dir)
        if sidecar:
            writer.set_custom_data('robot_training.episode', yaml.safe_dump(
                {k: v for k, v in sidecar.items() if k != 'topics'} | {'status': STATUS_REPAIRED},
                sort_keys=False))
        writer.close()
    except BaseException:
        writer.abort()
        shutil.rmtree(work, ignore_errors=True)
        raise

    # Swap: the rebuilt bag takes the original's place; the original bytes are kept.
    new_file = new_dir / (bag_dir.name + bag_file.suffix)
    kept = bag_dir / (bag_file.name + '.damaged')
    os.replace(bag_file, kept)
    for suffix in SQLITE_SIDE_FILES:  # the old database's journal / WAL belong with its kept bytes
        leftover = bag_dir / (bag_file.name + suffix)
        if leftover.exists():
            os.replace(leftover, bag_dir / (leftover.name + '.damaged'))
    final_file = bag_dir / new_file.name
    os.replace(new_file, final_file)
    os.replace(new_dir / 'metadata.yaml', bag_dir / 'metadata.yaml')
    shutil.rmtree(work, ignore_errors=True)

    partial = not scan.complete
    report = RepairReport(
        path=str(bag_dir), status=STATUS_REPAIRED, storage=storage, partial=partial,
        message_counts=counts, total_messages=sum(counts.values()),
        bytes_unusable=max(0, bag_file_size(kept) - scan.good_bytes) if storage == 'mcap' else 0,
        stop_reason=scan.stop_reason, kept_original=str(kept))
    sidecar = read_sidecar(bag_dir) or {'format': SIDECAR_FORMAT,
                                        'bag': bag_dir.name}
    sidecar.update({'status': STATUS_REPAIRED, 'partial': partial,
                    'message_count': report.total_messages,
                    'repair': {'kept_original': kept.name, 'stop_reason': scan.stop_reason,
                               'bytes_unusable': report.bytes_unusable,
                               'message_counts': counts}})
    topics = sidecar.get('topics') or {}
    for topic, n in counts.items():
        topics.setdefault(topic, {})['written'] = n
    sidecar['topics'] = topics
    write_sidecar(bag_dir, sidecar)
    return report


def bag_file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
