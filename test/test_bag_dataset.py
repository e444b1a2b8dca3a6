"""Bags on disk (written by rosbags, MCAP and sqlite3) → trajectories."""

import os
import shutil
import time

import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from robot_training.data.bag_dataset import (
    BagError,
    find_bags,
    load_bag_dataset,
    write_synthetic_bag,
)
from robot_training.interface.description import InterfaceError, interface_from_dict

BASE = {
    "name": "test",
    "control_rate_hz": 100,
    "max_staleness_s": 0.015,
    "observations": [{"name": "joints", "topic": "/joint_states", "type": "sensor_msgs/msg/JointState",
                      "joint_names": ["slider", "hinge"], "fields": ["position", "velocity"]}],
    "action": {"topic": "/cmd", "type": "std_msgs/msg/Float64MultiArray", "size": 1},
    "reward": {"topic": "/reward", "type": "std_msgs/msg/Float64"},
    "episodes": {"topic": "/episode_event", "terminal_reasons": ["terminated"]},
}


def desc(**changes):
    d = yaml.safe_load(yaml.safe_dump(BASE))
    d.update(changes)
    return interface_from_dict(d, source="<test>")


def expected_obs(k):
    k = np.asarray(k, dtype=np.float64)
    return (np.stack([k, -k, k, 2 * k], axis=-1) * 1e-3).astype(np.float32)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_to_trajectories_exact(tmp_path, storage):
    bag = write_synthetic_bag(tmp_path / storage, storage=storage, steps=40, episodes=2)
    trajs = load_bag_dataset(bag, desc(), cache=False)
    assert [t.episode_id for t in trajs] == [f"{storage}/episode_0", f"{storage}/episode_1"]
    for t, first in zip(trajs, (0, 20)):
        ks = np.arange(first, first + 19)  # 20 ticks -> 19 steps + final observation
        assert len(t) == 19
        np.testing.assert_allclose(t.observations, expected_obs(ks), atol=1e-7)
        np.testing.assert_array_equal(t.actions[:, 0], ks)       # command sent 1 ms after the state
        np.testing.assert_array_equal(t.rewards, np.ones(19))    # one 1.0 per control period
        np.testing.assert_allclose(t.final_observation, expected_obs(first + 19), atol=1e-7)
        assert t.terminals[-1] and not t.terminals[:-1].any() and not t.truncations.any()
        np.testing.assert_allclose(np.diff(t.timestamps), 0.01)
        assert t.info["staleness_s"].max() < 0.015


def test_lower_control_rate_sums_rewards_and_takes_latest(tmp_path):
    bag = write_synthetic_bag(tmp_path / "b", steps=40, episodes=0)
    (t,) = load_bag_dataset(bag, desc(control_rate_hz=25, max_staleness_s=0.05, episodes={"source": "bag"}), cache=False)
    assert len(t) == 9  # ticks at states 0, 4, ..., 36
    np.testing.assert_allclose(t.observations, expected_obs(np.arange(0, 36, 4)), atol=1e-7)
    np.testing.assert_array_equal(t.actions[:, 0], np.arange(3, 36, 4))  # the latest before the next tick
    np.testing.assert_array_equal(t.rewards, np.full(9, 4.0))
    assert t.truncations[-1] and not t.terminals.any()  # the bag just ends
    assert t.episode_id == "b"


def test_staleness_split_and_flag(tmp_path):
    bag = write_synthetic_bag(tmp_path / "gap", steps=60, episodes=0, gap=(20, 30))
    d = desc(episodes={"source": "bag"})
    pieces = load_bag_dataset(bag, d, cache=False)
    assert [p.episode_id for p in pieces] == ["gap#0", "gap#1"]
    assert pieces[0].truncations[-1] and pieces[1].truncations[-1]
    assert pieces[0].timestamps[-1] < pieces[1].timestamps[0] - 0.1
    # tick 20 (state 19 is 10 ms old) is fresh enough; ticks 21..29 (20 ms and more) are stale
    np.testing.assert_allclose(pieces[0].final_observation, expected_obs(19), atol=1e-7)
    np.testing.assert_allclose(pieces[1].observations[0], expected_obs(30), atol=1e-7)
    (flagged,) = load_bag_dataset(bag, d, stale="flag", cache=False)
    assert len(flagged) == 59
    stale = flagged.info["stale"]
    assert stale.sum() == 9 and stale[21:30].all()
    np.testing.assert_allclose(flagged.info["staleness_s"][25], 0.06, atol=1e-6)


