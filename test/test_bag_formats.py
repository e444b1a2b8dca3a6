"""Bags of other writers read exactly: every storage file, schema, metadata version, compression
and QoS string as ``ros2 bag record`` (Foxy to Kilted) leaves them, written here on disk with
rosbags, or with sqlite3 and an edited metadata.yaml where rosbags cannot write the format."""

import shutil
import sqlite3

import numpy as np
import pytest
import yaml
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode
from rosbags.typesys import Stores, get_typestore

from robot_training.bags import main
from robot_training.data.bag_dataset import BagError, BagWarning, find_bags, load_bag_dataset, make_typestore
from robot_training.interface.converters import rosbags_message_factory, set_stamp
from robot_training.interface.description import interface_from_dict
from robot_training.data.trajectory import load_trajectories, save_trajectories
from robot_training.recording import repair_bag
from robot_training.recording.typestore import generate_decoder

START = 1_700_000_000_123_456_789  # float64 seconds cannot hold this exactly
DT = 10_000_000
JS, CMD, RANGE = "sensor_msgs/msg/JointState", "std_msgs/msg/Float64MultiArray", "sensor_msgs/msg/Range"
DESC = interface_from_dict({
    "name": "formats", "control_rate_hz": 100, "max_staleness_s": 0.015,
    "observations": [{"name": "joints", "topic": "/joint_states", "type": JS, "joint_names": ["a", "b"],
                      "fields": ["position"]}],
    "action": {"topic": "/cmd", "type": CMD, "size": 1},
    "episodes": {"source": "bag"},
})
QOS = Qos(QosHistory.KEEP_LAST, 10, QosReliability.RELIABLE, QosDurability.VOLATILE, QosTime(0, 0),
          QosTime(0, 0), QosLiveliness.AUTOMATIC, QosTime(0, 0), False)
OTHER_QOS = [{"history": "keep_last", "depth": 1, "reliability": "best_effort", "durability": "transient_local",
              "deadline": {"sec": 9223372036, "nsec": 854775807}, "lifespan": {"sec": 9223372036, "nsec": 854775807},
              "liveliness": "automatic", "liveliness_lease_duration": {"sec": 9223372036, "nsec": 854775807},
              "avoid_ros_namespace_conventions": False}]
HUMBLE_QOS = ("- history: 3\n  depth: 0\n  reliability: 1\n  durability: 2\n  deadline:\n    sec: 9223372036\n"
              "    nsec: 854775807\n  lifespan:\n    sec: 9223372036\n    nsec: 854775807\n  liveliness: 1\n"
              "  liveliness_lease_duration:\n    sec: 9223372036\n    nsec: 854775807\n"
              "  avoid_ros_namespace_conventions: false")


def write_bag(path, storage="mcap", steps=20, first=0, compression=None, ranges=False, store=None, reverse=False):
    """Joint states (header stamps START + k DT, position [k, -k]) and commands [k] 1 ms later;
    ``ranges``: also ``/range`` Range messages (range k) with ``store``'s Range definition."""
    store = store or make_typestore()
    w = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3)
    if compression:
        w.set_compression(CompressionMode[compression.upper()], CompressionFormat.ZSTD)
    js, cmd = rosbags_message_factory(store, JS)(), rosbags_message_factory(store, CMD)()
    js.name = ["b", "a"]
    rng = rosbags_message_factory(store, RANGE)() if ranges else None
    with w:
        topics = [("/cmd", CMD), ("/joint_states", JS)] if reverse else [("/joint_states", JS), ("/cmd", CMD)]
        conns = {t: w.add_connection(t, m, typestore=store, offered_qos_profiles=[QOS]) for t, m in topics}
        if ranges:
            conns["/range"] = w.add_connection("/range", RANGE, typestore=store)
        for k in range(first, first + steps):
            t = START + k * DT
            set_stamp(js, t)
            js.position, js.velocity, js.effort = np.array([-k, k], float), np.zeros(2), np.zeros(2)
            w.write(conns["/joint_states"], t + 100, store.serialize_cdr(js, JS))
            cmd.data = np.array([float(k)])
            w.write(conns["/cmd"], t + 1_000_000, store.serialize_cdr(cmd, CMD))
            if ranges:
                set_stamp(rng, t)
                rng.range = float(k)
                w.write(conns["/range"], t + 200, store.serialize_cdr(rng, RANGE))
    return path


