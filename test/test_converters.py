"""Converters against messages deserialized by rosbags AND messages built by rclpy's classes."""

from pathlib import Path

import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from robot_training.data.converters import ConversionError, InterfaceError, rosbags_message_factory
from robot_training.data.interface import interface_from_dict, load_interface

import geometry_msgs.msg  # rclpy message classes (no ROS graph needed)
import nav_msgs.msg
import sensor_msgs.msg
import std_msgs.msg

CONFIG = Path(__file__).resolve().parents[1] / "config"
TS = get_typestore(Stores.ROS2_KILTED)
RCLPY = {
    "sensor_msgs/msg/JointState": sensor_msgs.msg.JointState,
    "sensor_msgs/msg/Imu": sensor_msgs.msg.Imu,
    "sensor_msgs/msg/LaserScan": sensor_msgs.msg.LaserScan,
    "sensor_msgs/msg/Image": sensor_msgs.msg.Image,
    "nav_msgs/msg/Odometry": nav_msgs.msg.Odometry,
    "std_msgs/msg/Float64MultiArray": std_msgs.msg.Float64MultiArray,
    "std_msgs/msg/Float32": std_msgs.msg.Float32,
    "geometry_msgs/msg/Twist": geometry_msgs.msg.Twist,
}


def _set(msg, path, value):
    *head, last = path.split(".")
    obj = msg
    for part in head:
        obj = getattr(obj, part)
    current = getattr(obj, last)
    if isinstance(current, np.ndarray):
        value = np.asarray(value, dtype=current.dtype)
    setattr(obj, last, value)


def both(msgtype, **values):
    """The same message twice: rosbags (serialized, then deserialized as from a bag) and rclpy."""
    bag_msg = rosbags_message_factory(TS, msgtype)()
    ros_msg = RCLPY[msgtype]()
    for path, value in values.items():
        path = path.replace("__", ".")
        _set(bag_msg, path, value)
        _set(ros_msg, path, value if not isinstance(value, np.ndarray) or value.dtype != np.uint8 else value.tobytes())
    bag_msg = TS.deserialize_cdr(TS.serialize_cdr(bag_msg, msgtype), msgtype)
    return [bag_msg, ros_msg]


@pytest.fixture(scope="module")
def example():
    return load_interface(CONFIG / "interface_example.yaml")


def stream(desc, name):
    return next(s for s in desc.observations if s.name == name)


def test_joint_state_reorders_by_name(example):
    for msg in both("sensor_msgs/msg/JointState", name=["wrist", "shoulder", "gripper", "elbow"],
                    position=[3.0, 1.0, 9.0, 2.0], velocity=[30.0, 10.0, 90.0, 20.0], effort=[0.0] * 4):
        np.testing.assert_array_equal(stream(example, "arm").to_array(msg), [1, 2, 3, 10, 20, 30])


def test_joint_state_missing_joint_is_clear(example):
    for msg in both("sensor_msgs/msg/JointState", name=["shoulder"], position=[1.0], velocity=[1.0]):
        with pytest.raises(ConversionError, match=r"joint\(s\) \['elbow', 'wrist'\] not in the message"):
            stream(example, "arm").to_array(msg)


def test_odometry_and_imu(example):
    odo = {"pose__pose__position__x": 1.0, "pose__pose__position__y": 2.0, "pose__pose__orientation__w": 1.0,
           "twist__twist__linear__x": 0.5, "twist__twist__angular__z": -0.25}
    for msg in both("nav_msgs/msg/Odometry", **odo):
        np.testing.assert_array_equal(stream(example, "odom").to_array(msg),
                                      [1, 2, 0, 0, 0, 0, 1, 0.5, 0, 0, 0, 0, -0.25])
    imu = {"orientation__z": 0.6, "orientation__w": 0.8, "angular_velocity__y": 2.0, "linear_acceleration__z": 9.81}
    for msg in both("sensor_msgs/msg/Imu", **imu):
        np.testing.assert_allclose(stream(example, "imu").to_array(msg),
                                   [0, 0, 0.6, 0.8, 0, 2, 0, 0, 0, 9.81], rtol=1e-6)


def test_laser_scan_downsample_clip_inf_nan(example):
    ranges = np.full(360, 5.0, dtype=np.float32)
    ranges[0] = np.inf      # no return -> range_max 8
    ranges[10] = 1.0        # closest in bin 1
    ranges[20:25] = np.nan  # bin 2: nan -> 8, but the bin still holds 5.0s
    ranges[40:50] = np.inf  # whole bin 4 without return
    ranges[50] = -np.inf    # too close -> 0
    ranges[355] = 100.0     # clipped to 8 (bin min is 5 anyway)
    for msg in both("sensor_msgs/msg/LaserScan", ranges=ranges, range_max=30.0):
        out = stream(example, "scan").to_array(msg)
        assert out.shape == (36,) and out.dtype == np.float32
        assert out[0] == 5.0 and out[1] == 1.0 and out[2] == 5.0
        assert out[4] == 8.0 and out[5] == 0.0
        assert np.all(np.isfinite(out)) and out.max() <= 8.0


