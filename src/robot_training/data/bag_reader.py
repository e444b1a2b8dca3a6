"""rosbag2 bags read exactly as their storage files hold them, whoever wrote them.

:class:`BagReader` opens a bag folder (``metadata.yaml`` and its storage files, split in any
number of files) or a lone ``.mcap`` / ``.db3`` file, and reads the storage itself: MCAP
records (chunks with zstd, lz4 or no compression) and every rosbag2 sqlite3 schema (with or
without the ``schema`` and ``message_definitions`` tables and the ``offered_qos_profiles``
column, Foxy to Kilted). ``metadata.yaml`` (versions 1 to 9) only says which files to read and
how they are compressed (``compression_mode: file`` or ``message``, zstd); its topic list and
counts are checked against the storage, never used to filter it: a topic is matched by name
and type (the QoS strings of the metadata and of the storage often differ and do not matter),
and a count that disagrees with ``message_count`` is reported as a warning naming bag and
topic. A folder without ``metadata.yaml`` is read from its storage files.

Errors are :class:`BagError`, one line naming the file; only those that ``bags repair`` can
mend (a file its writer did not finish: no MCAP footer, an sqlite3 journal left beside it,
a damaged database or chunk, an empty file) suggest it.
"""

from __future__ import annotations

import mmap
import re
import shutil
import sqlite3
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import yaml

MCAP_MAGIC = b'\x89MCAP0\r\n'
SQLITE_MAGIC = b'SQLite format 3\x00'
ZSTD_MAGIC = b'\x28\xb5\x2f\xfd'
STORAGE_SUFFIXES = ('.mcap', '.db3')
SQLITE_SIDE_FILES = ('-wal', '-journal')

_U16, _U32, _U64 = (struct.Struct(f).unpack_from for f in ('<H', '<I', '<Q'))
_OP_LEN = struct.Struct('<BQ').unpack_from
_MSG_HEAD = struct.Struct('<HIQ').unpack_from
_CHUNK_HEAD = struct.Struct('<QQQI').unpack_from


class BagError(ValueError):
    """A bag that cannot be read, or that does not hold what the interface description needs.

    Always one line: line breaks in what it quotes (a parser's or sqlite's text) become spaces."""

    def __init__(self, message: str):
        super().__init__(' '.join(str(message).split()))


class BagWarning(UserWarning):
    """A bag that reads, but whose metadata disagrees with its storage files."""


def repair_hint(bag: Path) -> str:
    return f'; `bags repair {bag}` can recover what is on disk'


@dataclass
class Connection:
    """One (topic, type) of a bag, over all its files."""

    id: int
    topic: str
    msgtype: str
    msgdef: Tuple[str, str] = ('', '')  # (encoding, text) of the definition the bag carries
    digest: str = ''                    # RIHS01 type hash the bag records, if any
    msgcount: Optional[int] = 0         # messages in the storage files (None: known only by reading)
    declared: Optional[int] = None      # metadata.yaml's message_count
    serialization: str = 'cdr'


def _unzstd(data: bytes, size: int = -1) -> bytes:
    import zstandard  # noqa: PLC0415 - only compressed bags need it

    d = zstandard.ZstdDecompressor()
    try:
        return d.decompress(data) if size < 0 else d.decompress(data, max_output_size=size)
    except zstandard.ZstdError:  # no content size in the frame header: decode as a stream
        return d.decompressobj().decompress(data)


def storage_problem(f: Path) -> Optional[str]:
    """Why a storage file looks unfinished by its writer (empty, no MCAP footer, journal beside it), or None."""
    try:
        size = f.stat().st_size
        if size == 0:
            return 'empty file (its writer stopped before writing anything)'
        with open(f, 'rb') as fh:
            head = fh.read(16)
            if head.startswith(MCAP_MAGIC):
                fh.seek(max(size - 8, 0))
                if fh.read(8) != MCAP_MAGIC or size < 8 + 37:
                    return 'the MCAP file ends without its footer (truncated, or its writer was killed)'
    except OSError as exc:
        return f'unreadable ({exc.strerror or exc})'
    if head.startswith(SQLITE_MAGIC):
        for side in SQLITE_SIDE_FILES:
            s = f.with_name(f.name + side)
            if s.is_file() and s.stat().st_size > 0:
                return f'its sqlite3 {side[1:]} file is still beside it (its writer did not close it)'
    return None


