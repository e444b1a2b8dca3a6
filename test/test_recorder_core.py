"""Recorder core (plain Python, real files): episodes, splitting, metadata, counts, errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from mcap.reader import make_reader
from rosbags.rosbag2 import Reader

from robot_training.recording import (
    DatasetRecorder,
    RecorderConfig,
    RecordingError,
    RecordingTypestore,
    list_episode_dirs,
    read_sidecar,
)

EVENT = 'robot_training_msgs/msg/EpisodeEvent'
SRC = str(Path(__file__).resolve().parents[1] / 'src')


@pytest.fixture(scope='module')
def ts() -> RecordingTypestore:
    return RecordingTypestore()


def float_raw(ts, value: float) -> bytes:
    Float = ts.store.types['std_msgs/msg/Float64']
    return bytes(ts.store.serialize_cdr(Float(data=value), 'std_msgs/msg/Float64'))


def imu_raw(ts, stamp_ns: int) -> bytes:
    t = ts.store.types
    Time, Header = t['builtin_interfaces/msg/Time'], t['std_msgs/msg/Header']
    Quat, Vec = t['geometry_msgs/msg/Quaternion'], t['geometry_msgs/msg/Vector3']
    import numpy as np
    msg = t['sensor_msgs/msg/Imu'](
        header=Header(stamp=Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id='imu'),
        orientation=Quat(x=0.0, y=0.0, z=0.0, w=1.0),
        orientation_covariance=np.zeros(9), angular_velocity=Vec(x=0.0, y=0.0, z=0.0),
        angular_velocity_covariance=np.zeros(9), linear_acceleration=Vec(x=0.0, y=0.0, z=9.8),
        linear_acceleration_covariance=np.zeros(9))
    return bytes(ts.store.serialize_cdr(msg, 'sensor_msgs/msg/Imu'))


def event_raw(ts, episode_id: int, event: int, ret: float = 0.0, length: int = 0,
              success: bool = False, reason: str = '', stamp: int = 0) -> bytes:
    t = ts.store.types
    sec, nanosec = divmod(stamp, 10**9)
    msg = t[EVENT](header=t['std_msgs/msg/Header'](stamp=t['builtin_interfaces/msg/Time'](sec=sec, nanosec=nanosec),
                                                    frame_id=''),
                   episode_id=episode_id, event=event, episode_return=ret, length=length,
                   success=success, reason=reason)
    return bytes(ts.store.serialize_cdr(msg, EVENT))


def read_values(ts, bag: Path) -> dict:
    out: dict = {}
    with Reader(bag) as reader:
        for conn, t, raw in reader.messages():
            if conn.msgtype == 'std_msgs/msg/Float64':
                out.setdefault(conn.topic, []).append(ts.store.deserialize_cdr(raw, conn.msgtype).data)
            else:
                out.setdefault(conn.topic, []).append(raw)
    return out


def test_episodes_split_on_events_with_metadata(tmp_path, ts):
    rec = DatasetRecorder(RecorderConfig(dataset_dir=str(tmp_path / 'ds'),
                                         interface_fingerprint='ab' * 32))
    rec.start()
    t = 1_000_000_000
    sent = []
    for ep in range(3):
        values = [ep * 1000.0 + i for i in range(50)]
        sent.append(values)
        if ep == 1:
            rec.write('/episode_event', EVENT, event_raw(ts, 11, 0), t)
        for v in values:
            assert rec.write('/obs', 'std_msgs/msg/Float64', float_raw(ts, v), t)
            t += 10_000_000
        kind = 2 if ep == 2 else 1
        rec.write('/episode_event', EVENT,
                  event_raw(ts, 10 + ep, kind, ret=ep + 0.5, length=50, success=ep == 0,
                            reason='terminated'), t)
        t += 10_000_000  # the next episode starts after this one ended
    rec.stop()

    dirs = list_episode_dirs(tmp_path / 'ds')
    assert [d.name for d in dirs] == ['episode_000001', 'episode_000002', 'episode_000003']
    for ep, d in enumerate(dirs):
        assert read_values(ts, d)['/obs'] == sent[ep]
        side = read_sidecar(d)
        assert side['status'] == 'complete'
        assert side['episode_id'] == 10 + ep
        assert side['episode_return'] == ep + 0.5
        assert side['length'] == 50 and side['success'] == (ep == 0)
        assert side['end_cause'] == ('reset' if ep == 2 else 'end')
        assert side['interface_fingerprint'] == 'ab' * 32
        assert side['topics']['/obs']['received'] == 50
        assert side['topics']['/obs']['written'] == 50
        meta = yaml.safe_load((d / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
        custom = yaml.safe_load(meta['custom_data']['robot_training.episode'])
        assert custom['episode_id'] == 10 + ep and custom['interface_fingerprint'] == 'ab' * 32
        assert meta['storage_identifier'] == 'mcap'
    # the START of episode 2 is its first message, the END its last
    with Reader(dirs[1]) as reader:
        topics = [c.topic for c, _, _ in reader.messages()]
    assert topics[0] == '/episode_event' and topics[-1] == '/episode_event'
    assert len(topics) == 52


def test_bag_is_valid_mcap_with_schemas_and_counts(tmp_path, ts):
    rec = DatasetRecorder(RecorderConfig(dataset_dir=str(tmp_path)))
    rec.add_topic('/imu', 'sensor_msgs/msg/Imu')
    rec.start()
    for i in range(120):
        rec.write('/imu', 'sensor_msgs/msg/Imu', imu_raw(ts, 10**9 + i * 10**7), 10**9 + i * 10**7)
        rec.write('/obs', 'std_msgs/msg/Float64', float_raw(ts, i), 10**9 + i * 10**7)
    rec.stop()
    (bag,) = list_episode_dirs(tmp_path)
    with open(bag / f'{bag.name}.mcap', 'rb') as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        schemas = {s.name: s for s in summary.schemas.values()}
        assert set(schemas) == {'sensor_msgs/msg/Imu', 'std_msgs/msg/Float64'}
        assert all(s.encoding == 'ros2msg' for s in schemas.values())
        assert 'geometry_msgs/Quaternion' in schemas['sensor_msgs/msg/Imu'].data.decode()
        counts = {summary.channels[c].topic: n
                  for c, n in summary.statistics.channel_message_counts.items()}
        assert counts == {'/imu': 120, '/obs': 120}
        assert all(c.compression == 'zstd' for c in summary.chunk_indexes)
        n = sum(1 for _ in reader.iter_messages())
    assert n == 240
    # the decoded content round-trips through rosbags as well
    assert read_values(ts, bag)['/obs'] == [float(i) for i in range(120)]


def test_split_by_duration_size_and_service(tmp_path, ts):
    now = [0]
    rec = DatasetRecorder(RecorderConfig(dataset_dir=str(tmp_path), max_episode_duration_s=1.0,
                                         max_episode_size_mb=0.001), clock=lambda: now[0])
    rec.start()
    for i in range(300):  # 12-byte messages, 100 Hz: the 1 kB limit splits every 84
        now[0] = i * 10_000_000
        rec.write('/obs', 'std_msgs/msg/Float64', float_raw(ts, i), now[0])
    causes = [r['end_cause'] for r in rec.closed_episodes]
    assert causes == ['max_size'] * 3
    rec.config.max_episode_size_mb = 0.0
    for i in range(300, 450):
        now[0] = i * 10_000_000
        rec.write('/obs', 'std_msgs/msg/Float64', float_raw(ts, i), now[0])
    assert [r['end_cause'] for r in rec.closed_episodes][3:] == ['max_duration']
    rec.split()
    rec.write('/obs', 'std_msgs/msg/Float64', float_raw(ts, 450), now[0])
    rec.stop()
    assert [r['end_cause'] for r in rec.closed_episodes][4:] == ['split', 'stop']
    got = []
    for d in list_episode_dirs(tmp_path):
        got += read_values(ts, d)['/obs']
    assert got == [float(i) for i in range(451)]  # nothing lost across splits


def test_gap_detection_from_header_stamps(tmp_path, ts):
    rec = DatasetRecorder(RecorderConfig(dataset_dir=str(tmp_path)))
    rec.start()
    stamps = [i * 10_000_000 for i in range(100) if not (40 <= i < 45) and i != 70]
    for s in stamps:  # arrival times are regular: only the stamps reveal the gaps
        rec.write('/imu', 'sensor_msgs/msg/Imu', imu_raw(ts, 10**9 + s), 5 * 10**9, 10**9 + s)
    rec.stop()
    topic = rec.closed_episodes[0]['topics']['/imu']
    assert topic['gaps'] == 2
    assert topic['missing_estimate'] == 6
    assert topic['received'] == topic['written'] == len(stamps)
    assert topic['rate_hz'] == pytest.approx(100.0)


def test_sqlite3_storage(tmp_path, ts):
    rec = DatasetRecorder(RecorderConfig(dataset_dir=str(tmp_path), storage='sqlite3'))
    rec.start()
    for i in range(30):
        rec.write('/obs', 'std_msgs/msg/Float64', float_raw(ts, i), 10**9 + i)
    rec.stop()
    (bag,) = list_episode_dirs(tmp_path)
    assert (bag / f'{bag.name}.db3').is_file()
    assert read_values(ts, bag)['/obs'] == [float(i) for i in range(30)]


def test_messages_while_stopped_are_counted_not_written(tmp_path, ts):
    rec = DatasetRecorder(RecorderConfig(dataset_dir=str(tmp_path)))
    assert not rec.write('/obs', 'std_msgs/msg/Float64', float_raw(ts, 1), 1)
    assert rec.status()['topics']['/obs']['dropped'] == 1
    assert list_episode_dirs(tmp_path) == []


def test_unwritable_dataset_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / 'not_a_dir'
    blocker.write_text('x')
    with pytest.raises(RecordingError, match='not a directory|cannot create dataset folder'):
        DatasetRecorder(RecorderConfig(dataset_dir=str(blocker / 'dataset')))


def test_unknown_type_and_bad_names_are_refused(ts):
    from robot_training.recording import UnknownMessageType
    with pytest.raises(UnknownMessageType):
        ts.ensure('no_such_pkg/msg/Thing')
    with pytest.raises(UnknownMessageType):
        ts.ensure('../../etc/msg/passwd')


def test_disk_full_keeps_earlier_episodes(tmp_path, ts):
    """A real write failure (file size limit, EFBIG) mid-episode: clear error, bags 1-2 intact."""
    code = textwrap.dedent(f'''
        import resource, signal, sys
        sys.path.insert(0, {SRC!r})
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000))
        from robot_training.recording import DatasetRecorder, RecorderConfig, RecordingError
        rec = DatasetRecorder(RecorderConfig(dataset_dir={str(tmp_path)!r}, compression='none'))
        rec.start()
        payload = bytes(range(256)) * 200  # 51 kB, written as a uint8[] blob below
        import struct
        raw = b'\\x00\\x01\\x00\\x00' + b'\\x00' * 8 + struct.pack('<I', 0) + struct.pack('<I', len(payload)) + payload
        for ep in range(3):
            try:
                for i in range(6 if ep < 2 else 40):
                    rec.write('/blob', 'std_msgs/msg/UInt8MultiArray', raw, 10**9 + i)
                rec.split()
            except RecordingError as err:
                print('ERROR', err)
                sys.exit(3)
        print('NO ERROR')
    ''')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert 'file size limit' in proc.stdout and 'episode_000003' in proc.stdout
    dirs = list_episode_dirs(tmp_path)
    assert [d.name for d in dirs] == ['episode_000001', 'episode_000002', 'episode_000003']
    for d in dirs[:2]:
        with Reader(d) as reader:
            assert reader.message_count == 6
    assert not (dirs[2] / 'metadata.yaml').exists()
    assert read_sidecar(dirs[2])['status'] == 'failed'


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(RecordingError, match='storage must be one of'):
        DatasetRecorder(RecorderConfig(dataset_dir=str(tmp_path), storage='rosbag1'))
    with pytest.raises(RecordingError, match='max_episode_size_mb must be >= 0'):
        DatasetRecorder(RecorderConfig(dataset_dir=str(tmp_path), max_episode_size_mb=-1))


def test_messages_of_an_ended_episode_that_arrive_after_its_end_stay_in_its_bag(tmp_path, ts):
    """A simulator's last observation can overtake its END on the way to the recorder (DDS does
    not order topics): what is stamped at or before the END still goes into the ending bag; the
    first later message opens the next one; a quiet robot's bag closes after end_grace_s."""
    now = [0]
    rec = DatasetRecorder(RecorderConfig(dataset_dir=str(tmp_path / 'ds'), end_grace_s=0.5), clock=lambda: now[0])
    rec.start()
    t = 10**9
    for i in range(5):
        rec.write('/obs', 'std_msgs/msg/Float64', float_raw(ts, float(i)), t + i * 10**7)
    end_t = t + 4 * 10**7
    rec.write('/episode_event', EVENT, event_raw(ts, 1, 1, reason='terminated', stamp=end_t), end_t, end_t)
    assert not rec.closed_episodes  # ended, bag still open
    rec.write('/reward', 'std_msgs/msg/Float64', float_raw(ts, 1.0), end_t)  # late, same time
    rec.write('/obs', 'std_msgs/msg/Float64', float_raw(ts, 100.0), end_t + 10**7)  # next episode
    assert len(rec.closed_episodes) == 1
    rec.write('/episode_event', EVENT, event_raw(ts, 2, 1, reason='terminated', stamp=end_t + 2 * 10**7),
              end_t + 2 * 10**7, end_t + 2 * 10**7)
    rec.flush()
    assert len(rec.closed_episodes) == 1  # within the grace period
    now[0] += 6 * 10**8
    rec.flush()
    assert len(rec.closed_episodes) == 2
    first, second = list_episode_dirs(tmp_path / 'ds')
    assert read_values(ts, first)['/obs'] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert read_values(ts, first)['/reward'] == [1.0]
    assert read_values(ts, second)['/obs'] == [100.0]
    rec.stop()