def test_one_mcap_file_and_folder_of_bags(tmp_path):
    a = write_synthetic_bag(tmp_path / "data" / "a", steps=12, episodes=1)
    write_synthetic_bag(tmp_path / "data" / "b", storage="sqlite3", steps=12, episodes=1)
    assert find_bags(tmp_path / "data") == [tmp_path / "data" / "a", tmp_path / "data" / "b"]
    both = load_bag_dataset(tmp_path / "data", desc(), cache=False)
    assert [t.episode_id for t in both] == ["a/episode_0", "b/episode_0"]
    (mcap_file,) = list(a.glob("*.mcap"))
    (single,) = load_bag_dataset(mcap_file, desc(), cache=False)
    np.testing.assert_array_equal(single.observations, both[0].observations)
    loose = tmp_path / "loose"
    loose.mkdir()
    shutil.copy(mcap_file, loose / "recording_a.mcap")  # a standalone file from another tool
    (copy,) = load_bag_dataset(loose, desc(), cache=False)
    assert copy.episode_id == "recording_a/episode_0"
    np.testing.assert_array_equal(copy.actions, both[0].actions)


def test_reward_function_and_image_free_dict_obs(tmp_path):
    bag = write_synthetic_bag(tmp_path / "b", steps=30, episodes=0)
    d = desc(reward={"function": "pole_upright", "params": {"stream": "joints", "index": 1, "threshold": 0.0105}},
             episodes={"source": "bag"})
    (t,) = load_bag_dataset(bag, d, cache=False)
    # hinge angle of the next state is -(k+1) mrad: upright while k + 1 <= 10
    np.testing.assert_array_equal(t.rewards, (np.arange(29) + 1 <= 10).astype(np.float32))


def test_cache_is_faster_identical_and_invalidated(tmp_path):
    bag = write_synthetic_bag(tmp_path / "b", steps=3000, episodes=3)
    cache = tmp_path / "cache"
    t0 = time.perf_counter()
    first = load_bag_dataset(bag, desc(), cache_dir=cache)
    t_first = time.perf_counter() - t0
    assert len(list(cache.iterdir())) == 1
    t0 = time.perf_counter()
    second = load_bag_dataset(bag, desc(), cache_dir=cache)
    t_second = time.perf_counter() - t0
    assert t_second * 3 < t_first, (t_first, t_second)
    assert [t.episode_id for t in first] == [t.episode_id for t in second]
    for a, b in zip(first, second):
        for name in ("observations", "actions", "rewards", "terminals", "truncations", "timestamps", "final_observation"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        np.testing.assert_array_equal(a.info["staleness_s"], b.info["staleness_s"])
    assert not second[0].observations.flags.owndata  # a view of the memory-mapped .npy file
    # another description or other options: another entry; a changed bag: another entry
    load_bag_dataset(bag, desc(max_staleness_s=0.02), cache_dir=cache)
    assert len(list(cache.iterdir())) == 2
    meta = bag / "metadata.yaml"
    os.utime(meta, ns=(time.time_ns(), time.time_ns() + 10**9))
    (bag / "metadata.yaml").write_text(meta.read_text() + "\n")
    load_bag_dataset(bag, desc(), cache_dir=cache)
    assert len(list(cache.iterdir())) == 3


# ----------------------------------------------------------------------------- bad input


def test_description_names_missing_topic_or_wrong_type(tmp_path):
    bag = write_synthetic_bag(tmp_path / "b", steps=5, episodes=1)
    d = desc(observations=[{"name": "imu", "topic": "/imu", "type": "sensor_msgs/msg/Imu"}])
    with pytest.raises(BagError, match=r"no topic /imu in the bag.*topics in the bag: /cmd \(std_msgs/msg/Float64MultiArray\)"):
        load_bag_dataset(bag, d, cache=False)
    d = desc(observations=[{"name": "j", "topic": "/joint_states", "type": "nav_msgs/msg/Odometry"}])
    with pytest.raises(BagError, match="topic /joint_states is sensor_msgs/msg/JointState in the bag, the interface"):
        load_bag_dataset(bag, d, cache=False)
    d = desc(observations=[{"name": "j", "topic": "/joint_states", "type": "sensor_msgs/msg/JointState",
                            "joint_names": ["slider", "elbow"]}])
    with pytest.raises(BagError, match=r"/joint_states \(stream 'j'\).*joint\(s\) \['elbow'\] not in the message"):
        load_bag_dataset(bag, d, cache=False)


def test_truncated_empty_and_foreign_bags(tmp_path):
    bag = write_synthetic_bag(tmp_path / "t", steps=200, episodes=1)
    (f,) = list(bag.glob("*.mcap"))
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(BagError, match=r"t/t.mcap: not a readable rosbag2 bag.*footer.*bags repair"):
        load_bag_dataset(bag, desc(), cache=False)

    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match="no rosbag2 bags found"):
        load_bag_dataset(tmp_path / "empty", desc(), cache=False)
    (tmp_path / "zero.mcap").write_bytes(b"")
    with pytest.raises(BagError, match="zero.mcap: not a readable rosbag2 bag"):
        load_bag_dataset(tmp_path / "zero.mcap", desc(), cache=False)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(BagError, match="notes.txt: not a rosbag2 bag"):
        load_bag_dataset(tmp_path / "notes.txt", desc(), cache=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "metadata.yaml").write_text("just: text\n")
    with pytest.raises(BagError, match="foreign: not a readable rosbag2 bag"):
        load_bag_dataset(foreign, desc(), cache=False)
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / "killed_0.mcap").write_bytes(b"\x89MCAP0\r\n")
    with pytest.raises(BagError, match="no metadata.yaml.*bags repair"):
        load_bag_dataset(killed, desc(), cache=False)
    with pytest.raises(BagError, match="no such file"):
        load_bag_dataset(tmp_path / "missing", desc(), cache=False)


