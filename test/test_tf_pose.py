"""A pose chained from /tf and /tf_static: the frame tree, the TFMessage converter, bags and the runner."""

import math
import types

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer

from robot_training.data.bag_dataset import BagError, load_bag_dataset, make_typestore
from robot_training.interface.converters import (
    InterfaceError,
    NotReady,
    TFPoseConverter,
    rosbags_message_factory,
    set_stamp,
    stamp_ns,
)
from robot_training.interface.frames import FrameTree, make_transform, quat_multiply, quat_rotate
from robot_training.interface.description import interface_from_dict
from robot_training.deploy import PolicyRunner
from robot_training.envs.robot_messages import static_transforms

import geometry_msgs.msg

TF = "tf2_msgs/msg/TFMessage"
STORE = make_typestore()
S = math.sqrt(0.5)
YAW90 = (0.0, 0.0, S, S)
START = 1_000_000_000_000
MS = 1_000_000


def yaw_q(theta):
    return (0.0, 0.0, math.sin(theta / 2), math.cos(theta / 2))


def desc(parent="odom", child="base_link", fields=("pose",), **extra):
    pose = {"name": "pose", "topic": "/tf", "type": TF, "parent_frame": parent, "child_frame": child,
            "fields": list(fields), **extra}
    return interface_from_dict({
        "control_rate_hz": 20, "max_staleness_s": 0.2, "observations": [pose],
        "action": {"topic": "/cmd", "type": "std_msgs/msg/Float64MultiArray", "size": 1}})


def transform(parent, child, xyz, q=(0.0, 0.0, 0.0, 1.0), stamp=0):
    t = rosbags_message_factory(STORE, "geometry_msgs/msg/TransformStamped")()
    t.header.frame_id, t.child_frame_id = parent, child
    set_stamp(t, stamp)
    tr, r = t.transform.translation, t.transform.rotation
    tr.x, tr.y, tr.z = xyz
    r.x, r.y, r.z, r.w = q
    return t


def tf_message(*transforms):
    """A TFMessage as it comes out of a bag (serialized, then deserialized by rosbags)."""
    msg = rosbags_message_factory(STORE, TF)()
    msg.transforms = list(transforms)
    return STORE.deserialize_cdr(STORE.serialize_cdr(msg, TF), TF)


# ----------------------------------------------------------------------------- the chain


def test_static_and_dynamic_edges_chain_hand_checked():
    conv = desc(fields=("pose", "yaw")).observations[0].converter
    conv.observe(tf_message(transform("base_footprint", "base_link", (1.0, 0.0, 0.5))))  # static mount
    out = conv.to_array(tf_message(transform("odom", "base_footprint", (1.0, 2.0, 0.0), YAW90, stamp=5)))
    # 90° yaw, then 1 m ahead in the rotated frame: +1 in y; the mount's height is kept
    np.testing.assert_allclose(out, [1, 3, 0.5, 0, 0, S, S, math.pi / 2], atol=1e-6)
    conv.observe(tf_message(transform("base_footprint", "base_link", (1.0, 0.0, 0.5), YAW90)))
    out = conv.value()
    np.testing.assert_allclose(out, [1, 3, 0.5, 0, 0, 1, 0, math.pi], atol=1e-6)  # 90° + 90° = 180°, unit
    assert abs(np.linalg.norm(out[3:7]) - 1) < 1e-6


def test_inverted_edge_and_sibling_frames():
    tree = FrameTree()
    tree.set("odom", "base_link", 0, make_transform((1.0, 3.0, 0.5), YAW90))
    inv = tree.lookup("base_link", "odom")  # against the edge: -R^T t, conjugate quaternion
    np.testing.assert_allclose(inv.translation, [-3.0, 1.0, -0.5], atol=1e-12)
    np.testing.assert_allclose(inv.rotation, [0, 0, -S, S], atol=1e-12)
    conv = desc(parent="base_scan", child="camera_link", fields=("position",)).observations[0].converter
    conv.observe(tf_message(*static_transforms(
        lambda: rosbags_message_factory(STORE, "geometry_msgs/msg/TransformStamped")(), 0)))
    # both are children of base_link (the simulator's mounts): 0.18 ahead, 0.10 - 0.12 up
    np.testing.assert_allclose(conv.value(), [0.18, 0.0, -0.02], atol=1e-6)