def test_episode_boundaries_are_not_gaps_in_the_session_counters(tmp_path, ts):
    """A normal run: a simulator pauses 0.3 s between an END and its next episode, its last
    observation can arrive after the END, some resets come before the START is published. The
    session counters (what ~/status reports) count only the one real gap (5 lost messages in
    episode 2), on the header-stamped and on the receive-time topic alike."""
    now = [0]
    rec = DatasetRecorder(RecorderConfig(dataset_dir=str(tmp_path / 'ds')), clock=lambda: now[0])
    rec.start()
    period = 10_000_000
    t = 10**9
    for ep in range(4):
        stamps = [t + i * period for i in range(40)]
        if ep == 1:
            del stamps[20:25]  # a real gap: the only one
        if ep != 3:
            rec.write('/episode_event', EVENT, event_raw(ts, ep, 0, stamp=stamps[0]), stamps[0], stamps[0])
        for i, s in enumerate(stamps):
            late = ep == 2 and i == len(stamps) - 1  # overtaken by the END below
            if not late:
                rec.write('/imu', 'sensor_msgs/msg/Imu', imu_raw(ts, s), s + 10**6, s)
            rec.write('/cmd', 'std_msgs/msg/Float64', float_raw(ts, float(i)), s + 2 * 10**6)
        end = stamps[-1]
        rec.write('/episode_event', EVENT, event_raw(ts, ep, 1 if ep % 2 else 2, length=len(stamps), stamp=end),
                  end + 3 * 10**6, end)
        if ep == 2:
            rec.write('/imu', 'sensor_msgs/msg/Imu', imu_raw(ts, end), end + 4 * 10**6, end)
        if ep == 3:  # a quiet end: the bag closes after end_grace_s, then the robot resumes
            now[0] = 10**12
            rec.flush()
        t = end + 30 * period  # 0.3 s reset pause
        now[0] = 0 if ep < 3 else now[0]
    rec.write('/imu', 'sensor_msgs/msg/Imu', imu_raw(ts, t), t + 10**6, t)
    rec.write('/cmd', 'std_msgs/msg/Float64', float_raw(ts, 0.0), t + 2 * 10**6)
    status = rec.status()['topics']
    rec.stop()
    assert len(rec.closed_episodes) == 5
    assert status['/imu']['gaps'] == 1 and status['/imu']['missing_estimate'] == 5, status['/imu']
    assert status['/cmd']['gaps'] == 1 and status['/cmd']['missing_estimate'] == 5, status['/cmd']
    assert status['/imu']['rate_hz'] == pytest.approx(100.0) and status['/cmd']['rate_hz'] == pytest.approx(100.0)
    per_episode = [r['topics']['/imu']['gaps'] for r in rec.closed_episodes[:4]]
    assert per_episode == [0, 1, 0, 0]
    assert [r['topics']['/imu']['written'] for r in rec.closed_episodes[:4]] == [40, 35, 40, 40]


def test_reception_clock_maps_arrival_to_simulation_time():
    """A message is stamped with the simulation time in force when it *arrived*: a command
    received between the clock messages of 0.1 s and 0.2 s is at 0.1 s, however late the
    callback got to it; before the first clock message there is no such time."""
    from robot_training.recording.reception_clock import ReceptionClock

    clock = ReceptionClock(history=3)
    assert clock.at(5) is None
    for received, sim in ((100, 0), (200, 100_000_000), (300, 200_000_000)):
        clock.on_clock(received, sim)
    assert clock.at(250) == 100_000_000 and clock.at(300) == 200_000_000 and clock.at(10_000) == 200_000_000
    clock.on_clock(290, 300_000_000)  # reordered reception: kept sorted, never earlier than the last
    assert clock.at(300) == 300_000_000
    assert clock.at(150) is None  # older than the 3 kept