def check_steps(trajs, steps=20, first=0):
    (t,) = trajs
    k = np.arange(first, first + steps - 1)
    assert len(t) == steps - 1
    np.testing.assert_array_equal(t.observations, np.stack([k, -k], axis=1))
    np.testing.assert_array_equal(t.actions[:, 0], k)
    np.testing.assert_array_equal(t.timestamps_ns, START + k * DT)


def meta(bag):
    return yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]


def write_meta(bag, info):
    (bag / "metadata.yaml").write_text(yaml.safe_dump({"rosbag2_bagfile_information": info}))


def downgrade(bag, version):
    """The bag's metadata.yaml as rosbag2 of that version wrote it."""
    info = meta(bag)
    info["version"] = version
    for t in info["topics_with_message_count"]:
        tm = t["topic_metadata"]
        tm["offered_qos_profiles"] = OTHER_QOS if version >= 9 else HUMBLE_QOS
        if version < 7:
            tm.pop("type_description_hash", None)
    if version < 8:
        info.pop("ros_distro", None)
    if version < 6:
        info.pop("custom_data", None)
    if version < 5:
        info.pop("files", None)
        info["relative_file_paths"] = [f"{bag.name}/{p}" for p in info["relative_file_paths"]]
    write_meta(bag, info)


def info_of(capsys, path):
    capsys.readouterr()
    rc = main(["info", str(path)])
    out, err = capsys.readouterr()
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("  /")}
    return rc, out, err, rows


# ----------------------------------------------------------------------------- 1: silent loss


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_qos_strings_that_differ_from_the_storage_lose_no_message(tmp_path, storage, capsys):
    bag = write_bag(tmp_path / "run", storage)
    info = meta(bag)
    for t in info["topics_with_message_count"]:
        t["topic_metadata"]["offered_qos_profiles"] = OTHER_QOS  # the storage holds QOS
    write_meta(bag, info)
    check_steps(load_bag_dataset(bag, DESC, cache=False))
    rc, out, err, rows = info_of(capsys, bag)
    assert rc == 0 and rows["/joint_states"][2] == "20" and rows["/cmd"][2] == "20" and "warning" not in out
    assert main(["export", str(bag), "--interface", _desc_file(tmp_path), "-o", str(tmp_path / "o.npz"),
                 "--no-cache"]) == 0
    check_steps(load_trajectories(tmp_path / "o.npz"))
    assert repair_bag(bag).message_counts == {"/joint_states": 20, "/cmd": 20}


def _desc_file(tmp_path):
    path = tmp_path / "desc.yaml"
    path.write_text(DESC.to_yaml())
    return str(path)


def test_a_count_that_disagrees_with_metadata_warns_naming_bag_and_topic(tmp_path, capsys):
    bag = write_bag(tmp_path / "run", "sqlite3")
    info = meta(bag)
    info["topics_with_message_count"][1]["message_count"] = 25
    write_meta(bag, info)
    expected = f"{bag}: /cmd: metadata.yaml says 25 messages, the storage files hold 20"
    with pytest.warns(BagWarning, match="/cmd: metadata.yaml says 25") as caught:
        check_steps(load_bag_dataset(bag, DESC, cache=False))
    assert [str(w.message) for w in caught if issubclass(w.category, BagWarning)] == [expected]
    rc, out, _, rows = info_of(capsys, bag)
    assert rc == 0 and rows["/cmd"][2] == "20"
    assert [line for line in out.splitlines() if "warning" in line] == [f"  warning: {expected}"]


# ----------------------------------------------------------------------------- 2: old sqlite3 schemas


