"""Converters against messages deserialized by rosbags AND messages built by rclpy's classes."""

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from rosbags.typesys import Stores, get_typestore

from robot_training.interface.converters import ConversionError, InterfaceError, rosbags_message_factory
from robot_training.interface.description import interface_from_dict, load_interface

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
    "sensor_msgs/msg/CompressedImage": sensor_msgs.msg.CompressedImage,
    "sensor_msgs/msg/PointCloud2": sensor_msgs.msg.PointCloud2,
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
    """The same message twice: rosbags (serialized, then deserialized as from a bag) and rclpy.

    A callable value is called with "bag" or "rclpy" (for nested messages, e.g. PointField)."""
    bag_msg = rosbags_message_factory(TS, msgtype)()
    ros_msg = RCLPY[msgtype]()
    for path, value in values.items():
        path = path.replace("__", ".")
        _set(bag_msg, path, value("bag") if callable(value) else value)
        if callable(value):
            value = value("rclpy")
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


# ----------------------------------------------------------------------------- real robot data


def _converter(msgtype, **opts):
    """The converter of a one-stream description reading ``msgtype`` with ``opts``."""
    return interface_from_dict({
        "control_rate_hz": 10,
        "observations": [{"name": "s", "topic": "/s", "type": msgtype, **opts}],
        "action": {"topic": "/a", "type": "std_msgs/msg/Float64MultiArray", "size": 1},
    }).observations[0].converter


def _frame(h, w, seed=0):
    """Smooth colour blobs, fine noise and a sharp-edged box: uint8 (h, w, 3)."""
    rng = np.random.default_rng(seed)
    coarse = PILImage.fromarray(rng.integers(0, 256, size=(4, 6, 3), dtype=np.uint8)).resize((w, h), PILImage.BILINEAR)
    img = np.asarray(coarse).astype(np.int16) + rng.integers(-20, 21, size=(h, w, 3))
    img[h // 4:h // 2, w // 3:w // 2] = (250, 30, 90)
    return np.clip(img, 0, 255).astype(np.uint8)


def _encoded(pixels, fmt, **save):
    buf = io.BytesIO()
    PILImage.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels).save(buf, fmt, **save)
    return np.frombuffer(buf.getvalue(), dtype=np.uint8)


def _compressed(fmt, data):
    return both("sensor_msgs/msg/CompressedImage", format=fmt, data=data)


def test_compressed_png_converts_like_the_raw_image():
    """PNG is lossless: every resize mode and output equals the Image converter's on the raw frame."""
    rgb = _frame(24, 36)
    png = _encoded(rgb, "PNG")
    outs = {}
    for output in ("rgb", "mono"):
        for mode in ("area", "bilinear", "nearest"):
            want = _converter("sensor_msgs/msg/Image", height=8, width=12, output=output,
                              resize=mode).to_array(_image("rgb8", rgb)[0])
            conv = _converter("sensor_msgs/msg/CompressedImage", height=8, width=12, output=output, resize=mode)
            for fmt in ("png", "bgr8; png compressed bgr8"):
                for msg in _compressed(fmt, png):
                    out = conv.to_array(msg)
                    assert out.dtype == np.uint8 and out.shape == (8, 12, 3 if output == "rgb" else 1)
                    np.testing.assert_array_equal(out, want, err_msg=f"{output} {mode} {fmt}")
            outs[output, mode] = want
    assert not np.array_equal(outs["rgb", "area"], outs["rgb", "nearest"])
    block_mean = rgb.reshape(8, 3, 12, 3, 3).astype(np.float64).mean((1, 3))  # area: 3x3 blocks
    assert np.abs(outs["rgb", "area"] - block_mean).max() <= 1.0