def _natural(f: Path):
    m = re.match(r'^(.*?)(\d+)$', f.name.split('.')[0])
    return (m.group(1), int(m.group(2)), f.name) if m else (f.name, -1, f.name)


# ----------------------------------------------------------------------------- MCAP


class _McapFile:
    """One MCAP file, memory-mapped; records parsed with ``struct``."""

    def __init__(self, path: Path, shown: Path, bag: Path):
        self.path, self.shown, self.bag = path, shown, bag
        self.channels: Dict[int, tuple] = {}  # id -> (topic, msgtype, (encoding, text), message_encoding)
        self.counts: Optional[Dict[int, int]] = None
        with open(path, 'rb') as fh:
            size = fh.seek(0, 2)
            if size < len(MCAP_MAGIC) + 37:
                raise BagError(f'{shown}: not a readable rosbag2 bag (an MCAP file of {size} bytes, cut before its '
                               f'footer){repair_hint(bag)}')
            self.buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        buf = self.buf
        if buf[size - 8:] != MCAP_MAGIC or buf[size - 37] != 0x02:
            raise BagError(f'{shown}: not a readable rosbag2 bag (the MCAP file ends without its footer: '
                           f'truncated, or its writer was killed){repair_hint(bag)}')
        summary = _U64(buf, size - 28)[0]
        self.data_end = summary or size - 37
        schemas: Dict[int, tuple] = {}
        try:
            for op, a, b, src in self._records(summary, size - 37) if summary else ():
                self._meta(op, a, b, schemas, src)
            # the summary should repeat every schema and channel; where it does not, they are among the data
            if not self.channels or set(self.counts or ()) - set(self.channels):
                for op, a, b, src in self._records(8, self.data_end, True):
                    self._meta(op, a, b, schemas, src)
        except (struct.error, UnicodeDecodeError) as exc:
            raise self._fail(f'a damaged schema or channel record ({exc})', summary or 8) from None

    def _fail(self, what: str, at: int) -> BagError:
        return BagError(f'{self.shown}: not a readable rosbag2 bag ({what} at byte {at}){repair_hint(self.bag)}')

    def _records(self, pos: int, end: int, chunks: bool = False):
        buf = self.buf
        while pos < end:
            if pos + 9 > end:
                raise self._fail('a record cut short', pos)
            op, n = _OP_LEN(buf, pos)
            a, b = pos + 9, pos + 9 + n
            if b > end:
                raise self._fail(f'record 0x{op:02x} runs past the end of the data', pos)
            if op == 0x0F:
                return
            if op == 0x06 and chunks:
                inner = self._chunk(a, b)
                yield from ((op2, a2, b2, inner) for op2, a2, b2 in _inner_records(inner, self, pos))
            else:
                yield op, a, b, buf
            pos = b

    def _chunk(self, a: int, b: int) -> bytes:
        buf = self.buf
        try:
            _, _, usize, crc = _CHUNK_HEAD(buf, a)
            clen = _U32(buf, a + 28)[0]
            compression = buf[a + 32:a + 32 + clen].decode()
            rlen = _U64(buf, a + 32 + clen)[0]
            start = a + 40 + clen
            data = buf[start:start + rlen]
            if compression == 'zstd':
                data = _unzstd(data, usize)
            elif compression == 'lz4':
                import lz4.frame  # noqa: PLC0415

                data = lz4.frame.decompress(data)
            elif compression not in ('', 'none'):
                raise BagError(f'{self.shown}: not a readable rosbag2 bag (chunk compression {compression!r} is not '
                               'supported)')
        except BagError:
            raise
        except Exception as exc:  # noqa: BLE001 - struct.error, zstd / lz4 errors
            raise self._fail(f'a chunk that does not decode ({type(exc).__name__}: {exc})', a - 9) from None
        if len(data) != usize or (crc and zlib.crc32(data) != crc):
            raise self._fail('a damaged chunk (size or CRC mismatch)', a - 9)
        return data

    def _meta(self, op: int, a: int, b: int, schemas: dict, buf) -> None:
        if op == 0x03:
            sid = _U16(buf, a)[0]
            name, p = _string(buf, a + 2)
            enc, p = _string(buf, p)
            n = _U32(buf, p)[0]
            schemas[sid] = (name, (enc, bytes(buf[p + 4:p + 4 + n]).decode('utf-8', 'replace')))
        elif op == 0x04:
            cid, sid = struct.unpack_from('<HH', buf, a)
            topic, p = _string(buf, a + 4)
            menc, p = _string(buf, p)
            name, msgdef = schemas.get(sid, ('', ('', '')))
            self.channels[cid] = (topic, name, msgdef, menc)
        elif op == 0x0B:
            n = _U32(buf, a + 42)[0]
            self.counts = {cid: cnt for cid, cnt in struct.iter_unpack('<HQ', buf[a + 46:a + 46 + n])}

    def batches(self, wanted: Dict[int, int]) -> Iterator[list]:
        """Per chunk, ``[(id, log_time, raw)]`` of the channels in ``wanted`` (channel id -> id)."""
        buf, pos, end = self.buf, 8, self.data_end
        loose: list = []
        while pos < end:
            if pos + 9 > end:
                raise self._fail('a record cut short', pos)
            op, n = _OP_LEN(buf, pos)
            b = pos + 9 + n
            if b > end:
                raise self._fail(f'record 0x{op:02x} runs past the end of the data', pos)
            if op == 0x06:
                data = self._chunk(pos + 9, b)
                out, p, e = [], 0, len(data)
                get = wanted.get
                try:
                    while p < e:
                        op2, n2 = _OP_LEN(data, p)
                        q = p + 9 + n2
                        if op2 == 0x05:
                            cid, _, t = _MSG_HEAD(data, p + 9)
                            gid = get(cid)
                            if gid is not None:
                                out.append((gid, t, data[p + 31:q]))
                        p = q
                except struct.error:
                    p = -1
                if p != e:
                    raise self._fail('a chunk whose records overrun it', pos)
                if out:
                    yield out
            elif op == 0x05:
                cid, _, t = _MSG_HEAD(buf, pos + 9)
                if cid in wanted:
                    loose.append((wanted[cid], t, buf[pos + 31:b]))
                    if len(loose) >= 4096:
                        yield loose
                        loose = []
            elif op == 0x0F:
                break
            pos = b
        if loose:
            yield loose

    def close(self) -> None:
        self.buf.close()


