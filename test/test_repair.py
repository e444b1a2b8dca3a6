"""repair_bag on real damaged bags: a SIGKILLed writer, torn copies, empty and foreign files."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from mcap.records import Chunk
from mcap.stream_reader import StreamReader
from rosbags.rosbag2 import Reader

from robot_training.recording import (
    DatasetRecorder,
    RecorderConfig,
    RecordingTypestore,
    RepairError,
    incomplete_episodes,
    list_episode_dirs,
    read_sidecar,
    repair_bag,
)

SRC = str(Path(__file__).resolve().parents[1] / 'src')

WRITER = textwrap.dedent('''
    import sys, time
    sys.path.insert(0, SRC)
    from robot_training.recording import DatasetRecorder, RecorderConfig, RecordingTypestore
    ts = RecordingTypestore()
    Float = ts.store.types['std_msgs/msg/Float64']
    ev = ts.store.types['robot_training_msgs/msg/EpisodeEvent']
    hdr = ts.store.types['std_msgs/msg/Header']
    tm = ts.store.types['builtin_interfaces/msg/Time']
    rec = DatasetRecorder(RecorderConfig(dataset_dir=DATASET, storage=STORAGE, flush_period_s=0.2))
    rec.start()
    def value(v):
        return bytes(ts.store.serialize_cdr(Float(data=float(v)), 'std_msgs/msg/Float64'))
    for ep in range(3):
        n = 200 if ep < 2 else 10**9
        for i in range(n):
            rec.write('/obs', 'std_msgs/msg/Float64', value(ep * 10**6 + i), time.time_ns())
            if ep == 2:
                if i % 100 == 0:
                    print(i, flush=True)
                time.sleep(0.001)
        end = ev(header=hdr(stamp=tm(sec=0, nanosec=0), frame_id=''), episode_id=ep, event=1,
                 episode_return=1.0, length=n, success=True, reason='terminated')
        rec.write('/episode_event', 'robot_training_msgs/msg/EpisodeEvent',
                  bytes(ts.store.serialize_cdr(end, 'robot_training_msgs/msg/EpisodeEvent')),
                  time.time_ns())
''')


def obs_values(bag: Path) -> list[float]:
    ts = RecordingTypestore()
    with Reader(bag) as reader:
        return [ts.store.deserialize_cdr(raw, c.msgtype).data
                for c, _, raw in reader.messages() if c.topic == '/obs']


def kill_writer_mid_episode(dataset: Path, storage: str, min_written: int = 1500) -> int:
    code = f'SRC = {SRC!r}\nDATASET = {str(dataset)!r}\nSTORAGE = {storage!r}\n' + WRITER
    proc = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, text=True)
    last = -1
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            last = int(line)
            if last >= min_written:
                break
    finally:
        _kill(proc)
    assert last >= min_written, 'writer did not get far enough'
    return last


def _kill(proc) -> None:
    """SIGKILL the writer (wherever it is) and reap it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_sigkill_mid_episode_finished_intact_partial_repaired(tmp_path, storage):
    dataset = tmp_path / 'ds'
    written = kill_writer_mid_episode(dataset, storage)
    dirs = list_episode_dirs(dataset)
    assert [d.name for d in dirs] == ['episode_000001', 'episode_000002', 'episode_000003']
    for ep, d in enumerate(dirs[:2]):  # finished before the kill: message for message
        assert obs_values(d) == [float(ep * 10**6 + i) for i in range(200)]
        assert read_sidecar(d)['status'] == 'complete'
    assert incomplete_episodes(dataset) == [dirs[2]]
    assert read_sidecar(dirs[2])['status'] == 'recording'
    with pytest.raises(Exception):
        with Reader(dirs[2]) as reader:
            list(reader.messages())

    report = repair_bag(dirs[2])
    assert report.status == 'repaired' and report.partial
    values = obs_values(dirs[2])
    # a gap-free prefix of what was sent ...
    assert values == [float(2 * 10**6 + i) for i in range(len(values))]
    # ... missing at most the last flush period (0.2 s at ~1 kHz, plus scheduling slack)
    print(f"{storage}: killed after >= {written} messages, recovered {len(values)}")
    assert len(values) >= written - 600, (len(values), written)
    assert report.message_counts['/obs'] == len(values)
    side = read_sidecar(dirs[2])
    assert side['status'] == 'repaired' and side['partial'] is True
    assert Path(report.kept_original).is_file()
    assert incomplete_episodes(dataset) == []
    # repairing again changes nothing
    again = repair_bag(dirs[2])
    assert again.status == 'intact' and again.total_messages == report.total_messages