def _image(enc, pixels, bigendian=False):
    h, w = pixels.shape[:2]
    raw = pixels.astype(pixels.dtype.newbyteorder(">" if bigendian else "<")).tobytes()
    step = len(raw) // h + 4  # row padding the converter must skip
    padded = b"".join(raw[r * (len(raw) // h):(r + 1) * (len(raw) // h)] + b"\0" * 4 for r in range(h))
    return both("sensor_msgs/msg/Image", height=h, width=w, encoding=enc, step=step,
                is_bigendian=int(bigendian), data=np.frombuffer(padded, dtype=np.uint8))


def _desc_with_image(**opts):
    return interface_from_dict({
        "control_rate_hz": 10,
        "observations": [{"name": "cam", "topic": "/cam", "type": "sensor_msgs/msg/Image", **opts}],
        "action": {"topic": "/a", "type": "std_msgs/msg/Float64MultiArray", "size": 1},
    })


def test_image_encodings_and_resize():
    """Every colour encoding gives the same RGB frame; a 2x downscale averages each 2x2 block by
    default (area), and takes the centre samples with resize: nearest."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(8, 12, 3), dtype=np.uint8)
    block_mean = rgb.reshape(4, 2, 6, 2, 3).astype(np.float64).mean((1, 3))
    nearest = rgb[1::2][:, 1::2]  # centre samples of a 2x downscale
    area = _desc_with_image(height=4, width=6).observations[0].converter
    sampled = _desc_with_image(height=4, width=6, resize="nearest").observations[0].converter
    for enc, pix in [("rgb8", rgb), ("bgr8", rgb[..., ::-1]),
                     ("rgba8", np.concatenate([rgb, np.full((8, 12, 1), 7, np.uint8)], axis=2)),
                     ("bgra8", np.concatenate([rgb[..., ::-1], np.full((8, 12, 1), 7, np.uint8)], axis=2))]:
        for msg in _image(enc, pix):
            out = area.to_array(msg)
            assert out.dtype == np.uint8 and out.shape == (4, 6, 3)
            assert np.abs(out - block_mean).max() <= 1.0, enc  # Pillow rounds in fixed point
            np.testing.assert_array_equal(sampled.to_array(msg), nearest, err_msg=enc)
    mono = rgb[..., 0]
    for msg in _image("mono8", mono[..., None]):
        np.testing.assert_array_equal(sampled.to_array(msg), np.repeat(mono[1::2, 1::2, None], 3, axis=2))
    gray = _desc_with_image(height=4, width=6, output="mono").observations[0].converter
    for msg in _image("rgb8", rgb):
        out = gray.to_array(msg)
        assert out.shape == (4, 6, 1)
        ref = np.rint(rgb.astype(np.float64) @ [0.299, 0.587, 0.114]).reshape(4, 2, 6, 2).mean((1, 3))
        assert np.abs(out[..., 0].astype(int) - ref).max() <= 1


def test_image_resize_does_not_alias():
    """A one-pixel checkerboard (fine texture) shrunk 4x: area and bilinear filtering give the
    mid grey a camera would, nearest sampling gives a solid black or white frame."""
    board = ((np.indices((64, 64)).sum(0) % 2) * 255).astype(np.uint8)[..., None]
    outs = {mode: _desc_with_image(height=16, width=16, resize=mode).observations[0].converter.to_array(msg)
            for mode in ("area", "bilinear", "nearest") for msg in _image("mono8", board)[:1]}
    assert np.abs(outs["area"].astype(int) - 127.5).max() <= 1
    assert np.abs(outs["bilinear"].astype(int) - 127.5).max() <= 40
    assert set(np.unique(outs["nearest"])) <= {0, 255} and len(np.unique(outs["nearest"])) == 1
    with pytest.raises(InterfaceError, match="resize: 'cubic' is not one of area, bilinear, nearest"):
        _desc_with_image(height=4, width=4, resize="cubic")


def test_depth_images():
    depth = _desc_with_image(height=2, width=2, output="depth", depth_max=5.0).observations[0].converter
    mm = np.array([[1000, 0], [7000, 2500]], dtype=np.uint16)
    for big in (False, True):
        for msg in _image("16UC1", mm[..., None], bigendian=big):
            np.testing.assert_allclose(depth.to_array(msg)[..., 0], [[1.0, 5.0], [5.0, 2.5]])
    metres = np.array([[1.5, np.nan], [np.inf, -1.0]], dtype=np.float32)
    for msg in _image("32FC1", metres[..., None]):
        np.testing.assert_allclose(depth.to_array(msg)[..., 0], [[1.5, 5.0], [5.0, 5.0]])
    rgb_reader = _desc_with_image(height=2, width=2).observations[0].converter
    for msg in _image("16UC1", mm[..., None]):
        with pytest.raises(ConversionError, match="use output: depth"):
            rgb_reader.to_array(msg)
    for msg in _image("yuv422", np.zeros((2, 2, 1), np.uint8)):
        with pytest.raises(ConversionError, match="unsupported encoding 'yuv422'"):
            rgb_reader.to_array(msg)


def test_multiarray_and_scalar(example):
    for msg in both("std_msgs/msg/Float64MultiArray", data=np.array([0.5, -2.0])):
        np.testing.assert_array_equal(stream(example, "goal").to_array(msg), [0.5, -2.0])
    for msg in both("std_msgs/msg/Float64MultiArray", data=np.array([0.5])):
        with pytest.raises(ConversionError, match="expected 2 values"):
            stream(example, "goal").to_array(msg)
    for msg in both("std_msgs/msg/Float32", data=0.75):
        np.testing.assert_array_equal(stream(example, "battery").to_array(msg), [0.75])


def test_build_observation_same_for_bag_and_rclpy_messages():
    desc = load_interface(CONFIG / "interface_inverted_pendulum.yaml")
    bag_msg, ros_msg = both("sensor_msgs/msg/JointState", name=["hinge", "slider"],
                            position=[0.1, -0.4], velocity=[2.0, 0.3])
    a = desc.build_observation({"/joint_states": bag_msg})
    b = desc.build_observation({"/joint_states": ros_msg})
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, np.array([-0.4, 0.1, 0.3, 2.0], np.float32))
    with pytest.raises(ConversionError, match="no message yet on observation topic /joint_states"):
        desc.build_observation({})


# ----------------------------------------------------------------------------- actions


def _factories(msgtype):
    return [rosbags_message_factory(TS, msgtype), RCLPY[msgtype]]


def test_twist_action_round_trip_and_clip(example):
    for factory in _factories("geometry_msgs/msg/Twist"):
        msg = example.action_to_message([2.0, -0.25], factory)
        assert msg.linear.x == 0.5 and msg.angular.z == -0.25 and msg.linear.y == 0.0
        np.testing.assert_array_equal(example.action_from_message(msg), [0.5, -0.25])


def test_multiarray_action_serializes_with_both_libraries():
    desc = load_interface(CONFIG / "interface_inverted_pendulum.yaml")
    bag_factory, ros_class = _factories("std_msgs/msg/Float64MultiArray")
    bag_msg = desc.action_to_message([7.0], bag_factory)
    raw = TS.serialize_cdr(bag_msg, "std_msgs/msg/Float64MultiArray")
    back = TS.deserialize_cdr(raw, "std_msgs/msg/Float64MultiArray")
    np.testing.assert_array_equal(desc.action_from_message(back), [3.0])
    ros_msg = desc.action_to_message([float("nan")], ros_class)
    assert list(ros_msg.data) == [0.0]
    from rclpy.serialization import serialize_message
    assert TS.deserialize_cdr(serialize_message(ros_msg), "std_msgs/msg/Float64MultiArray").data.tolist() == [0.0]


def test_joint_state_effort_action_with_stamp():
    desc = interface_from_dict({
        "control_rate_hz": 50,
        "observations": [{"name": "j", "topic": "/joint_states", "type": "sensor_msgs/msg/JointState",
                          "joint_names": ["a", "b"]}],
        "action": {"topic": "/effort", "type": "sensor_msgs/msg/JointState", "joint_names": ["a", "b"],
                   "low": [-1, -1], "high": [1, 1]},
    })
    for factory in _factories("sensor_msgs/msg/JointState"):
        msg = desc.action_to_message(np.array([0.5, -3.0]), factory, stamp=1_500_000_001)
        assert list(msg.name) == ["a", "b"]
        assert list(msg.effort) == [0.5, -1.0]
        assert msg.header.stamp.sec == 1 and msg.header.stamp.nanosec == 500_000_001
        np.testing.assert_array_equal(desc.action_from_message(msg), [0.5, -1.0])
    with pytest.raises(ConversionError, match="action has 3 values, the interface expects 2"):
        desc.action_to_message([0, 0, 0], RCLPY["sensor_msgs/msg/JointState"])