def test_compressed_jpeg_rgb_mono_and_draft():
    """draft: false equals the Image converter on the fully decoded frame; the default draft
    (640x480 decoded at 320x240) stays within a few grey levels of it."""
    big = _frame(480, 640)
    jpeg = _encoded(big, "JPEG", quality=90)
    decoded = np.asarray(PILImage.open(io.BytesIO(jpeg.tobytes())).convert("RGB"))
    for output in ("rgb", "mono"):
        want = _converter("sensor_msgs/msg/Image", height=64, width=64, output=output).to_array(_image("rgb8", decoded)[0])
        full = _converter("sensor_msgs/msg/CompressedImage", height=64, width=64, output=output, draft=False)
        fast = _converter("sensor_msgs/msg/CompressedImage", height=64, width=64, output=output)
        for msg in _compressed("rgb8; jpeg compressed bgr8", jpeg):
            np.testing.assert_array_equal(full.to_array(msg), want)
            diff = np.abs(fast.to_array(msg).astype(int) - want)
            assert 0 < diff.mean() < 3 and diff.max() < 64, output
    gray = _frame(32, 32)[..., :1]
    mono_jpeg = _encoded(gray, "JPEG", quality=95)
    decoded = np.asarray(PILImage.open(io.BytesIO(mono_jpeg.tobytes())))[..., None]
    for msg in _compressed("mono8; jpeg compressed mono8", mono_jpeg):
        mono = _converter("sensor_msgs/msg/CompressedImage", height=16, width=16, output="mono").to_array(msg)
        rgb = _converter("sensor_msgs/msg/CompressedImage", height=16, width=16).to_array(msg)
        assert mono.shape == (16, 16, 1) and rgb.shape == (16, 16, 3)
        np.testing.assert_array_equal(mono, _converter("sensor_msgs/msg/Image", height=16, width=16, output="mono")
                                      .to_array(_image("mono8", decoded)[0]))
        np.testing.assert_array_equal(rgb, np.repeat(mono, 3, axis=2))
        assert np.abs(mono[..., 0].astype(int) - gray.reshape(16, 2, 16, 2).mean((1, 3))).mean() < 3