def old_sqlite(src_bag, dst_dir, schema, distro="humble", meta_version=None, extra_topics=()):
    """The rows of ``src_bag``'s database in an sqlite3 schema of rosbag2 (1: Foxy's first, 2: with
    offered_qos_profiles, 3: Humble's with a schema table, 4: Iron's, without message_definitions)."""
    src = sqlite3.connect(next(src_bag.glob("*.db3")))
    topics = [list(r) + [HUMBLE_QOS, ""] for r in src.execute("SELECT id, name, type, serialization_format FROM topics")]
    msgs = list(src.execute("SELECT topic_id, timestamp, data FROM messages ORDER BY id"))
    src.close()
    for i, (name, msgtype, rows) in enumerate(extra_topics, start=len(topics) + 1):
        topics.append([i, name, msgtype, "cdr", HUMBLE_QOS, ""])
        msgs += [(i, t, data) for t, data in rows]
    dst_dir.mkdir(parents=True)
    db = dst_dir / f"{dst_dir.name}_0.db3"
    cols = ["id INTEGER PRIMARY KEY", "name TEXT", "type TEXT", "serialization_format TEXT"]
    cols += ["offered_qos_profiles TEXT"] * (schema >= 2) + ["type_description_hash TEXT"] * (schema >= 4)
    conn = sqlite3.connect(db)
    conn.execute(f"CREATE TABLE topics({', '.join(cols)})")
    conn.execute("CREATE TABLE messages(id INTEGER PRIMARY KEY, topic_id INTEGER, timestamp INTEGER, data BLOB)")
    if schema >= 3:
        conn.execute("CREATE TABLE schema(schema_version INTEGER PRIMARY KEY, ros_distro TEXT NOT NULL)")
        conn.execute("INSERT INTO schema VALUES (?, ?)", (schema, distro))
    conn.executemany(f"INSERT INTO topics VALUES ({', '.join('?' * len(cols))})", [t[:len(cols)] for t in topics])
    conn.executemany("INSERT INTO messages (topic_id, timestamp, data) VALUES (?, ?, ?)", msgs)
    conn.commit()
    conn.close()
    if meta_version is not None:
        ts = sorted(m[1] for m in msgs)
        write_meta(dst_dir, {
            "version": meta_version, "storage_identifier": "sqlite3", "relative_file_paths": [db.name],
            "duration": {"nanoseconds": ts[-1] - ts[0]}, "starting_time": {"nanoseconds_since_epoch": ts[0]},
            "message_count": len(msgs), "compression_format": "", "compression_mode": "",
            "topics_with_message_count": [
                {"topic_metadata": {"name": n, "type": m, "serialization_format": "cdr", "offered_qos_profiles": HUMBLE_QOS},
                 "message_count": sum(1 for x in msgs if x[0] == i)} for i, n, m, *_ in topics]})
    return dst_dir


@pytest.mark.parametrize("schema,version", [(1, 4), (2, 4), (3, 5), (4, 8)])
def test_old_sqlite3_schemas_without_message_definitions(tmp_path, schema, version, capsys):
    bag = old_sqlite(write_bag(tmp_path / "src", "sqlite3"), tmp_path / "old", schema, meta_version=version)
    check_steps(load_bag_dataset(bag, DESC, cache=False))
    rc, out, err, rows = info_of(capsys, bag)
    assert rc == 0 and "repair" not in out + err and rows["/joint_states"][2] == "20" and rows["/joint_states"][6] == "header"
    report = repair_bag(bag)
    assert report.status == "intact" and report.message_counts == {"/joint_states": 20, "/cmd": 20}


def test_humble_bag_without_metadata_reads_directly_and_repairs(tmp_path, capsys):
    """A Humble sqlite3 bag (no message_definitions) holding a Range of before ``variance``, as a
    lone .db3 and as a folder without metadata.yaml; repair writes Humble's Range definition."""
    src = write_bag(tmp_path / "src", "sqlite3", ranges=True, store=get_typestore(Stores.ROS2_HUMBLE))
    bag = old_sqlite(src, tmp_path / "humble", 3)
    (db,) = bag.glob("*.db3")
    assert find_bags(bag) == [bag] and find_bags(db) == [db]
    with_range = interface_from_dict(dict(DESC.to_dict(), observations=[
        *DESC.to_dict()["observations"], {"name": "range", "topic": "/range", "type": RANGE, "fields": ["range"]}]))
    for path in (bag, db):
        (t,) = load_bag_dataset(path, with_range, cache=False)
        np.testing.assert_array_equal(t.observations[:, 2], np.arange(19))
        rc, out, err, rows = info_of(capsys, path)
        assert rc == 0 and rows["/range"][2] == "20" and rows["/range"][6] == "header" and "warning" not in out
    report = repair_bag(bag)
    assert report.status == "repaired" and report.message_counts == {"/joint_states": 20, "/cmd": 20, "/range": 20}
    assert (bag / "humble_0.db3.damaged").read_bytes()[:16] == b"SQLite format 3\x00"  # the original, kept
    (t,) = load_bag_dataset(bag, with_range, cache=False)
    np.testing.assert_array_equal(t.observations[:, 2], np.arange(19))
    conn = sqlite3.connect(bag / "humble.db3")
    (text,) = conn.execute("SELECT encoded_message_definition FROM message_definitions WHERE topic_type = ?",
                           (RANGE,)).fetchone()
    assert "float32 range" in text and "variance" not in text