def make_bag(tmp_path: Path, n: int = 3000) -> Path:
    ts = RecordingTypestore()
    Float = ts.store.types['std_msgs/msg/Float64']
    rec = DatasetRecorder(RecorderConfig(dataset_dir=str(tmp_path / 'src_ds'), flush_period_s=0.0))
    rec.start()
    for i in range(n):
        raw = bytes(ts.store.serialize_cdr(Float(data=float(i)), 'std_msgs/msg/Float64'))
        rec.write('/obs', 'std_msgs/msg/Float64', raw, 10**9 + i * 10**6)
        if i % 100 == 99:
            rec.flush()
    rec.stop()
    return list_episode_dirs(tmp_path / 'src_ds')[0]


def test_truncated_copies_give_a_prefix(tmp_path):
    bag = make_bag(tmp_path)
    data = (bag / f'{bag.name}.mcap').read_bytes()
    seen = []
    for frac in (0.3, 0.55, 0.8, 0.97):
        cut = tmp_path / f'cut{int(frac * 100)}' / bag.name
        cut.mkdir(parents=True)
        (cut / f'{bag.name}.mcap').write_bytes(data[:int(len(data) * frac)])
        report = repair_bag(cut)
        values = obs_values(cut)
        assert values == [float(i) for i in range(len(values))]
        assert report.partial and report.bytes_unusable > 0
        seen.append(len(values))
    # the summary section is large: late cuts lose only the summary, not messages
    assert seen == sorted(seen) and 0 < seen[0] < 3000 and seen[-1] <= 3000


def test_intact_bag_is_left_alone(tmp_path):
    bag = make_bag(tmp_path, 50)
    before = {p.name: p.stat().st_mtime_ns for p in bag.iterdir()}
    report = repair_bag(bag)
    assert report.status == 'intact' and not report.partial
    assert report.message_counts == {'/obs': 50}
    assert {p.name: p.stat().st_mtime_ns for p in bag.iterdir()} == before


def test_missing_metadata_only_is_rebuilt_complete(tmp_path):
    bag = make_bag(tmp_path, 50)
    (bag / 'metadata.yaml').unlink()
    report = repair_bag(bag)
    assert report.status == 'repaired' and not report.partial
    assert obs_values(bag) == [float(i) for i in range(50)]


def bag_with_file(tmp_path: Path, content: bytes, name: str = 'bad') -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / f'{name}.mcap').write_bytes(content)
    return d


def test_clear_errors_for_unrepairable_input(tmp_path):
    with pytest.raises(RepairError, match='no such file'):
        repair_bag(tmp_path / 'nope')
    (tmp_path / 'emptydir').mkdir()
    with pytest.raises(RepairError, match='no .mcap or .db3'):
        repair_bag(tmp_path / 'emptydir')
    with pytest.raises(RepairError, match='not an MCAP or sqlite3'):
        repair_bag(bag_with_file(tmp_path, b'hello, this is a text file\n' * 10, 'foreign'))
    with pytest.raises(RepairError, match='inside the MCAP magic'):
        repair_bag(bag_with_file(tmp_path, b'\x89MCA', 'magic'))
    # nothing was changed by a refused repair
    for name in ('foreign', 'magic'):
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == [f'{name}.mcap']
    assert not any(p.name.startswith('.') for p in tmp_path.iterdir())


@pytest.mark.parametrize('cut', [0, 40])
def test_writer_killed_before_its_first_message_leaves_an_empty_readable_bag(tmp_path, cut):
    """An empty file (killed before the MCAP header) or the header alone (killed before the
    first flush): nothing was recorded, so repair rebuilds the bag empty, keeps the bytes, and
    the dataset no longer lists it as needing repair."""
    bag = make_bag(tmp_path, 10)
    content = (bag / f'{bag.name}.mcap').read_bytes()[:cut]
    (tmp_path / 'ds').mkdir()
    d = bag_with_file(tmp_path / 'ds', content, 'episode_000000')
    assert incomplete_episodes(tmp_path / 'ds') == [d]
    report = repair_bag(d)
    assert report.status == 'repaired' and report.partial and report.total_messages == 0
    assert 'before' in report.stop_reason
    with Reader(d) as reader:
        assert list(reader.messages()) == []
    assert (d / 'episode_000000.mcap.damaged').read_bytes() == content
    assert incomplete_episodes(tmp_path / 'ds') == []
    assert read_sidecar(d)['status'] == 'repaired' and read_sidecar(d)['message_count'] == 0
    assert repair_bag(d).status == 'intact'