def test_a_dataset_with_unusable_episodes_loads_the_rest_unless_strict(tmp_path):
    """An episode whose recorder was killed: the other episodes load and the bad one is reported
    in one line; bags that lack the action topic (recorded before the actor's first command) are
    skipped the same way; strict refuses the dataset."""
    data = tmp_path / "ds"
    for i in range(4):
        write_synthetic_bag(data / f"episode_00000{i + 1}", steps=50, episodes=1)
    killed = data / "episode_000005"
    killed.mkdir()
    (killed / "episode_000005_0.mcap").write_bytes(b"\x89MCAP0\r\n")
    without_cmd = dict(BASE, action=dict(BASE["action"], topic="/other_cmd"))
    skipped = []
    good = load_bag_dataset(data, desc(), cache=False, strict=False, skipped=skipped)
    assert len(good) == 4 and not skipped[1:]  # the killed bag only
    assert "episode_000005" in skipped[0][1] and "bags repair" in skipped[0][1]
    skipped = []
    with pytest.raises(BagError, match="no usable bag"):
        load_bag_dataset(data, interface_from_dict(without_cmd), cache=False, strict=False, skipped=skipped)
    assert len(skipped) == 5 and all("/other_cmd" in r or "bags repair" in r for _, r in skipped)
    with pytest.raises(BagError, match="no metadata.yaml"):
        load_bag_dataset(data, desc(), cache=False)  # strict (the API default)