def test_compressed_image_refuses_depth_and_bad_data():
    conv = _converter("sensor_msgs/msg/CompressedImage", height=4, width=4)
    png = _encoded(_frame(8, 8), "PNG")
    for fmt in ("16UC1; compressedDepth png", "32FC1; compressedDepth rvl", "", "bgr8; tiff compressed bgr8"):
        for msg in _compressed(fmt, png):
            with pytest.raises(ConversionError, match=f"unsupported format '{re.escape(fmt)}'"):
                conv.to_array(msg)
    for fmt, data in (("jpeg", png), ("png", png[: len(png) // 2]), ("png", np.zeros(0, np.uint8))):
        for msg in _compressed(fmt, data):
            with pytest.raises(ConversionError, match=f"CompressedImage: '{fmt}' data does not decode"):
                conv.to_array(msg)
    deep = _encoded(np.arange(64, dtype=np.uint16).reshape(8, 8, 1) * 1000, "PNG")
    for msg in _compressed("mono16; png compressed mono16", deep):
        with pytest.raises(ConversionError, match="only 8-bit images are supported"):
            conv.to_array(msg)
    with pytest.raises(InterfaceError, match=r"observations\[0\]\.output: 'depth' is not one of rgb, mono"):
        _converter("sensor_msgs/msg/CompressedImage", height=4, width=4, output="depth")
    with pytest.raises(InterfaceError, match=r"observations\[0\]\.draft: expected bool"):
        _converter("sensor_msgs/msg/CompressedImage", height=4, width=4, draft="yes")


_POINTFIELD = {"i1": 1, "u1": 2, "i2": 3, "u2": 4, "i4": 5, "u4": 6, "f4": 7, "f8": 8}


def _cloud(xyz, *, dtype="f4", extra=False, big=False, height=1, row_pad=0):
    """``xyz`` (N, 3) as a PointCloud2 (rosbags and rclpy): fields of ``dtype``; ``extra`` puts
    a float32 intensity before x and 4 padding bytes after z; ``row_pad`` bytes end each row."""
    xyz = np.asarray(xyz, dtype=np.float64)
    order = ">" if big else "<"
    kind = np.dtype(dtype).newbyteorder(order)
    names = ["intensity", "x", "y", "z"] if extra else ["x", "y", "z"]
    first = 4 if extra else 0
    offsets = ([0] if extra else []) + [first + a * kind.itemsize for a in range(3)]
    step = first + 3 * kind.itemsize + (4 if extra else 0)
    layout = np.dtype({"names": names, "offsets": offsets, "itemsize": step,
                       "formats": [np.dtype("f4").newbyteorder(order) if n == "intensity" else kind for n in names]})
    pts = np.zeros(len(xyz), dtype=layout)
    for a, name in enumerate("xyz"):
        pts[name] = xyz[:, a]
    if extra:
        pts["intensity"] = 7.0
    width = len(xyz) // height
    raw = pts.tobytes()
    rows = [raw[r * width * step:(r + 1) * width * step] + b"\xff" * row_pad for r in range(height)]
    codes = [7 if n == "intensity" else _POINTFIELD[np.dtype(dtype).str[1:]] for n in names]

    def fields(lib):
        cls = TS.types["sensor_msgs/msg/PointField"] if lib == "bag" else sensor_msgs.msg.PointField
        return [cls(name=n, offset=o, datatype=c, count=1) for n, o, c in zip(names, offsets, codes)]

    return both("sensor_msgs/msg/PointCloud2", height=height, width=width, fields=fields, is_bigendian=big,
                point_step=step, row_step=width * step + row_pad, is_dense=bool(np.isfinite(xyz).all()),
                data=np.frombuffer(b"".join(rows), dtype=np.uint8))


RANGE_IMAGE = {"mode": "range_image", "azimuth_bins": 8, "elevation_bins": 30, "elevation_min_deg": -15,
               "elevation_max_deg": 15, "range_max": 10.0}
VOXEL = {"mode": "voxel", "bounds": [0, 4, -2, 2, 0, 1], "cells": [4, 4, 2]}


def test_point_cloud_layouts_read_the_same():
    """Big-endian, an extra field with padding, float64, row padding and a non-dense cloud all
    give the same points and arrays; NaN points and (0, 0, 0) are dropped."""
    xyz = np.array([[2, 0, 0], [0, 3, 0], [-1, 0, 0.25], [1.5, -1.5, 0.5], [3.5, 1.0, 0.75], [0.5, -1.0, 0.125]])
    ranges = _converter("sensor_msgs/msg/PointCloud2", **RANGE_IMAGE)
    voxels = _converter("sensor_msgs/msg/PointCloud2", **VOXEL)
    want_r, want_v = (c.to_array(_cloud(xyz)[0]) for c in (ranges, voxels))
    assert want_r.shape == (30, 8, 1) and want_v.shape == (4, 4, 2) and want_v.sum() == 4
    holes = np.insert(xyz, [1, 3, 3], [[np.nan] * 3, [0, 0, 0], [np.nan, 1.0, 1.0]], axis=0)  # 9 points
    layouts = [dict(big=True), dict(extra=True), dict(extra=True, big=True), dict(dtype="f8"),
               dict(dtype="f8", big=True, extra=True), dict(height=2, row_pad=6), dict(height=3, row_pad=2, big=True)]
    for layout in layouts:
        for points in (xyz, holes):
            if len(points) % layout.get("height", 1):
                continue
            for msg in _cloud(points, **layout):
                assert msg.point_step > 12 or not layout.get("extra")
                np.testing.assert_array_equal(ranges.points(msg), xyz, err_msg=str(layout))
                np.testing.assert_array_equal(ranges.to_array(msg), want_r)
                np.testing.assert_array_equal(voxels.to_array(msg), want_v)
    for msg in _cloud([[2, 0, 0], [0, -3, 1]], dtype="i2", big=True):
        np.testing.assert_array_equal(ranges.points(msg), [[2, 0, 0], [0, -3, 1]])


def _polar(r, azimuth_deg, elevation_deg=0.0):
    a, e = np.radians(azimuth_deg), np.radians(elevation_deg)
    return [r * np.cos(e) * np.cos(a), r * np.cos(e) * np.sin(a), r * np.sin(e)]


def test_range_image_bins_by_hand():
    """8 azimuth bins of 45° (column j: azimuth in (180 - 45(j+1), 180 - 45j]), 30 elevation
    bins of 1° from +15° (row 0) down to -15°."""
    points = [
        [2, 0, 0],                # straight ahead, 2 m: row 15 (elevation (-1°, 0°]), column 4
        [5, 0, 0],                # same bin, farther: the bin keeps the minimum
        [0, 0, 0],                # no return (zeros): dropped, else the bin would read 0
        [np.nan, np.nan, np.nan],  # no return (non-dense): dropped
        _polar(3, 67.5),          # front left: column 2
        _polar(4, -112.5),        # back right: column 6
        _polar(20, 157.5),        # behind, beyond range_max: clipped to 10 in column 0
        _polar(4, 0, 10.5),       # ahead, 10.5° up: row 4 (elevation (10°, 11°])
        _polar(1, 0, 40),         # above elevation_max_deg: dropped
    ]
    want = np.full((30, 8, 1), 10.0, np.float32)
    want[15, 4] = 2.0
    want[15, 2] = 3.0
    want[15, 6] = 4.0
    want[4, 4] = 4.0
    conv = _converter("sensor_msgs/msg/PointCloud2", **RANGE_IMAGE)
    for msg in _cloud(points):
        out = conv.to_array(msg)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, want, rtol=1e-6)


def test_voxel_grid_by_hand():
    """bounds x [0, 4), y [-2, 2), z [0, 1) in 4 x 4 x 2 cells of 1 x 1 x 0.5 m."""
    points = [[2.5, 0.5, 0.25], [2.9, 0.1, 0.4],   # both in cell (2, 2, 0)
              [0, -2, 0],                          # the lower corner: cell (0, 0, 0)
              [1.5, 1.99, 0.75],                   # cell (1, 3, 1)
              [4, 0, 0.5], [-0.1, 0, 0.2], [1, 1, 1], [1, 1, -0.01],  # outside (upper bounds excluded)
              [0, 0, 0], [np.nan, 0.5, 0.5]]       # no return: dropped
    count = np.zeros((4, 4, 2), np.float32)
    count[2, 2, 0], count[0, 0, 0], count[1, 3, 1] = 2, 1, 1
    for value, want in (("count", count), ("occupancy", (count > 0).astype(np.float32))):
        conv = _converter("sensor_msgs/msg/PointCloud2", **VOXEL, value=value)
        for msg in _cloud(points):
            out = conv.to_array(msg)
            assert out.dtype == np.float32 and out.shape == (4, 4, 2)
            np.testing.assert_array_equal(out, want, err_msg=value)


def test_point_cloud_errors():
    conv = _converter("sensor_msgs/msg/PointCloud2", **VOXEL)
    for msg in _cloud([[1, 0, 0]]):
        msg.fields = msg.fields[:2]
        with pytest.raises(ConversionError, match=r"no field\(s\) z in the cloud \(it has x, y\)"):
            conv.to_array(msg)
    for msg in _cloud([[1, 0, 0]]):
        msg.fields[1].datatype = 9
        with pytest.raises(ConversionError, match="field 'y' has datatype 9"):
            conv.to_array(msg)
    for msg in _cloud([[1, 0, 0], [2, 0, 0]]):
        msg.width = 3
        with pytest.raises(ConversionError, match="3x1 cloud with point_step 12, row_step 24 needs 36 bytes, data has 24"):
            conv.to_array(msg)
    for msg in _cloud([[1, 0, 0]]):
        msg.point_step = 10
        with pytest.raises(ConversionError, match="field 'z' at offset 8 does not fit point_step 10"):
            conv.to_array(msg)
    cloud = "sensor_msgs/msg/PointCloud2"
    for opts, message in (
        ({}, "missing required key 'mode'"),
        ({"mode": "mesh"}, r"mode: 'mesh' is not one of range_image, voxel"),
        ({**VOXEL, "azimuth_bins": 8}, "unknown key 'azimuth_bins'"),
        ({**VOXEL, "bounds": [0, 4, -2, 2, 1]}, r"bounds: expected \[x_min, x_max, y_min, y_max, z_min, z_max\]"),
        ({**VOXEL, "bounds": [0, 4, 2, -2, 0, 1]}, "with each min < max"),
        ({**VOXEL, "cells": [4, 0, 2]}, r"cells: expected three cell counts"),
        ({**VOXEL, "value": "mean"}, r"value: 'mean' is not one of occupancy, count"),
        ({**RANGE_IMAGE, "elevation_min_deg": 15}, "elevation_max_deg: need -90 <= elevation_min_deg < elevation_max_deg"),
        ({**RANGE_IMAGE, "range_max": 0}, "range_max: must be > 0"),
    ):
        with pytest.raises(InterfaceError, match=message):
            _converter(cloud, **opts)


def test_joint_state_by_index_with_empty_names():
    conv = _converter("sensor_msgs/msg/JointState", joint_indices=[2, 0])
    for msg in both("sensor_msgs/msg/JointState", name=[], position=[1.0, 2.0, 3.0], velocity=[10.0, 20.0, 30.0]):
        np.testing.assert_array_equal(conv.to_array(msg), [3, 1, 30, 10])
    assert conv.describe() == ["position[2]", "position[0]", "velocity[2]", "velocity[0]"]
    for msg in both("sensor_msgs/msg/JointState", name=[], position=[1.0, 2.0, 3.0], velocity=[10.0, 20.0]):
        with pytest.raises(ConversionError, match=r"'velocity' has 2 values, too short for joint_indices \[2, 0\]"):
            conv.to_array(msg)
    js = "sensor_msgs/msg/JointState"
    for opts, message in (
        ({"joint_names": ["a"], "joint_indices": [0]}, r"observations\[0\]\.joint_indices: give joint_names or "
                                                        "joint_indices, not both"),
        ({}, r"missing required key 'joint_names' \(or 'joint_indices'\)"),
        ({"joint_indices": [1, -1]}, r"joint_indices\[1\]: expected an index >= 0, got -1"),
        ({"joint_indices": [1, 1]}, r"joint_indices: has duplicates"),
        ({"joint_indices": []}, r"joint_indices: must not be empty"),
    ):
        with pytest.raises(InterfaceError, match=message):
            _converter(js, **opts)
    desc = interface_from_dict({"control_rate_hz": 10, "observations": [
        {"name": "j", "topic": "/joint_states", "type": js, "joint_indices": [1], "fields": ["effort"]}],
        "action": {"topic": "/a", "type": "std_msgs/msg/Float64MultiArray", "size": 1}})
    assert interface_from_dict(desc.to_dict()).fingerprint == desc.fingerprint
    assert "joint_names" not in desc.observations[0].canonical()
    with pytest.raises(InterfaceError, match=r"action\.joint_indices: an action must name its joints"):
        interface_from_dict({**desc.to_dict(), "action": {"topic": "/effort", "type": js, "joint_indices": [0]}})


def test_bag_of_compressed_images_and_clouds_loads_like_the_converters(tmp_path):
    """A bag written by rosbags with CompressedImage and PointCloud2 streams: the dataset holds,
    tick by tick, exactly the converters' arrays of the recorded messages."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from robot_training.data.bag_dataset import load_bag_dataset
    from robot_training.interface.converters import set_stamp

    desc = interface_from_dict({
        "control_rate_hz": 10, "max_staleness_s": 0.05,
        "observations": [
            {"name": "cam", "topic": "/camera/image_raw/compressed", "type": "sensor_msgs/msg/CompressedImage",
             "height": 16, "width": 16},
            {"name": "lidar", "topic": "/points", "type": "sensor_msgs/msg/PointCloud2", **RANGE_IMAGE},
        ],
        "action": {"topic": "/cmd", "type": "std_msgs/msg/Float64MultiArray", "size": 1},
    })
    types = dict(desc.streams())
    msgs = {t: rosbags_message_factory(TS, m)() for t, m in types.items()}
    expected = {"cam": [], "lidar": []}
    with Writer(tmp_path / "bag", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {t: writer.add_connection(t, m, typestore=TS) for t, m in types.items()}
        for k in range(6):
            t = 10**12 + k * 100_000_000
            cam, cloud, cmd = (msgs[t_] for t_ in ("/camera/image_raw/compressed", "/points", "/cmd"))
            cam.format = "rgb8; jpeg compressed bgr8" if k % 2 else "png"
            cam.data = _encoded(_frame(48, 64, seed=k), "JPEG" if k % 2 else "PNG")
            bag_cloud = _cloud([_polar(1 + k, 45 * k), [np.nan] * 3, _polar(9, -30, 5)], extra=True)[0]
            for attr in ("height", "width", "fields", "is_bigendian", "point_step", "row_step", "data", "is_dense"):
                setattr(cloud, attr, getattr(bag_cloud, attr))
            cmd.data = np.array([float(k)])
            for topic, msg in (("/camera/image_raw/compressed", cam), ("/points", cloud), ("/cmd", cmd)):
                set_stamp(msg, t)
                raw = TS.serialize_cdr(msg, types[topic])
                writer.write(conns[topic], t + 1000, raw)
                back = TS.deserialize_cdr(raw, types[topic])
                for s in desc.observations:
                    if s.topic == topic:
                        expected[s.name].append(s.to_array(back))
    (traj,) = load_bag_dataset(tmp_path / "bag", desc, cache=False)
    assert len(traj) == 5
    for name in ("cam", "lidar"):
        want = np.stack(expected[name])
        assert traj.observations[name].dtype == want.dtype
        np.testing.assert_array_equal(traj.observations[name], want[:5])
        np.testing.assert_array_equal(traj.final_observation[name], want[5])
    assert traj.observations["lidar"][2, 15, 2, 0] == pytest.approx(3.0)  # 3 m at azimuth 90°: column 2
    np.testing.assert_array_equal(traj.actions[:, 0], np.arange(5))


def test_policy_server_resolves_the_new_message_types():
    """The policy server subscribes with ros._common.message_class(type name): the new types resolve."""
    from robot_training.ros._common import message_class

    for name in ("CompressedImage", "PointCloud2", "JointState"):
        assert message_class(f"sensor_msgs/msg/{name}") is getattr(sensor_msgs.msg, name)