def _texts(n: int) -> list[str]:
    import numpy as np

    rng = np.random.default_rng(0)
    return [f'{i:06d} ' + rng.bytes(60).hex() for i in range(n)]  # barely compressible: a large chunk


def one_chunk_bag_by_rosbags(folder: Path, texts: list[str]) -> Path:
    """A bag written by rosbags' own MCAP writer (zstd), all of it in one chunk."""
    from rosbags.rosbag2 import Writer
    from rosbags.rosbag2.enums import CompressionFormat, CompressionMode, StoragePlugin
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    String = store.types['std_msgs/msg/String']
    writer = Writer(folder, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    writer.open()
    conn = writer.add_connection('/text', 'std_msgs/msg/String', typestore=store)
    for i, text in enumerate(texts):
        writer.write(conn, 10**9 + i * 10**6, bytes(store.serialize_cdr(String(data=text), 'std_msgs/msg/String')))
    writer.close()
    return folder / f'{folder.name}.mcap'


def one_chunk_bag_by_mcap(folder: Path, texts: list[str]) -> Path:
    """The same with the mcap library's writer and lz4 chunks (rosbags writes zstd only)."""
    from mcap.writer import CompressionType, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    String = store.types['std_msgs/msg/String']
    folder.mkdir(parents=True)
    path = folder / f'{folder.name}.mcap'
    with open(path, 'wb') as f:
        writer = Writer(f, chunk_size=10**8, compression=CompressionType.LZ4)
        writer.start(profile='ros2', library='test')
        schema = writer.register_schema('std_msgs/msg/String', 'ros2msg', b'string data')
        channel = writer.register_channel('/text', 'cdr', schema)
        for i, text in enumerate(texts):
            raw = bytes(store.serialize_cdr(String(data=text), 'std_msgs/msg/String'))
            writer.add_message(channel, log_time=10**9 + i * 10**6, data=raw, publish_time=10**9 + i * 10**6)
        writer.finish()
    return path


@pytest.mark.parametrize('compression', ['zstd', 'lz4'])
def test_cut_inside_the_only_chunk_recovers_the_messages_before_the_cut(tmp_path, compression):
    """Truncated at 50 %, the file ends inside its one chunk: the part of the chunk's compressed
    stream on disk is decoded as a stream and the complete messages in it are kept, in order,
    byte for byte."""
    from rosbags.typesys import Stores, get_typestore

    texts = _texts(2000)
    make = one_chunk_bag_by_rosbags if compression == 'zstd' else one_chunk_bag_by_mcap
    original = make(tmp_path / 'whole' / 'ep', texts)
    data = original.read_bytes()
    chunks = [r for r in StreamReader(io.BytesIO(data), emit_chunks=True).records if isinstance(r, Chunk)]
    assert len(chunks) == 1 and chunks[0].compression == compression
    cut = tmp_path / 'cut' / 'ep'
    cut.mkdir(parents=True)
    (cut / 'ep.mcap').write_bytes(data[:len(data) // 2])

    report = repair_bag(cut)
    assert report.status == 'repaired' and report.partial
    assert f'cut inside a {compression} chunk' in report.stop_reason, report.stop_reason
    store = get_typestore(Stores.ROS2_KILTED)
    with Reader(cut) as reader:
        back = [store.deserialize_cdr(raw, c.msgtype).data for c, _, raw in reader.messages()]
    assert 100 < len(back) < len(texts), len(back)
    assert back == texts[:len(back)]
    assert report.message_counts == {'/text': len(back)}
    assert (cut / 'ep.mcap.damaged').read_bytes() == data[:len(data) // 2]


SQLITE_WRITER = textwrap.dedent('''
    import sys
    sys.path.insert(0, SRC)
    from rosbags.rosbag2 import Writer
    from rosbags.rosbag2.enums import StoragePlugin
    from robot_training.recording import RecordingTypestore
    ts = RecordingTypestore()
    String = ts.store.types['std_msgs/msg/String']
    msgdef, rihs01 = ts.msgdef('std_msgs/msg/String')
    writer = Writer(BAG, version=9, storage_plugin=StoragePlugin.SQLITE3)
    writer.open()
    conn = writer.storage.conn
    if MODE == 'wal':      # rosbag2's resilient preset; no automatic checkpoint: all of it stays in the -wal
        conn.commit()
        conn.execute('PRAGMA journal_mode=WAL')
        conn.execute('PRAGMA wal_autocheckpoint=0')
    else:                  # the default rollback journal, with a cache so small that pages spill mid-transaction
        conn.execute('PRAGMA cache_size=2')
    c = writer.add_connection('/text', 'std_msgs/msg/String', msgdef=msgdef, rihs01=rihs01)
    i = 0
    while True:
        for _ in range(50):
            raw = bytes(ts.store.serialize_cdr(String(data=f'{i:08d}' + 'x' * 2000), 'std_msgs/msg/String'))
            writer.write(c, 10**9 + i, raw)
            i += 1
        if i <= COMMIT_UNTIL:
            conn.commit()
            print(i, flush=True)        # rows 0 .. i-1 are committed
        elif i >= COMMIT_UNTIL + 500:  # an open transaction of 500 rows, some of its pages on disk
            print('open', flush=True)
            import time
            time.sleep(60)
''')


def text_values(bag: Path) -> list[str]:
    ts = RecordingTypestore()
    with Reader(bag) as reader:
        return [ts.store.deserialize_cdr(raw, c.msgtype).data[:8] for c, _, raw in reader.messages()]


def kill_sqlite_writer(bag: Path, mode: str, commit_until: int = 1000) -> int:
    code = f'SRC = {SRC!r}\nBAG = {str(bag)!r}\nMODE = {mode!r}\nCOMMIT_UNTIL = {commit_until}\n' + SQLITE_WRITER
    proc = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, text=True)
    committed = 0
    try:
        for line in proc.stdout:
            if line.strip() == 'open':
                break
            committed = int(line)
    finally:
        _kill(proc)
    return committed


@pytest.mark.parametrize('mode,side', [('wal', '-wal'), ('journal', '-journal')])
def test_sqlite3_writer_killed_with_wal_or_hot_journal_keeps_every_committed_row(tmp_path, mode, side):
    """A rosbag2 sqlite3 writer SIGKILLed inside a transaction, in WAL mode (the committed rows
    live only in the -wal) and in rollback-journal mode (pages of the open transaction already
    in the database, the hot -journal to undo them): repair keeps exactly the committed rows,
    in order, and leaves the original files untouched beside the rebuilt bag."""
    import hashlib

    bag = tmp_path / 'ep'
    committed = kill_sqlite_writer(bag, mode)
    assert committed == 1000
    db, side_file = bag / 'ep.db3', bag / f'ep.db3{side}'
    assert side_file.is_file() and side_file.stat().st_size > 0, sorted(p.name for p in bag.iterdir())
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (db, side_file)}

    report = repair_bag(bag)
    assert report.status == 'repaired' and report.storage == 'sqlite3' and report.partial
    assert text_values(bag) == [f'{i:08d}' for i in range(committed)]
    assert report.message_counts == {'/text': committed}
    assert ('write-ahead log' if mode == 'wal' else 'rolled back') in report.stop_reason
    # the original bytes, journal / WAL included, are kept as they were found
    for name, digest in digests.items():
        kept = bag / f'{name}.damaged'
        assert hashlib.sha256(kept.read_bytes()).hexdigest() == digest, name
    assert not side_file.exists() and not list(bag.glob('.repair-sqlite-*'))
    assert repair_bag(bag).status == 'intact'


def test_sqlite3_malformed_pages_keep_the_rows_that_read(tmp_path):
    """A database damaged in the middle (a writer without a journal, a bad copy): the rows on
    readable pages are kept in order, the unreadable ones counted."""
    bag = tmp_path / 'ep'
    committed = kill_sqlite_writer(bag, 'journal', commit_until=1500)
    repair_bag(bag)  # a clean, whole database of 1500 rows to damage
    for p in bag.glob('*.damaged'):
        p.unlink()
    (bag / 'metadata.yaml').unlink()
    db = bag / 'ep.db3'
    data = bytearray(db.read_bytes())
    page = 4096
    middle = (len(data) // page) // 2
    for k in range(middle, middle + 3):  # three leaf pages of the messages table
        data[k * page:(k + 1) * page] = b'\xff' * page
    db.write_bytes(bytes(data))

    report = repair_bag(bag)
    values = text_values(bag)
    assert 0 < len(values) < committed
    assert values == sorted(values) and set(values) <= {f'{i:08d}' for i in range(committed)}
    assert 'unreadable' in report.stop_reason, report.stop_reason