# ----------------------------------------------------------------------------- 3: the bag's definitions


def test_the_bags_own_definition_wins_over_a_newer_one(tmp_path, capsys):
    bag = write_bag(tmp_path / "old_range", ranges=True, store=get_typestore(Stores.ROS2_HUMBLE))
    d = interface_from_dict({"control_rate_hz": 100, "max_staleness_s": 0.015, "episodes": {"source": "bag"},
                             "observations": [{"name": "r", "topic": "/range", "type": RANGE, "fields": ["range", "max_range"]}],
                             "action": {"topic": "/cmd", "type": CMD, "size": 1}})
    (t,) = load_bag_dataset(bag, d, cache=False)
    np.testing.assert_array_equal(t.observations[:, 0], np.arange(19))
    rc, out, err, rows = info_of(capsys, bag)
    assert rc == 0 and rows["/range"][2] == "20" and rows["/range"][6] == "header" and "warning" not in out


def test_a_topic_that_does_not_decode_does_not_abort_info(tmp_path, capsys):
    bag = old_sqlite(write_bag(tmp_path / "src", "sqlite3"), tmp_path / "mixed", 3, meta_version=5, extra_topics=[
        ("/mystery", "other_pkg/msg/Mystery", [(START, b"\x00\x01\x00\x00abcd")]),
        ("/broken", RANGE, [(START + k, b"\x00\x01\x00\x00\x01\x02\x03") for k in range(3)])])
    rc, out, err, rows = info_of(capsys, bag)
    assert rc == 0 and rows["/joint_states"][2] == "20" and rows["/joint_states"][6] == "header"
    assert rows["/broken"][2] == "3" and rows["/mystery"][2] == "1" and rows["/broken"][6] == "receive"
    notes = [line for line in out.splitlines() if "not decodable" in line]
    assert len(notes) == 2
    assert f"{bag}: /mystery (other_pkg/msg/Mystery) not decodable: no definition of other_pkg/msg/Mystery" in notes[0] + notes[1]
    assert any(f"{bag}: /broken ({RANGE}) not decodable: messages do not decode as {RANGE}" in n for n in notes)
    check_steps(load_bag_dataset(bag, DESC, cache=False))  # the other topics load


# ----------------------------------------------------------------------------- 4: one-line errors


def test_errors_are_one_line_naming_the_file_and_suggest_repair_only_where_it_helps(tmp_path, capsys):
    damaged = write_bag(tmp_path / "damaged", "sqlite3", steps=300)
    (db,) = damaged.glob("*.db3")
    raw = bytearray(db.read_bytes())
    raw[-3 * 4096:-3 * 4096 + 64] = b"\xff" * 64  # a page of message rows
    db.write_bytes(bytes(raw))
    bad_yaml = write_bag(tmp_path / "bad_yaml")
    (bad_yaml / "metadata.yaml").write_text("rosbag2_bagfile_information:\n  version: 9\n   storage: [\n")
    truncated = write_bag(tmp_path / "truncated", steps=200)
    (f,) = truncated.glob("*.mcap")
    f.write_bytes(f.read_bytes()[:3000])
    (tmp_path / "random.mcap").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "random.db3").write_bytes(b"hello, not a database" * 10)
    missing = write_bag(tmp_path / "missing")
    info = meta(missing)
    info["relative_file_paths"].append("missing_1.mcap")
    write_meta(missing, info)
    cases = [(damaged, db, "database disk image is malformed", True),
             (bad_yaml, bad_yaml / "metadata.yaml", "not a valid metadata.yaml (line 3", False),
             (truncated, f, "ends without its footer", True),
             (tmp_path / "random.mcap", tmp_path / "random.mcap", "neither an MCAP nor an SQLite file", False),
             (tmp_path / "random.db3", tmp_path / "random.db3", "neither an MCAP nor an SQLite file", False),
             (missing, missing, "metadata.yaml lists missing_1.mcap, which is not in the folder", False)]
    for path, named, why, repairable in cases:
        rc, out, err, _ = info_of(capsys, path)
        assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err, (path, err)
        assert err.startswith(f"bags info: error: {named}: ") and why in err, err
        assert ("bags repair" in err) == repairable, err
        with pytest.raises(BagError) as exc:
            load_bag_dataset(path, DESC, cache=False)
        assert str(exc.value) == err.removeprefix("bags info: error: ").strip()
    assert repair_bag(damaged).status == "repaired"  # the hint was right: the readable rows are back
    assert main(["info", str(damaged)]) == 0