def _string(buf, p: int) -> Tuple[str, int]:
    n = _U32(buf, p)[0]
    return bytes(buf[p + 4:p + 4 + n]).decode('utf-8', 'replace'), p + 4 + n


def _inner_records(data: bytes, f: _McapFile, at: int):
    p, e = 0, len(data)
    while p < e:
        op, n = _OP_LEN(data, p) if p + 9 <= e else (0, e)
        q = p + 9 + n
        if q > e:
            raise f._fail('a chunk whose records overrun it', at)
        yield op, p + 9, q
        p = q


# ----------------------------------------------------------------------------- sqlite3


_SQLITE_ERRORS = (sqlite3.Error, UnicodeDecodeError, ValueError, TypeError)  # damaged pages or text


class _SqliteFile:
    """One rosbag2 sqlite3 database, any schema (columns and tables looked up, not assumed)."""

    def __init__(self, path: Path, shown: Path, bag: Path):
        self.path, self.shown, self.bag = path, shown, bag
        self.channels: Dict[int, tuple] = {}
        self.counts: Optional[Dict[int, int]] = None
        self.distro, self.schema = '', 0
        try:
            self.conn = sqlite3.connect(f'{path.resolve().as_uri()}?mode=ro&immutable=1', uri=True,
                                        check_same_thread=False)
            tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not {'topics', 'messages'} <= tables:
                raise BagError(f'{shown}: not a readable rosbag2 bag (an SQLite database without rosbag2\'s '
                               'topics and messages tables)')
            cols = [r[1] for r in self.conn.execute('PRAGMA table_info(topics)')]
            has = [c if c in cols else "''" for c in ('serialization_format', 'type_description_hash')]
            if 'schema' in tables:
                scols = [r[1] for r in self.conn.execute('PRAGMA table_info(schema)')]
                distro = 'ros_distro' if 'ros_distro' in scols else "''"
                row = self.conn.execute(f'SELECT schema_version, {distro} FROM schema').fetchone() or (0, '')
                self.schema, self.distro = int(row[0] or 0), str(row[1] or '')
            else:
                self.schema = 2 if 'offered_qos_profiles' in cols else 1
            defs = {}
            if 'message_definitions' in tables:
                defs = {t: (e, d) for t, e, d in self.conn.execute(
                    'SELECT topic_type, encoding, encoded_message_definition FROM message_definitions')}
            for tid, name, mtype, ser, digest in self.conn.execute(
                    f'SELECT id, name, type, {has[0]}, {has[1]} FROM topics ORDER BY id'):
                if isinstance(tid, int):
                    self.channels[tid] = (str(name), str(mtype), defs.get(mtype, ('', '')), ser or 'cdr', digest or '')
        except BagError:
            raise
        except _SQLITE_ERRORS as exc:  # without its topics nothing can be recovered: no repair hint
            raise self._fail(exc, hint=False) from None
        try:
            self.counts = dict(self.conn.execute('SELECT topic_id, COUNT(*) FROM messages GROUP BY topic_id'))
        except _SQLITE_ERRORS as exc:
            raise self._fail(exc) from None

    def _fail(self, exc: Exception, hint: bool = True) -> BagError:
        """Damaged message pages: repair keeps the rows that still read."""
        text = str(exc)
        hint = repair_hint(self.bag) if hint and ('malformed' in text or 'corrupt' in text) else ''
        return BagError(f'{self.shown}: not a readable rosbag2 bag (damaged sqlite3 database: {text}){hint}')

    def batches(self, wanted: Dict[int, int], size: int = 8192) -> Iterator[list]:
        ids = ','.join(str(i) for i in wanted)
        identity = all(k == v for k, v in wanted.items())
        try:
            cur = self.conn.execute(f'SELECT topic_id, timestamp, data FROM messages WHERE topic_id IN ({ids})')
            while rows := cur.fetchmany(size):
                yield rows if identity else [(wanted[tid], t, d) for tid, t, d in rows]
        except _SQLITE_ERRORS as exc:
            raise self._fail(exc) from None

    def close(self) -> None:
        self.conn.close()