def test_bag_with_types_only_it_defines(tmp_path):
    """A bag from another tool with a custom type: its definition comes from the bag itself."""
    store = get_typestore(Stores.ROS2_KILTED)
    store.register(get_types_from_msg("std_msgs/Header header\nfloat64 value\nfloat64[3] vec\n", "other_pkg/msg/Sample"))
    Sample = store.types["other_pkg/msg/Sample"]
    Header = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    Cmd = store.types["std_msgs/msg/Float32"]
    path = tmp_path / "other"
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        cs = w.add_connection("/sample", "other_pkg/msg/Sample", typestore=store)
        cc = w.add_connection("/cmd", "std_msgs/msg/Float32", typestore=store)
        for k in range(10):
            t = 5_000_000_000 + k * 100_000_000
            msg = Sample(Header(Time(5 + k // 10, (k % 10) * 100_000_000), "base"), float(k), np.array([k, k, k], float))
            w.write(cs, t, store.serialize_cdr(msg, "other_pkg/msg/Sample"))
            w.write(cc, t + 1000, store.serialize_cdr(Cmd(float(-k)), "std_msgs/msg/Float32"))
    d = interface_from_dict({
        "control_rate_hz": 10,
        "observations": [{"name": "s", "topic": "/sample", "type": "other_pkg/msg/Sample", "fields": ["value", "vec"], "size": 4}],
        "action": {"topic": "/cmd", "type": "std_msgs/msg/Float32"},
    })
    (t,) = load_bag_dataset(path, d, cache=False)
    np.testing.assert_array_equal(t.observations[:, 0], np.arange(9))
    np.testing.assert_array_equal(t.observations[:, 1:], np.repeat(np.arange(9)[:, None], 3, axis=1))
    np.testing.assert_array_equal(t.actions[:, 0], -np.arange(9))
    assert not t.rewards.any()


def test_interface_stored_with_the_bags(tmp_path):
    data = tmp_path / "dataset"
    bag = write_synthetic_bag(data / "episode_000001", steps=10, episodes=1)
    with pytest.raises(InterfaceError, match="no interface description given and none stored"):
        load_bag_dataset(data, cache=False)
    d = desc()
    (data / "interface.yaml").write_text(d.to_yaml())
    (t,) = load_bag_dataset(data, cache=False)
    assert len(t) == 9
    (bag / "episode.yaml").write_text(yaml.safe_dump({"status": "complete", "interface_fingerprint": "0" * 64}))
    with pytest.raises(BagError, match="recorded with interface fingerprint 000000000000"):
        load_bag_dataset(data, cache=False)
    (bag / "episode.yaml").write_text(yaml.safe_dump({"status": "complete", "interface_fingerprint": d.fingerprint}))
    assert len(load_bag_dataset(data, cache=False)) == 1
    shutil.rmtree(bag)
    with pytest.raises(BagError, match="no rosbag2 bags found"):
        load_bag_dataset(data, d, cache=False)


def test_bags_of_the_project_recorder(tmp_path):
    """Episodes recorded by robot_training.recording load with the description they were recorded for."""
    from robot_training.data.bag_dataset import make_typestore
    from robot_training.interface.converters import rosbags_message_factory, set_stamp
    from robot_training.interface.description import load_interface
    from robot_training.recording import DatasetRecorder, RecorderConfig

    pendulum = load_interface(os.path.join(os.path.dirname(__file__), "..", "config", "interface_inverted_pendulum.yaml"))
    rec = DatasetRecorder(RecorderConfig(dataset_dir=str(tmp_path / "ds"), interface_fingerprint=pendulum.fingerprint,
                                         interface_yaml=pendulum.to_yaml()))
    for topic, msgtype in pendulum.streams():
        rec.add_topic(topic, msgtype)
    rec.start()
    ts = make_typestore()
    types = dict(pendulum.streams())
    msgs = {t: rosbags_message_factory(ts, m)() for t, m in types.items()}
    msgs["/joint_states"].name = ["hinge", "slider"]
    msgs["/reward"].data = 1.0

    def write(topic, t, stamped):
        rec.write(topic, types[topic], ts.serialize_cdr(msgs[topic], types[topic]), t, t if stamped else None)

    dt = 40_000_000
    for ep in range(2):
        base = 10**12 + ep * 100 * dt
        ev = msgs["/episode_event"]
        set_stamp(ev, base - 1)
        ev.event, ev.episode_id, ev.reason = 0, ep, ""
        write("/episode_event", base - 1, True)
        for k in range(30):
            t = base + k * dt
            js = msgs["/joint_states"]
            set_stamp(js, t)
            js.position = np.array([0.5, k * 0.01])
            js.velocity = np.zeros(2)
            write("/joint_states", t, True)
            msgs["/cmd"].data = np.array([k * 0.1])
            write("/cmd", t + 1000, False)
            write("/reward", t + 2000, False)
        set_stamp(ev, base + 30 * dt)
        ev.event, ev.reason = 1, "terminated"
        write("/episode_event", base + 30 * dt, True)
    rec.close()
    trajs = load_bag_dataset(tmp_path / "ds", pendulum, cache=False)
    assert [t.episode_id for t in trajs] == ["episode_000001/episode_0", "episode_000002/episode_1"]
    for t in trajs:
        assert len(t) == 29 and t.terminals[-1]
        np.testing.assert_allclose(t.observations[:, 0], np.arange(29) * 0.01, atol=1e-6)  # slider first
        np.testing.assert_allclose(t.actions[:, 0], np.arange(29) * 0.1, atol=1e-6)  # recorded, not clipped
        np.testing.assert_array_equal(t.rewards, np.ones(29))
    # the recorder stored the description with the dataset: it loads without naming it
    stored = load_bag_dataset(tmp_path / "ds", cache=False)
    assert [t.episode_id for t in stored] == [t.episode_id for t in trajs]
    for a, b in zip(trajs, stored):
        np.testing.assert_array_equal(a.observations, b.observations)
    # and refuses to mix episodes of another description into that dataset
    from robot_training.recording import RecordingError

    other = pendulum.to_yaml().replace("control_rate_hz: 25.0", "control_rate_hz: 50.0")
    assert other != pendulum.to_yaml()
    with pytest.raises(RecordingError, match="another interface description"):
        DatasetRecorder(RecorderConfig(dataset_dir=str(tmp_path / "ds"), interface_yaml=other))