# ----------------------------------------------------------------------------- 5: nanoseconds


def test_nanosecond_stamps_survive_exactly(tmp_path):
    bag = write_bag(tmp_path / "ns")
    (t,) = load_bag_dataset(bag, DESC, cache_dir=tmp_path / "cache")
    assert t.timestamps_ns.dtype == np.int64 and t.timestamps_ns[0] == START
    assert float(t.timestamps_ns[0]) / 1e9 * 1e9 != START  # what float seconds would have lost
    (cached,) = load_bag_dataset(bag, DESC, cache_dir=tmp_path / "cache")
    assert not cached.timestamps_ns.flags.owndata  # memory-mapped from the cache
    np.testing.assert_array_equal(cached.timestamps_ns, START + np.arange(19) * DT)
    (saved,) = load_trajectories(save_trajectories(tmp_path / "t.npz", [t]))
    np.testing.assert_array_equal(saved.timestamps_ns, t.timestamps_ns)
    np.testing.assert_allclose(saved.timestamps, (START + np.arange(19) * DT) / 1e9)
    assert saved.slice(3, 5).timestamps_ns.tolist() == [START + 3 * DT, START + 4 * DT]


# ----------------------------------------------------------------------------- 6: formats


def test_split_bag_reads_every_file_whatever_the_topic_ids(tmp_path, capsys):
    a = write_bag(tmp_path / "a", steps=12)
    b = write_bag(tmp_path / "b", steps=8, first=12, reverse=True)  # /cmd is channel 1 in this part
    bag = tmp_path / "split"
    bag.mkdir()
    shutil.copy(a / "a.mcap", bag / "split_0.mcap")
    shutil.copy(b / "b.mcap", bag / "split_1.mcap")
    info = meta(a)
    info["relative_file_paths"] = ["split_0.mcap", "split_1.mcap"]
    for t in info["topics_with_message_count"]:
        t["message_count"] = 20
    write_meta(bag, info)
    check_steps(load_bag_dataset(bag, DESC, cache=False))
    rc, out, _, rows = info_of(capsys, bag)
    assert rc == 0 and rows["/joint_states"][2] == rows["/cmd"][2] == "20" and "warning" not in out
    assert repair_bag(bag).status == "intact"


@pytest.mark.parametrize("storage,mode", [("mcap", "file"), ("sqlite3", "file"), ("mcap", "message"),
                                          ("sqlite3", "message"), ("mcap", "storage")])
def test_compressed_bags(tmp_path, storage, mode, capsys):
    bag = write_bag(tmp_path / "z", storage, compression=mode)
    m = meta(bag)
    assert m["compression_mode"].lower() == (mode if mode != "storage" else "")
    if mode == "file":
        assert all(p.endswith(".zstd") for p in m["relative_file_paths"])
    check_steps(load_bag_dataset(bag, DESC, cache=False))
    rc, out, _, rows = info_of(capsys, bag)
    assert rc == 0 and rows["/joint_states"][2] == "20" and rows["/joint_states"][6] == "header"


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bags_without_metadata_named_directly_and_as_a_folder(tmp_path, storage, capsys):
    src = write_bag(tmp_path / "src", storage)
    (f,) = [p for p in src.iterdir() if p.name != "metadata.yaml"]
    folder = tmp_path / "copied"
    folder.mkdir()
    shutil.copy(f, folder / f"copied{f.suffix}")
    for path in (f, folder):
        assert find_bags(path) == [path]
        check_steps(load_bag_dataset(path, DESC, cache=False))
        rc, out, err, rows = info_of(capsys, path)
        assert rc == 0 and rows["/cmd"][2] == "20" and "repair" not in out + err