# ----------------------------------------------------------------------------- the bag


def _metadata(path: Path) -> dict:
    try:
        doc = yaml.load(path.read_text(encoding='utf-8'), Loader=getattr(yaml, 'CSafeLoader', yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, 'problem_mark', None)
        where = f'line {mark.line + 1}: ' if mark is not None else ''
        why = ' '.join(str(getattr(exc, 'problem', None) or exc).split())
        raise BagError(f'{path}: not a valid metadata.yaml ({where}{why}); move it away to read the storage '
                       'files alone') from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BagError(f'{path}: unreadable metadata.yaml ({exc})') from None
    info = doc.get('rosbag2_bagfile_information') if isinstance(doc, dict) else None
    if not isinstance(info, dict):
        raise BagError(f'{path.parent}: not a readable rosbag2 bag ({path.name} has no rosbag2_bagfile_information)')
    return info


def _distro_of(meta: dict, sqlite: Sequence[_SqliteFile]) -> str:
    """The ROS 2 distribution that recorded the bag: named by it, else implied by its format versions."""
    named = str(meta.get('ros_distro') or next((s.distro for s in sqlite if s.distro), '')).lower()
    if named and named != 'rosbags':
        return named
    version = meta.get('version')
    if version in (1, 2, 3, 4) or any(s.schema in (1, 2) for s in sqlite):
        return 'foxy'
    if version == 5 or any(s.schema == 3 for s in sqlite):
        return 'humble'
    return ''


class BagReader:
    """An open bag: ``connections`` (topics with their storage and metadata counts) and ``batches``."""

    def __init__(self, path) -> None:
        self.path = bag = Path(path)
        self.warnings: List[str] = []
        self._tmp: Optional[tempfile.TemporaryDirectory] = None
        self._files: list = []
        if not bag.exists():
            raise BagError(f'{bag}: no such file or directory')
        meta_path = bag / 'metadata.yaml' if bag.is_dir() else None
        self.metadata = _metadata(meta_path) if meta_path is not None and meta_path.is_file() else {}
        meta = self.metadata
        try:
            mode = str(meta.get('compression_mode') or '').lower()
            mode = '' if mode == 'none' else mode
            if mode and str(meta.get('compression_format') or 'zstd').lower() != 'zstd':
                raise BagError(f"{bag}: compression format {meta.get('compression_format')!r} is not supported "
                               '(only zstd)')
            # True: every message is zstd-compressed; None (no metadata): those that start like zstd
            self.message_compression = True if mode == 'message' else None if not meta else False
            files = self._storage_files(meta)
            for f in files:
                self._files.append(self._open(f, mode == 'file'))
            self.storage = 'mcap' if isinstance(self._files[0], _McapFile) else 'sqlite3'
        except BaseException:
            self.close()
            raise
        self.custom_data = dict(meta.get('custom_data') or {})
        self.distro = _distro_of(meta, [f for f in self._files if isinstance(f, _SqliteFile)])
        self._build_connections(meta)

    def _storage_files(self, meta: dict) -> List[Path]:
        bag = self.path
        if bag.is_file():
            return [bag]
        listed = [PurePath(str(x)).name for x in meta.get('relative_file_paths') or []]
        present = {f.name for f in bag.iterdir() if f.is_file()}
        if listed:
            missing = [x for x in listed if x not in present]
            if missing:
                raise BagError(f'{bag}: metadata.yaml lists {missing[0]}, which is not in the folder'
                               + (f' ({len(missing)} files missing)' if len(missing) > 1 else ''))
            return [bag / x for x in listed]
        found = sorted((f for f in bag.iterdir() if f.is_file() and f.suffix in STORAGE_SUFFIXES), key=_natural)
        if not found:
            raise BagError(f'{bag}: not a readable rosbag2 bag (no .mcap or .db3 file in it)')
        return found

    def _open(self, f: Path, file_compressed: bool):
        if f.stat().st_size == 0:
            raise BagError(f'{f}: not a readable rosbag2 bag (empty file: its writer stopped before writing '
                           f'anything){repair_hint(self.path)}')
        with open(f, 'rb') as fh:
            head = fh.read(16)
        src = f
        if head.startswith(ZSTD_MAGIC) or file_compressed:
            import zstandard  # noqa: PLC0415

            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix='bag_reader_')
            src = Path(self._tmp.name) / (f.name[:-5] if f.name.endswith('.zstd') else f.name)
            try:
                with open(f, 'rb') as fin, open(src, 'wb') as fout:
                    shutil.copyfileobj(zstandard.ZstdDecompressor().stream_reader(fin), fout, 1 << 20)
            except zstandard.ZstdError as exc:
                raise BagError(f'{f}: not a readable rosbag2 bag (its zstd file compression does not decode: '
                               f'{exc})') from None
            with open(src, 'rb') as fh:
                head = fh.read(16)
        if head.startswith(MCAP_MAGIC):
            return _McapFile(src, f, self.path)
        if head.startswith(SQLITE_MAGIC):
            problem = storage_problem(f) if src == f else None
            if problem:
                raise BagError(f'{f}: not a readable rosbag2 bag ({problem}){repair_hint(self.path)}')
            return _SqliteFile(src, f, self.path)
        raise BagError(f'{f}: not a readable rosbag2 bag (neither an MCAP nor an SQLite file; it starts with '
                       f'{head[:8]!r})')

    def _build_connections(self, meta: dict) -> None:
        self.connections: List[Connection] = []
        self._maps: List[Dict[int, int]] = []  # per file: storage id -> connection id
        by_key: Dict[tuple, Connection] = {}
        for f in self._files:
            m = {}
            for cid, ch in f.channels.items():
                topic, msgtype, msgdef, ser = ch[:4]
                c = by_key.get((topic, msgtype))
                if c is None:
                    c = by_key[(topic, msgtype)] = Connection(len(self.connections), topic, msgtype, serialization=ser)
                    self.connections.append(c)
                if not c.msgdef[1] and msgdef[1]:
                    c.msgdef = msgdef
                if len(ch) > 4 and ch[4]:
                    c.digest = ch[4]
                n = None if f.counts is None else f.counts.get(cid, 0)
                c.msgcount = None if n is None or c.msgcount is None else c.msgcount + n
                m[cid] = c.id
            self._maps.append(m)
        for entry in meta.get('topics_with_message_count') or []:
            try:
                tm = entry['topic_metadata']
                key, n = (str(tm['name']), str(tm['type'])), int(entry.get('message_count', 0))
            except (KeyError, TypeError, ValueError):
                continue
            c = by_key.get(key)
            if c is None:
                c = by_key[key] = Connection(len(self.connections), *key, msgcount=0)
                self.connections.append(c)
            c.declared = (c.declared or 0) + n
            if not c.digest and tm.get('type_description_hash'):
                c.digest = str(tm['type_description_hash'])

    # ------------------------------------------------------------------ reading

    def batches(self, connections: Optional[Sequence[Connection]] = None) -> Iterator[List[Tuple[int, int, bytes]]]:
        """Lists of ``(connection id, receive time ns, raw CDR)``, in storage order (not sorted by time)."""
        ids = {c.id for c in (self.connections if connections is None else connections)}
        for f, m in zip(self._files, self._maps):
            wanted = {cid: gid for cid, gid in m.items() if gid in ids}
            if not wanted:
                continue
            for batch in f.batches(wanted):
                if self.message_compression is not False:
                    batch = self._decompress(batch, f)
                yield batch

    def _decompress(self, batch: list, f) -> list:
        strict = self.message_compression is True
        try:
            return [(i, t, _unzstd(raw) if strict or raw[:4] == ZSTD_MAGIC else raw) for i, t, raw in batch]
        except Exception as exc:  # noqa: BLE001 - zstandard.ZstdError
            raise BagError(f'{f.shown}: not a readable rosbag2 bag (a message does not decompress: {exc})') from None

    def messages(self, connections: Optional[Sequence[Connection]] = None) -> Iterator[Tuple[Connection, int, bytes]]:
        """``(connection, receive time ns, raw CDR)``, undecoded, in storage order."""
        conns = self.connections
        for batch in self.batches(connections):
            for i, t, raw in batch:
                yield conns[i], t, raw

    def decoded(self, connections: Optional[Sequence[Connection]] = None,
                undecodable: Optional[Dict[int, Exception]] = None
                ) -> Iterator[Tuple[Connection, int, int, bytes, Any]]:
        """The bag-message iterator of the suite (dataset builder, ``bags info``, parity player):
        ``(connection, time ns, receive time ns, raw CDR, message)`` of ``connections`` (default:
        all), in storage order (not sorted by time).

        ``time`` is the message's header stamp when it has a non-zero one (a ``TFMessage``: its
        newest transform's), else the bag's receive time: the time the dataset aligns by and the
        parity player picks each tick's messages by. Each connection's decoder is looked up on
        its first message (:meth:`decoder`). A topic without a decoder, or a message that does
        not decode, is a :class:`BagError` naming bag and topic; with ``undecodable`` a dict, the
        exception is stored there instead (``{connection id: exception}``, the first one) and
        that connection's messages, this one included, are yielded with message None at their
        receive time. Once every message is read, the counts are checked against
        ``metadata.yaml`` (:meth:`check_counts`, warnings in :attr:`warnings`)."""
        from robot_training.interface.converters import stamp_ns  # noqa: PLC0415 - the storage reader alone needs none
        from robot_training.recording.typestore import DecodeError  # noqa: PLC0415

        conns = self.connections
        decoders: Dict[int, Any] = {}  # id -> decode function, or False: not decodable
        counts = dict.fromkeys((c.id for c in (conns if connections is None else connections)), 0)
        for batch in self.batches(connections):
            for cid, t_recv, raw in batch:
                decode = decoders.get(cid)
                if decode is None:
                    try:
                        decode = decoders[cid] = self.decoder(conns[cid], raw)
                    except DecodeError as exc:
                        if undecodable is None:
                            raise BagError(f'{self.path}: topic {conns[cid].topic}: {exc}') from None
                        undecodable[cid] = exc
                        decode = decoders[cid] = False
                counts[cid] += 1
                if decode is False:
                    yield conns[cid], t_recv, t_recv, raw, None
                    continue
                try:
                    msg = decode(raw)
                except Exception as exc:  # noqa: BLE001 - struct.error, ValueError, ... from the decoder
                    if undecodable is None:
                        raise BagError(f'{self.path}: message on {conns[cid].topic} at {t_recv} ns does not decode '
                                       f'as {conns[cid].msgtype} ({type(exc).__name__}: {exc})') from None
                    undecodable[cid], decoders[cid] = exc, False
                    yield conns[cid], t_recv, t_recv, raw, None
                    continue
                stamp = stamp_ns(msg)
                yield conns[cid], t_recv if stamp is None else stamp, t_recv, raw, msg
        self.check_counts(counts)

    def decoder(self, conn: Connection, sample: bytes):
        """The function decoding ``conn``'s messages (see :class:`~robot_training.recording.typestore.TypeCatalog`);
        raises ``DecodeError``."""
        from robot_training.recording.typestore import CATALOG, DecodeError  # noqa: PLC0415

        if conn.serialization != 'cdr':
            raise DecodeError(f'serialization format {conn.serialization!r} is not CDR')
        fn, source = CATALOG.decoder(conn.msgtype, sample, conn.msgdef, self.distro, conn.digest)
        if conn.msgdef[1] and source != "the bag's definition":
            self.warnings.append(f"{self.path}: {conn.topic}: its messages do not decode with the bag's own "
                                 f'definition of {conn.msgtype}; read with {source}')
        return fn

    def check_counts(self, counts: Dict[int, int]) -> List[str]:
        """One warning per connection whose count read differs from metadata.yaml's ``message_count``."""
        out = [f'{self.path}: {c.topic}: metadata.yaml says {c.declared} messages, the storage files hold {counts[c.id]}'
               for c in self.connections if c.id in counts and c.declared is not None and c.declared != counts[c.id]]
        self.warnings += out
        return out

    def close(self) -> None:
        for f in self._files:
            try:
                f.close()
            except Exception:  # noqa: BLE001 - closing a half-open file
                pass
        self._files = []
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> 'BagReader':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_reader(bag) -> BagReader:
    """An open :class:`BagReader`; every failure is one :class:`BagError` line naming the file."""
    try:
        return BagReader(bag)
    except BagError:
        raise
    except OSError as exc:
        raise BagError(f'{bag}: not a readable rosbag2 bag ({exc.strerror or exc})') from None