def test_roll_then_yaw_and_two_rotated_branches():
    tree = FrameTree()
    tree.set("a", "b", 0, make_transform((0.0, 0.0, 0.0), (S, 0.0, 0.0, S)))  # roll 90°: y -> z
    tree.set("b", "c", 0, make_transform((0.0, 1.0, 0.0), YAW90))           # yaw 90°: x -> y
    c = tree.lookup("a", "c")
    np.testing.assert_allclose(c.translation, [0.0, 0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(c.rotation, [0.5, -0.5, 0.5, 0.5], atol=1e-12)  # c's x axis is a's z
    tree.set("a", "b2", 0, make_transform((0.0, 0.0, 0.0), (0.0, S, 0.0, S)))  # pitch 90°: x -> -z
    tree.set("b2", "c2", 0, make_transform((1.0, 0.0, 0.0), YAW90))
    c2 = tree.lookup("a", "c2")
    np.testing.assert_allclose(c2.translation, [0.0, 0.0, -1.0], atol=1e-12)
    np.testing.assert_allclose(c2.rotation, [0.5, 0.5, 0.5, 0.5], atol=1e-12)  # x -> y -> z -> x
    tree.set("r", "p", 0, make_transform((1.0, 0.0, 0.0), YAW90))  # p at (1, 0) facing +y
    tree.set("r", "q", 0, make_transform((0.0, 1.0, 0.0), (0, 0, 0, 1)))
    q = tree.lookup("p", "q")  # q is 1 m ahead of p and 1 m to its left, turned -90°
    np.testing.assert_allclose(q.translation, [1.0, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(q.rotation, [0, 0, -S, S], atol=1e-12)


def matrix(q):
    x, y, z, w = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def test_product_and_rotation_agree_with_rotation_matrices():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = (q / np.linalg.norm(q) for q in rng.normal(size=(2, 4)))
        v = rng.normal(size=3)
        np.testing.assert_allclose(matrix(quat_multiply(a, b)), matrix(a) @ matrix(b), atol=1e-12)
        np.testing.assert_allclose(quat_rotate(a, v), matrix(a) @ v, atol=1e-12)


def test_newest_stamp_wins_and_bad_transforms_are_skipped():
    conv = desc(child="base_footprint", fields=("position",)).observations[0].converter
    conv.observe(tf_message(transform("odom", "base_footprint", (2.0, 0.0, 0.0), stamp=20)))
    out = conv.to_array(tf_message(transform("odom", "base_footprint", (1.0, 0.0, 0.0), stamp=10)))
    np.testing.assert_allclose(out, [2.0, 0.0, 0.0])  # the late, older transform loses
    conv.reset()
    with pytest.raises(NotReady, match=r"frame 'base_footprint' is not finite or has a zero quaternion"):
        conv.to_array(tf_message(transform("odom", "base_footprint", (1.0, 0.0, 0.0), (0, 0, 0, 0))))


def test_missing_edge_names_both_sides():
    d = desc()
    conv = d.observations[0].converter
    conv.observe(tf_message(transform("odom", "base_footprint", (1.0, 0.0, 0.0))))
    conv.observe(tf_message(transform("base_link", "base_scan", (0.0, 0.0, 0.1))))
    with pytest.raises(NotReady, match=r"^stream 'pose': .*no chain odom → base_link: an edge is missing between "
                                       r"the frames of 'odom' \[base_footprint, odom\] and those of 'base_link' "
                                       r"\[base_link, base_scan\]$"):
        d.build_observation({"/tf": tf_message()})
    with pytest.raises(NotReady, match=r"no transform names frame 'map'"):
        desc(parent="map").build_observation({"/tf": tf_message(transform("odom", "base_link", (0, 0, 0)))})


def test_options_streams_and_errors():
    d = desc()
    assert type(d.observations[0].converter) is TFPoseConverter
    assert [tuple(s) for s in d.streams()] == [("/tf", TF), ("/tf_static", TF),
                                               ("/cmd", "std_msgs/msg/Float64MultiArray")]
    assert d.optional_topics == {"/tf_static"}
    assert d.observations[0].converter.options == {"parent_frame": "odom", "child_frame": "base_link",
                                                   "static_topic": "/tf_static", "fields": ["pose"]}
    none = desc(static_topic="")
    assert list(none.observers) == ["/tf"] and not none.optional_topics
    assert d.observation_shape == (7,) and desc(fields=("yaw",)).observation_shape == (1,)
    assert desc(parent="/odom").observations[0].converter.parent == "odom"
    for bad, pattern in [({"child": "odom"}, r"child_frame: is the parent_frame 'odom' itself"),
                         ({"static_topic": "tf_static"}, r"static_topic: expected another absolute topic"),
                         ({"static_topic": "/tf"}, r"static_topic: expected another absolute topic"),
                         ({"fields": ("euler",)}, r"fields\[0\]: 'euler' is not one of"),
                         ({"parent": ""}, r"parent_frame: expected a frame name")]:
        with pytest.raises(InterfaceError, match=pattern):
            desc(**bad)
    with pytest.raises(InterfaceError, match="cannot carry actions"):
        interface_from_dict({"control_rate_hz": 10, "observations": [desc().to_dict()["observations"][0]],
                             "action": {"topic": "/tf", "type": TF, "parent_frame": "a", "child_frame": "b"}})
    assert stamp_ns(tf_message(transform("a", "b", (0, 0, 0), stamp=7), transform("a", "c", (0, 0, 0), stamp=9))) == 9


# ----------------------------------------------------------------------------- bags and the runner

STATIC = (0.1, 0.0, 0.2)  # base_footprint -> base_link


def dynamic(k):
    """odom -> base_footprint at message k: x = 0.01 k m, yaw = 0.01 k rad."""
    return (0.01 * k, 0.0, 0.0), yaw_q(0.01 * k)


def expected_pose(k):
    (x, _, _), _ = dynamic(k)
    th = 0.01 * k
    return [x + 0.1 * math.cos(th), 0.1 * math.sin(th), 0.2, th]


def bag_messages(steps=60, static=True):
    """``[(topic, receive ns, msg)]``: /tf every 7 ms (stamped), a wheel edge in between, /cmd every 10 ms."""
    cmd = rosbags_message_factory(STORE, "std_msgs/msg/Float64MultiArray")()
    cmd.data = np.array([0.5])
    out = []
    if static:
        out.append(("/tf_static", START - MS, tf_message(transform("base_footprint", "base_link", STATIC))))
    for k in range(steps):
        t = START + k * 7 * MS
        xyz, q = dynamic(k)
        # odom arrives 10 ms late: after the next message's wheel edge (storage order is not stamp order)
        out.append(("/tf", t + 10 * MS, tf_message(transform("odom", "base_footprint", xyz, q, stamp=t))))
        out.append(("/tf", t + 2 * MS, tf_message(transform("base_link", "wheel", (0, 0.2, 0), yaw_q(k), stamp=t + 3 * MS))))
    for j in range(steps * 7 // 10 + 2):
        out.append(("/cmd", START + j * 10 * MS, cmd))
    return sorted(out, key=lambda m: m[1])


def write_bag(path, messages):
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {}
        for topic, t, msg in messages:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, type(msg).__msgtype__, typestore=STORE)
            writer.write(conns[topic], t, STORE.serialize_cdr(msg, type(msg).__msgtype__))
    return path


def test_bag_dataset_poses_per_tick_hand_computed(tmp_path):
    bag = write_bag(tmp_path / "tf_bag", bag_messages())
    d = desc(fields=("position", "yaw"))
    (traj,) = load_bag_dataset(bag, d, cache=False)
    ticks = np.asarray(traj.timestamps_ns)
    assert ticks[0] == START and np.all(np.diff(ticks) == 50 * MS)
    for j, t in enumerate(ticks):
        k = (t - START) // (7 * MS)  # the latest /tf message at or before the tick
        np.testing.assert_allclose(traj.observations[j], expected_pose(k), atol=1e-6)
    assert len(ticks) >= 7 and (ticks[1] - START) // (7 * MS) == 7  # 50 ms: message 7 (49 ms), not 8 (56 ms)
    # the dataset did not touch the interface's own converter (the policy server's state)
    assert len(d.observations[0].converter.frames) == 0


def test_bag_without_static_topic(tmp_path):
    bag = write_bag(tmp_path / "no_static", bag_messages(steps=20, static=False))
    (traj,) = load_bag_dataset(bag, desc(child="base_footprint", fields=("position",)), cache=False)
    np.testing.assert_allclose(traj.observations[1], [0.01 * 7, 0, 0], atol=1e-6)
    with pytest.raises(BagError, match=r"stream 'pose' is never complete \(40 messages on /tf\): .*"
                                       r"between the frames of 'odom' \[base_footprint, odom\] and those of "
                                       r"'base_link' \[base_link, wheel\]"):
        load_bag_dataset(bag, desc(), cache=False)


class Recorder:
    """A stand-in policy that keeps what it was shown."""

    def __init__(self):
        self.seen = []

    def act(self, obs):
        self.seen.append(np.array(obs))
        return np.zeros(1)


def run_ticks(d, messages, ticks, convert=lambda m: m):
    policy = Recorder()
    runner = PolicyRunner(d, policy=policy)
    statuses, i = [], 0
    for t in ticks:
        while i < len(messages) and messages[i][1] <= t:
            topic, _, msg = messages[i]
            runner.on_message(topic, convert(msg), now_ns=messages[i][1])
            i += 1
        statuses.append(runner.tick(int(t)))
    return runner, policy, statuses


def rclpy_tf(msg):
    """The same transforms as rclpy geometry_msgs/TransformStamped (tf2_msgs may have no wheel)."""
    out = []
    for t in msg.transforms:
        r = geometry_msgs.msg.TransformStamped()
        r.header.frame_id, r.child_frame_id = t.header.frame_id, t.child_frame_id
        r.header.stamp.sec, r.header.stamp.nanosec = int(t.header.stamp.sec), int(t.header.stamp.nanosec)
        for a in "xyz":
            setattr(r.transform.translation, a, float(getattr(t.transform.translation, a)))
        for a in "xyzw":
            setattr(r.transform.rotation, a, float(getattr(t.transform.rotation, a)))
        out.append(r)
    try:
        from tf2_msgs.msg import TFMessage
    except ImportError:
        return types.SimpleNamespace(transforms=out)
    return TFMessage(transforms=out)


@pytest.mark.parametrize("kind", ["rosbags", "rclpy"])
def test_runner_gives_the_dataset_array(tmp_path, kind):
    messages = bag_messages()
    d = desc(fields=("pose", "yaw"))
    (traj,) = load_bag_dataset(write_bag(tmp_path / "b", messages), d, cache=False)
    convert = rclpy_tf if kind == "rclpy" else (lambda m: m)
    live = [(topic, stamp_ns(m) or t, convert(m) if topic != "/cmd" else m) for topic, t, m in messages]
    live.sort(key=lambda m: m[1])  # delivered in stamp order, as the dataset sees them
    runner, policy, statuses = run_ticks(d, live, traj.timestamps_ns)
    assert [s.status for s in statuses] == ["ok"] * len(statuses)
    np.testing.assert_array_equal(np.stack(policy.seen), traj.observations)


def test_runner_waits_for_the_static_edge():
    d = desc()
    msgs = [("/tf", START, tf_message(transform("odom", "base_footprint", (1, 0, 0), stamp=START)))]
    runner, policy, statuses = run_ticks(d, msgs, [START])
    assert statuses[0].status == "waiting" and not policy.seen
    assert statuses[0].detail == ("stream 'pose': tf2_msgs/msg/TFMessage: no transform names frame 'base_link' "
                                  "(frames seen: base_footprint, odom)")
    runner.on_message("/tf_static", tf_message(transform("base_footprint", "base_link", STATIC)), now_ns=START)
    tick = runner.tick(START + MS)  # /tf_static is latched: its age never makes the tick stale
    assert tick.status == "ok"
    np.testing.assert_allclose(policy.seen[-1], [1.1, 0, 0.2, 0, 0, 0, 1], atol=1e-6)
    PolicyRunner(d, policy=policy)  # a new runner starts from an empty tree
    assert len(d.observations[0].converter.frames) == 0


# ----------------------------------------------------------------------------- ROS subscriptions


class FakeNode:
    def __init__(self):
        self.subs = []

    def create_subscription(self, cls, topic, callback, qos):
        self.subs.append((topic, qos, callback))


def test_subscriptions_latched_static_topic_or_one_clear_line(monkeypatch):
    from rclpy.qos import DurabilityPolicy

    from robot_training.ros import _common

    try:
        import tf2_msgs.msg  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match=r"^observation stream 'pose' reads /tf as tf2_msgs/msg/TFMessage, "
                                             r"which this ROS installation lacks \(.*tf2_msgs.*\); bags of it still load"):
            _common.subscribe_observations(FakeNode(), desc(), lambda topic, msg: None)
    monkeypatch.setattr(_common, "message_class", lambda msgtype: object)
    node, got = FakeNode(), []
    _common.subscribe_observations(node, desc(), lambda topic, msg: got.append(topic))
    assert [(t, q.durability) for t, q, _ in node.subs] == [("/tf", DurabilityPolicy.VOLATILE),
                                                            ("/tf_static", DurabilityPolicy.TRANSIENT_LOCAL)]
    node.subs[1][2]("msg")
    assert got == ["/tf_static"]