@pytest.mark.parametrize("version", [4, 5, 6, 7, 8, 9])
@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_metadata_versions_4_to_9(tmp_path, version, storage, capsys):
    bag = write_bag(tmp_path / "v", storage)
    downgrade(bag, version)
    check_steps(load_bag_dataset(bag, DESC, cache=False))
    rc, out, err, rows = info_of(capsys, bag)
    assert rc == 0 and rows["/joint_states"][2] == "20" and "warning" not in out


# ----------------------------------------------------------------------------- decoders


def test_generated_decoders_equal_rosbags_deserialization():
    """Filled messages of nested, sequence, array and string-heavy types, both byte orders."""
    from robot_training.recording.typestore import _referenced_names

    store = make_typestore()
    rng = np.random.default_rng(0)

    def value(desc):
        kind, rest = desc
        if kind == 1:  # base
            name = rest[0]
            if name == "string":
                return "x" * int(rng.integers(0, 6))
            if name == "bool":
                return bool(rng.integers(0, 2))
            return float(np.float32(rng.normal())) if name.startswith("float") else int(rng.integers(0, 100))
        if kind == 2:
            return build(rest)
        sub, n = rest
        n = int(rng.integers(0, 4)) if kind == 4 else n
        if sub[0] == 1 and sub[1][0] != "string":
            dt = {"bool": np.bool_, "byte": np.int8, "char": np.uint8}.get(sub[1][0], sub[1][0])
            return np.array([value(sub) for _ in range(n)], dtype=dt)
        return [value(sub) for _ in range(n)]

    def build(name):
        return store.types[name](**{f: value(d) for f, d in store.fielddefs[name][1]})

    def same(a, b):
        if hasattr(a, "__dataclass_fields__"):
            assert b.__msgtype__ == a.__msgtype__
            for f in a.__dataclass_fields__:
                same(getattr(a, f), getattr(b, f))
        elif isinstance(a, list):
            assert len(a) == len(b)
            for x, y in zip(a, b):
                same(x, y)
        elif isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and np.array_equal(a, b)
        else:
            assert type(a) is type(b) and a == b

    for name in ("sensor_msgs/msg/JointState", "sensor_msgs/msg/Imu", "nav_msgs/msg/Odometry", "tf2_msgs/msg/TFMessage",
                 "diagnostic_msgs/msg/DiagnosticArray", RANGE, "sensor_msgs/msg/PointCloud2",
                 "robot_training_msgs/msg/EpisodeEvent", "std_msgs/msg/Empty"):
        defs, todo = {}, [name]
        while todo:
            n = todo.pop()
            defs[n] = store.fielddefs[n]
            todo += [r for _, d in defs[n][1] for r in _referenced_names(d) if r not in defs]
        decode = generate_decoder(name, defs)
        for _ in range(5):
            msg = build(name)
            for little in (True, False):
                raw = bytes(store.serialize_cdr(msg, name, little_endian=little))
                same(store.deserialize_cdr(raw, name), decode(raw))
                with pytest.raises(Exception):
                    decode(raw[:-4] if len(raw) > 8 else raw + b"\x00" * 8)


def test_a_definition_with_a_field_name_that_is_not_an_identifier_is_refused():
    """Decoders are generated source: a bag's definition can reach it only as identifiers."""
    from rosbags.typesys.base import Nodetype

    from robot_training.recording.typestore import DecodeError, generate_decoder

    good = {'x_msgs/msg/Y': ([], [('value', (Nodetype.BASE, ('int32', 0)))])}
    assert generate_decoder('x_msgs/msg/Y', good)(b'\x00\x01\x00\x00' + (7).to_bytes(4, 'little')).value == 7
    evil = {'x_msgs/msg/Y': ([], [('a=__import__("os").system("false")#', (Nodetype.BASE, ('int32', 0)))])}
    with pytest.raises(DecodeError, match='not an identifier'):
        generate_decoder('x_msgs/msg/Y', evil)
