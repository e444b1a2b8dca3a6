"""Message ⇄ array converters, written once for bags and for live ROS.

Every converter reads and writes messages **by attribute name** (``msg.position``,
``msg.header.stamp.sec``), so the same code serves

* messages deserialized from a bag by ``rosbags`` (dataclasses, arrays as NumPy), and
* messages received or built by ``rclpy`` (generated classes, arrays as ``array.array``).

Observation streams turn one message into one array (:meth:`Converter.to_array`); the action
converter also builds a message from an array (:meth:`Converter.to_message`), clipped to the
action limits, given a zero-argument factory for the message (an rclpy class such as
``geometry_msgs.msg.Twist``, or :func:`rosbags_message_factory` for rosbags' types).

Which converter serves which message type is the explicit registry :data:`CONVERTERS`.
A type not in it can still be read with ``fields:`` (dotted attribute paths of numbers or
fixed-length numeric arrays) through :class:`FieldsConverter`.

Conversions
-----------
``sensor_msgs/msg/JointState``  ``fields`` ⊆ {position, velocity, effort} (default
    ``[position, velocity]``) in ``joint_names`` order: field-major, e.g. ``[q1, q2, dq1, dq2]``.
    ``joint_indices: [0, 2]`` instead picks array positions (drivers that publish an empty
    ``name[]``; observations only); too short arrays are an error.
``nav_msgs/msg/Odometry``  ``fields`` ⊆ {pose (7: xyz + quaternion xyzw), position (3),
    orientation (4), twist (6: linear + angular), linear_velocity (3), angular_velocity (3)}.
``sensor_msgs/msg/Imu``  ``fields`` ⊆ {orientation (4), angular_velocity (3),
    linear_acceleration (3)}.
``sensor_msgs/msg/LaserScan``  ``num_beams`` bins (min over each bin, or ``downsample:
    sample``), clipped to ``[0, range_max]``; ``+inf`` and ``nan`` (no return) become
    ``range_max``, ``-inf`` (too close) becomes 0.
``sensor_msgs/msg/Image``  resized to ``height`` × ``width`` (``resize: area`` (default), ``bilinear``,
    ``nearest``);
    ``output: rgb`` → uint8 (H, W, 3), ``mono`` → uint8 (H, W, 1), ``depth`` → float32
    metres (H, W, 1) clipped to ``[0, depth_max]`` (invalid readings → ``depth_max``).
    Encodings: rgb8, bgr8, rgba8, bgra8, mono8, mono16, 16UC1 (millimetres), 32FC1 (metres).
``sensor_msgs/msg/CompressedImage``  JPEG or PNG (``format`` as image_transport writes it:
    ``jpeg``, ``rgb8; jpeg compressed bgr8`` …) decoded by Pillow, then as ``Image``
    (``output: rgb | mono``, ``resize``); ``draft: true`` (default) decodes a JPEG at 1/2 … 1/8
    scale first, keeping twice the target size. compressedDepth and 16-bit PNG are refused.
``sensor_msgs/msg/PointCloud2``  x, y, z read by offset and datatype (any PointField type,
    byte order, point_step, row_step; NaN and (0, 0, 0) points dropped), reduced by ``mode``:
    ``range_image`` → float32 (elevation_bins, azimuth_bins, 1), the smallest range per bin
    clipped to ``range_max``, empty bins ``range_max`` (row 0 at ``elevation_max_deg``; columns
    from behind through the left, straight ahead at column azimuth_bins / 2); ``voxel`` →
    float32 ``cells`` (nx, ny, nz) over ``bounds`` [x_min, x_max, y_min, y_max, z_min, z_max],
    ``value: occupancy`` (0/1, default) or ``count`` (points per cell).
``std_msgs/msg/Float64MultiArray`` / ``Float32MultiArray``  ``size`` values of ``data``.
``geometry_msgs/msg/Twist`` / ``TwistStamped``  ``fields`` ⊆ {linear.x … angular.z}
    (default all six).
``std_msgs/msg/Float64``, ``Float32``, ``Int32``, ``Bool`` …  ``fields`` default ``[data]``.
``tf2_msgs/msg/TFMessage``  the pose of ``child_frame`` in ``parent_frame``, chained through
    the transforms of ``topic`` (``/tf``) and ``static_topic`` (default ``/tf_static``, ``""``
    for none); ``fields`` ⊆ {pose (7), position (3), orientation (4, x y z w), yaw (1)} (default
    ``[position, orientation]``). The stream keeps a frame tree fed every message of both
    topics (:class:`TFPoseConverter`); it is not ready until the chain is complete.

Streams that keep state (``stateful``: the TFMessage pose) see every message of their topic
and of their ``extra_topics`` through :meth:`Converter.observe`, in arrival order; their array
is the value after the latest message, and :class:`NotReady` (a ``ConversionError``) says
what is still missing.
"""

from __future__ import annotations

import array
import io
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from robot_training.config import ConfigError
from robot_training.interface.frames import FrameError, FrameTree, make_transform


class InterfaceError(ConfigError):
    """An interface description (or one stream of it) that is not valid."""


class ConversionError(ValueError):
    """A message that cannot be turned into the array the interface describes."""


class NotReady(ConversionError):
    """A stateful stream that has not had what it needs yet (a transform chain not complete)."""


# ----------------------------------------------------------------------------- helpers


class Options:
    """Typed access to one stream's YAML mapping; unknown keys are an error naming the key."""

    def __init__(self, data: Mapping[str, Any], where: str, ignore: Sequence[str] = (), top: bool = False):
        self.data = dict(data)
        self.where = where
        self.used = set(ignore)
        self.top = top

    def _fail(self, key: str, message: str) -> InterfaceError:
        return InterfaceError(f"{self.where}{': ' if self.top else '.'}{key}: {message}")

    def get(self, key: str, kind, default: Any = ..., *, choices: Optional[Sequence] = None):
        self.used.add(key)
        if key not in self.data or self.data[key] is None:
            if default is ...:
                raise InterfaceError(f"{self.where}: missing required key '{key}'")
            return default
        value = self.data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            raise self._fail(key, f"expected {getattr(kind, '__name__', kind)}, got {type(value).__name__} {value!r}")
        if choices is not None and value not in choices:
            raise self._fail(key, f"{value!r} is not one of {', '.join(map(str, choices))}")
        return value

    def positive(self, key: str, kind, default: Any = ...):
        value = self.get(key, kind, default)
        if value is not None and value <= 0:
            raise self._fail(key, f"must be > 0, got {value!r}")
        return value

    def str_list(self, key: str, default: Any = ..., *, choices: Optional[Sequence[str]] = None,
                 allow_empty: bool = False) -> List[str]:
        value = self.get(key, list, default)
        if value is None:
            return value
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self._fail(f"{key}[{i}]", f"expected str, got {type(item).__name__} {item!r}")
            if choices is not None and item not in choices:
                raise self._fail(f"{key}[{i}]", f"{item!r} is not one of {', '.join(choices)}")
            out.append(item)
        if not out and not allow_empty:
            raise self._fail(key, "must not be empty")
        if len(set(out)) != len(out):
            raise self._fail(key, f"has duplicates: {out}")
        return out

    def float_list(self, key: str, default: Any = ...) -> Optional[List[float]]:
        value = self.get(key, list, default)
        if value is None:
            return None
        out = []
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                raise self._fail(f"{key}[{i}]", f"expected a number, got {type(item).__name__} {item!r}")
            out.append(float(item))
        return out

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise InterfaceError(
                f"{self.where}: unknown key '{unknown[0]}' (known keys here: {', '.join(sorted(self.used))})"
            )


def _numeric(values) -> np.ndarray:
    """A float64 view of a numeric sequence: NumPy array, ``array.array``, list or scalar."""
    if isinstance(values, np.ndarray):
        return values.astype(np.float64, copy=False)
    if isinstance(values, (array.array, bytes, bytearray, memoryview)):
        return np.asarray(values, dtype=np.float64)
    return np.asarray(values, dtype=np.float64)


def _bytes_view(data) -> np.ndarray:
    """uint8 view of an image buffer (NumPy array from rosbags, array.array/bytes from rclpy)."""
    if isinstance(data, np.ndarray):
        return data.view(np.uint8).reshape(-1)
    try:
        return np.frombuffer(memoryview(data), dtype=np.uint8)
    except TypeError:
        return np.asarray(data, dtype=np.uint8)


def stamp_ns(msg) -> Optional[int]:
    """``msg.header.stamp`` in nanoseconds, or None when the message has no (non-zero) header stamp.

    A ``TFMessage`` (no header of its own) has the newest stamp of its transforms."""
    header = getattr(msg, "header", None)
    if header is None:
        stamps = [stamp_ns(t) for t in getattr(msg, "transforms", ())]
        stamps = [s for s in stamps if s is not None]
        return max(stamps) if stamps else None
    stamp = header.stamp
    ns = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
    return ns if ns > 0 else None


def set_stamp(msg, ns: int) -> None:
    """Set ``msg.header.stamp`` (if the message has a header) to ``ns`` nanoseconds."""
    header = getattr(msg, "header", None)
    if header is not None:
        header.stamp.sec = int(ns // 1_000_000_000)
        header.stamp.nanosec = int(ns % 1_000_000_000)


def _assign_sequence(msg, attr: str, values: np.ndarray) -> None:
    """Set a numeric array field the way the message's own library stores it."""
    current = getattr(msg, attr)
    if isinstance(current, np.ndarray):  # rosbags dataclasses
        setattr(msg, attr, np.asarray(values, dtype=current.dtype))
    elif isinstance(current, array.array):  # rclpy
        setattr(msg, attr, array.array(current.typecode, [float(v) for v in values]))
    else:
        setattr(msg, attr, [float(v) for v in values])


def _get_path(msg, path: str):
    obj = msg
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _set_path(msg, path: str, value) -> None:
    parts = path.split(".")
    obj = msg
    for part in parts[:-1]:
        obj = getattr(obj, part)
    current = getattr(obj, parts[-1])
    if isinstance(current, bool):
        value = bool(value)
    elif isinstance(current, int) and not isinstance(current, bool):
        value = int(round(float(value)))
    else:
        value = float(value)
    setattr(obj, parts[-1], value)


def _message_from_paths(paths, values, message_factory, stamp=None):
    """A new message with ``values[i]`` at dotted ``paths[i]`` (and the header stamp)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    msg = message_factory()
    for path, v in zip(paths, values):
        _set_path(msg, path, v)
    if stamp is not None:
        set_stamp(msg, stamp)
    return msg


# ----------------------------------------------------------------------------- converters


class Converter:
    """One stream: message type → array of fixed ``shape`` and ``dtype``."""

    msgtypes: Tuple[str, ...] = ()
    dtype = np.dtype(np.float32)
    can_write = False
    stateful = False
    """True: the array depends on earlier messages too; :meth:`observe` must see every message."""
    extra_topics: Tuple[Tuple[str, str], ...] = ()
    """``(topic, type)`` read besides the stream's own topic (fed to :meth:`observe`); a bag may lack them."""

    def __init__(self, msgtype: str, options: Dict[str, Any], shape: Tuple[int, ...]):
        self.msgtype = msgtype
        self.options = options  # canonical (defaults filled in): part of the fingerprint
        self.shape = tuple(int(s) for s in shape)

    @classmethod
    def parse(cls, msgtype: str, opts: Options) -> "Converter":  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def to_array(self, msg) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_message(self, values, message_factory: Callable[[], Any], stamp: Optional[int] = None):
        raise ConversionError(f"{self.msgtype}: building this message type from an array is not supported")

    def observe(self, msg) -> None:
        """A stateful stream takes in a message of its topic or of its extra topics (arrival order)."""

    def reset(self) -> None:
        """Forget the state of a stateful stream."""

    def fresh(self) -> "Converter":
        """A new converter of the same options, with empty state."""
        return type(self)(self.msgtype, self.options, self.shape)

    def describe(self) -> List[str]:
        """Names of the vector's entries (for logs and dataset metadata)."""
        return [f"{i}" for i in range(self.size)]


class JointStateConverter(Converter):
    """Joints chosen by ``joint_names`` (looked up in ``msg.name``) or by ``joint_indices``
    (positions in the arrays, for drivers that publish an empty ``name[]``): exactly one."""

    msgtypes = ("sensor_msgs/msg/JointState",)
    can_write = True
    FIELDS = ("position", "velocity", "effort")

    def __init__(self, msgtype, options, shape):
        super().__init__(msgtype, options, shape)
        self.joint_names = tuple(options.get("joint_names", ()))
        self.joint_indices = options.get("joint_indices")
        self.fields = tuple(options["fields"])
        self._index_cache: Dict[Tuple[str, ...], np.ndarray] = {}
        if self.joint_indices is not None:
            self._by_index = np.array(self.joint_indices, dtype=np.intp)

    @classmethod
    def parse(cls, msgtype, opts, default_fields=("position", "velocity"), action=False):
        fields = opts.str_list("fields", list(default_fields), choices=cls.FIELDS)
        has_names, has_indices = opts.data.get("joint_names") is not None, opts.data.get("joint_indices") is not None
        opts.used.update(("joint_names", "joint_indices"))
        if has_names and has_indices:
            raise opts._fail("joint_indices", "give joint_names or joint_indices, not both")
        if not has_indices:
            if not has_names:
                raise InterfaceError(f"{opts.where}: missing required key 'joint_names' (or 'joint_indices')")
            names = opts.str_list("joint_names")
            return cls(msgtype, {"joint_names": names, "fields": fields}, (len(names) * len(fields),))
        if action:
            raise opts._fail("joint_indices", "an action must name its joints (use joint_names)")
        indices = opts.get("joint_indices", list)
        for i, v in enumerate(indices):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise opts._fail(f"joint_indices[{i}]", f"expected an index >= 0, got {v!r}")
        if not indices or len(set(indices)) != len(indices):
            raise opts._fail("joint_indices", "must not be empty" if not indices else f"has duplicates: {indices}")
        return cls(msgtype, {"joint_indices": list(indices), "fields": fields}, (len(indices) * len(fields),))

    def _indices(self, msg_names) -> np.ndarray:
        if self.joint_indices is not None:
            return self._by_index
        key = tuple(msg_names)
        idx = self._index_cache.get(key)
        if idx is None:
            where = {n: i for i, n in enumerate(key)}
            missing = [n for n in self.joint_names if n not in where]
            if missing:
                raise ConversionError(
                    f"{self.msgtype}: joint(s) {missing} not in the message (it names {list(key)})"
                )
            idx = np.array([where[n] for n in self.joint_names], dtype=np.intp)
            if len(self._index_cache) < 64:
                self._index_cache[key] = idx
        return idx

    def to_array(self, msg) -> np.ndarray:
        idx = self._indices(msg.name)
        out = np.empty(self.shape, dtype=np.float32)
        n = len(idx)
        for k, field in enumerate(self.fields):
            values = _numeric(getattr(msg, field))
            if self.joint_indices is not None:
                if values.shape[0] <= idx.max():
                    raise ConversionError(f"{self.msgtype}: '{field}' has {values.shape[0]} values, too short "
                                          f"for joint_indices {self.joint_indices}")
            elif values.shape[0] != len(msg.name):
                raise ConversionError(
                    f"{self.msgtype}: '{field}' has {values.shape[0]} values for {len(msg.name)} joints"
                )
            out[k * n:(k + 1) * n] = values[idx]
        return out

    def to_message(self, values, message_factory, stamp=None):
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        msg = message_factory()
        msg.name = list(self.joint_names)
        n = len(self.joint_names)
        for k, field in enumerate(self.fields):
            _assign_sequence(msg, field, values[k * n:(k + 1) * n])
        if stamp is not None:
            set_stamp(msg, stamp)
        return msg

    def describe(self):
        if self.joint_indices is not None:
            return [f"{f}[{i}]" for f in self.fields for i in self.joint_indices]
        return [f"{f}.{j}" for f in self.fields for j in self.joint_names]


_VEC3 = ("x", "y", "z")
_QUAT = ("x", "y", "z", "w")


class _AttributeGroupsConverter(Converter):
    """Messages whose useful content is fixed groups of scalar attributes (Odometry, Imu, Twist)."""

    GROUPS: Dict[str, Tuple[str, ...]] = {}
    DEFAULT: Tuple[str, ...] = ()

    def __init__(self, msgtype, options, shape):
        super().__init__(msgtype, options, shape)
        self.paths = [p for f in options["fields"] for p in self.GROUPS[f]]

    @classmethod
    def parse(cls, msgtype, opts):
        fields = opts.str_list("fields", list(cls.DEFAULT), choices=list(cls.GROUPS))
        return cls(msgtype, {"fields": fields}, (sum(len(cls.GROUPS[f]) for f in fields),))

    def to_array(self, msg) -> np.ndarray:
        return np.array([_get_path(msg, p) for p in self.paths], dtype=np.float32)

    def describe(self):
        return list(self.paths)


class OdometryConverter(_AttributeGroupsConverter):
    msgtypes = ("nav_msgs/msg/Odometry",)
    _pos = tuple(f"pose.pose.position.{a}" for a in _VEC3)
    _ori = tuple(f"pose.pose.orientation.{a}" for a in _QUAT)
    _lin = tuple(f"twist.twist.linear.{a}" for a in _VEC3)
    _ang = tuple(f"twist.twist.angular.{a}" for a in _VEC3)
    GROUPS = {"pose": _pos + _ori, "position": _pos, "orientation": _ori,
              "twist": _lin + _ang, "linear_velocity": _lin, "angular_velocity": _ang}
    DEFAULT = ("pose", "twist")


class ImuConverter(_AttributeGroupsConverter):
    msgtypes = ("sensor_msgs/msg/Imu",)
    GROUPS = {"orientation": tuple(f"orientation.{a}" for a in _QUAT),
              "angular_velocity": tuple(f"angular_velocity.{a}" for a in _VEC3),
              "linear_acceleration": tuple(f"linear_acceleration.{a}" for a in _VEC3)}
    DEFAULT = ("orientation", "angular_velocity", "linear_acceleration")


class TwistConverter(Converter):
    msgtypes = ("geometry_msgs/msg/Twist", "geometry_msgs/msg/TwistStamped")
    can_write = True
    AXES = tuple(f"{g}.{a}" for g in ("linear", "angular") for a in _VEC3)

    def __init__(self, msgtype, options, shape):
        super().__init__(msgtype, options, shape)
        prefix = "twist." if msgtype.endswith("TwistStamped") else ""
        self.paths = [prefix + f for f in options["fields"]]

    @classmethod
    def parse(cls, msgtype, opts):
        fields = opts.str_list("fields", list(cls.AXES), choices=list(cls.AXES))
        return cls(msgtype, {"fields": fields}, (len(fields),))

    def to_array(self, msg):
        return np.array([_get_path(msg, p) for p in self.paths], dtype=np.float32)

    def to_message(self, values, message_factory, stamp=None):
        return _message_from_paths(self.paths, values, message_factory, stamp)

    def describe(self):
        return list(self.options["fields"])


class MultiArrayConverter(Converter):
    msgtypes = ("std_msgs/msg/Float64MultiArray", "std_msgs/msg/Float32MultiArray")
    can_write = True

    @classmethod
    def parse(cls, msgtype, opts):
        size = opts.positive("size", int)
        return cls(msgtype, {"size": size}, (size,))

    def to_array(self, msg):
        data = msg.data
        if len(data) != self.shape[0]:
            raise ConversionError(f"{self.msgtype}: expected {self.shape[0]} values in data, got {len(data)}")
        return np.asarray(data, dtype=np.float32)

    def to_message(self, values, message_factory, stamp=None):
        msg = message_factory()
        _assign_sequence(msg, "data", np.asarray(values, dtype=np.float64).reshape(-1))
        return msg


class FieldsConverter(Converter):
    """Any message: ``fields`` are dotted attribute paths of numbers (or numeric arrays, with ``size``)."""

    can_write = True
    DEFAULT_FIELDS = ("data",)

    def __init__(self, msgtype, options, shape):
        super().__init__(msgtype, options, shape)
        self.paths = list(options["fields"])
        self._scalar = len(self.paths) == shape[0]

    @classmethod
    def parse(cls, msgtype, opts):
        fields = opts.str_list("fields", list(cls.DEFAULT_FIELDS))
        size = opts.positive("size", int, None)
        if size is None:
            size = len(fields)
        return cls(msgtype, {"fields": fields, "size": size}, (size,))

    def to_array(self, msg):
        if self._scalar:
            try:
                return np.array([float(_get_path(msg, p)) for p in self.paths], dtype=np.float32)
            except TypeError:
                pass
        parts = [np.atleast_1d(_numeric(_get_path(msg, p))) for p in self.paths]
        out = np.concatenate(parts).astype(np.float32)
        if out.shape[0] != self.shape[0]:
            raise ConversionError(
                f"{self.msgtype}: fields {self.paths} give {out.shape[0]} values, the description says size {self.shape[0]}"
            )
        return out

    def to_message(self, values, message_factory, stamp=None):
        if not self._scalar:
            raise ConversionError(f"{self.msgtype}: building messages needs one scalar per field")
        return _message_from_paths(self.paths, values, message_factory, stamp)

    def describe(self):
        return list(self.paths) if self._scalar else super().describe()


class LaserScanConverter(Converter):
    msgtypes = ("sensor_msgs/msg/LaserScan",)

    def __init__(self, msgtype, options, shape):
        super().__init__(msgtype, options, shape)
        self.range_max = options["range_max"]
        self.sample = options["downsample"] == "sample"

    @classmethod
    def parse(cls, msgtype, opts):
        beams = opts.positive("num_beams", int)
        range_max = opts.positive("range_max", float)
        mode = opts.get("downsample", str, "min", choices=("min", "sample"))
        return cls(msgtype, {"num_beams": beams, "range_max": range_max, "downsample": mode}, (beams,))

    def to_array(self, msg):
        r = _numeric(msg.ranges).astype(np.float32)
        n, beams = r.shape[0], self.shape[0]
        if n < beams:
            raise ConversionError(f"{self.msgtype}: scan has {n} ranges, fewer than num_beams={beams}")
        r = np.where(np.isnan(r) | (r == np.inf), self.range_max, r)
        r = np.where(r == -np.inf, 0.0, r)
        r = np.clip(r, 0.0, self.range_max)
        edges = (np.arange(beams) * n) // beams
        if self.sample:
            centres = ((2 * np.arange(beams) + 1) * n) // (2 * beams)
            return r[centres].astype(np.float32)
        return np.minimum.reduceat(r, edges).astype(np.float32)


class ImageConverter(Converter):
    """An Image to ``(height, width, 3 | 1)``: uint8 RGB or mono, or float32 depth in metres.

    A frame of another size is resized with ``resize`` (Pillow): ``area`` (default; every output
    pixel averages the input pixels it covers, so fine texture does not alias into noise when a
    640x480 camera becomes 64x64), ``bilinear`` or ``nearest``. Depth is resized after invalid
    pixels become ``depth_max``.
    """

    msgtypes = ("sensor_msgs/msg/Image",)
    ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1", "8UC3", "mono16", "16UC1", "32FC1")
    RESIZE = ("area", "bilinear", "nearest")
    OUTPUTS = ("rgb", "mono", "depth")

    def __init__(self, msgtype, options, shape):
        super().__init__(msgtype, options, shape)
        self.output = options["output"]
        self.depth_max = options.get("depth_max")
        self.resize = options["resize"]
        self.dtype = np.dtype(np.float32 if self.output == "depth" else np.uint8)

    @classmethod
    def _frame_options(cls, opts) -> Dict[str, Any]:
        """``height``, ``width``, ``output`` and ``resize``: the options every image stream has."""
        return {"height": opts.positive("height", int), "width": opts.positive("width", int),
                "output": opts.get("output", str, "rgb", choices=cls.OUTPUTS),
                "resize": opts.get("resize", str, "area", choices=cls.RESIZE)}

    @classmethod
    def parse(cls, msgtype, opts):
        o = cls._frame_options(opts)
        o["depth_max"] = opts.positive("depth_max", float, 10.0)
        return cls(msgtype, o, (o["height"], o["width"], 3 if o["output"] == "rgb" else 1))

    def _resized(self, img: np.ndarray) -> np.ndarray:
        """``img`` (h, w, c) uint8 or float32 at this converter's size."""
        h, w = self.shape[0], self.shape[1]
        if img.shape[:2] == (h, w):
            return img
        from PIL import Image  # noqa: PLC0415 - only image streams need Pillow

        method = {"area": Image.Resampling.BOX, "bilinear": Image.Resampling.BILINEAR,
                  "nearest": Image.Resampling.NEAREST}[self.resize]
        if img.dtype == np.uint8 and img.shape[2] in (1, 3):
            frame = Image.fromarray(img[..., 0] if img.shape[2] == 1 else img)
            return np.asarray(frame.resize((w, h), method)).reshape(h, w, img.shape[2])
        channels = [np.asarray(Image.fromarray(np.ascontiguousarray(img[..., c], dtype=np.float32), mode="F")
                               .resize((w, h), method)) for c in range(img.shape[2])]
        return np.stack(channels, -1).astype(img.dtype)

    def _pixels(self, msg) -> np.ndarray:
        """(h, w, c) array in the message's own dtype, padding and byte order removed."""
        enc = str(msg.encoding)
        if enc not in self.ENCODINGS:
            raise ConversionError(f"{self.msgtype}: unsupported encoding '{enc}' (supported: {', '.join(self.ENCODINGS)})")
        h, w, step = int(msg.height), int(msg.width), int(msg.step)
        channels = {"rgb8": 3, "bgr8": 3, "8UC3": 3, "rgba8": 4, "bgra8": 4}.get(enc, 1)
        itemsize = 4 if enc == "32FC1" else 2 if enc in ("16UC1", "mono16") else 1
        raw = _bytes_view(msg.data)
        if h == 0 or w == 0 or step < w * channels * itemsize or raw.shape[0] < h * step:
            raise ConversionError(
                f"{self.msgtype}: {w}x{h} {enc} image with step {step} has only {raw.shape[0]} bytes"
            )
        rows = raw[: h * step].reshape(h, step)[:, : w * channels * itemsize]
        if itemsize == 1:
            return rows.reshape(h, w, channels)
        big = bool(getattr(msg, "is_bigendian", 0))
        dtype = np.dtype(("f4" if itemsize == 4 else "u2")).newbyteorder(">" if big else "<")
        return np.ascontiguousarray(rows).view(dtype).reshape(h, w, 1)

    def to_array(self, msg):
        img = self._pixels(msg)
        enc = str(msg.encoding)
        if self.output == "depth":
            if enc in ("16UC1", "mono16"):
                d = img.astype(np.float32) / 1000.0
                invalid = img == 0
            elif enc == "32FC1":
                d = img.astype(np.float32)
                invalid = ~np.isfinite(d) | (d <= 0)
            else:
                raise ConversionError(f"{self.msgtype}: output 'depth' needs a 16UC1 or 32FC1 image, got {enc}")
            d = np.where(invalid, self.depth_max, d)
            return np.clip(self._resized(d), 0.0, self.depth_max).astype(np.float32)
        if enc in ("16UC1", "mono16", "32FC1"):
            raise ConversionError(f"{self.msgtype}: a {enc} image cannot be read as '{self.output}' (use output: depth)")
        if enc in ("bgr8", "bgra8"):
            img = img[..., 2::-1]
        elif enc in ("rgba8",):
            img = img[..., :3]
        return self._rgb_or_mono(img)

    def _rgb_or_mono(self, img: np.ndarray) -> np.ndarray:
        """uint8 ``(h, w, 3)`` RGB or ``(h, w, 1)`` mono pixels → the ``output`` at this size."""
        if self.output == "rgb":
            if img.shape[2] == 1:
                img = np.repeat(img, 3, axis=2)
            return np.ascontiguousarray(self._resized(np.ascontiguousarray(img)), dtype=np.uint8)
        if img.shape[2] != 1:
            gray = img[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
            img = np.clip(np.rint(gray), 0, 255).astype(np.uint8)[..., None]
        return np.ascontiguousarray(self._resized(np.ascontiguousarray(img)), dtype=np.uint8)


class CompressedImageConverter(ImageConverter):
    """A CompressedImage (JPEG or PNG, decoded by Pillow) to ``(height, width, 3 | 1)`` uint8.

    ``format`` is read as image_transport writes it: ``jpeg``, ``png``, ``rgb8; jpeg
    compressed bgr8``, ``mono8; png compressed mono8`` … (the decoded file carries its own
    colours and channel count). ``output`` and ``resize`` are those of :class:`ImageConverter`,
    by the same code. With ``draft: true`` (default) libjpeg decodes a JPEG at 1/2, 1/4 or 1/8
    scale in the DCT domain (Pillow's ``draft``), the largest reduction that keeps the frame at
    least :attr:`DRAFT_GAP` times ``height`` × ``width`` (as Pillow's ``thumbnail`` does), then
    ``resize`` finishes: a 640x480 frame → 64x64 is decoded at 320x240, 2-3x faster than a full
    decode, a mean 0.4-1.2 grey levels from full decode + resize (up to ~35 at sharp edges:
    Pillow's box filter counts whole pixels, so coarser pixels move the box edges). A gap of 1
    (160x120) is only ~25 % faster again but 1.5-3.7 off on average, up to ~60
    (``bench/bench_converters.py`` measures all three). ``draft: false`` decodes every pixel.
    16-bit PNG and ``compressedDepth`` are refused.
    """

    msgtypes = ("sensor_msgs/msg/CompressedImage",)
    OUTPUTS = ("rgb", "mono")
    DRAFT_GAP = 2

    def __init__(self, msgtype, options, shape):
        super().__init__(msgtype, options, shape)
        self.draft = options["draft"]
        self._kinds: Dict[str, str] = {}

    @classmethod
    def parse(cls, msgtype, opts):
        o = cls._frame_options(opts)
        o["draft"] = opts.get("draft", bool, True)
        return cls(msgtype, o, (o["height"], o["width"], 3 if o["output"] == "rgb" else 1))

    def _kind(self, fmt: str) -> str:
        kind = self._kinds.get(fmt)
        if kind is None:
            words = fmt.lower().replace(";", " ").split()
            kind = "" if "compresseddepth" in words else "JPEG" if {"jpeg", "jpg"} & set(words) else \
                "PNG" if "png" in words else ""
            if not kind:
                raise ConversionError(f"{self.msgtype}: unsupported format {fmt!r} (supported: jpeg, png, "
                                      "e.g. 'rgb8; jpeg compressed bgr8'; not compressedDepth)")
            if len(self._kinds) < 16:
                self._kinds[fmt] = kind
        return kind

    def to_array(self, msg):
        from PIL import Image  # noqa: PLC0415 - only image streams need Pillow

        fmt = str(msg.format)
        kind = self._kind(fmt)
        try:
            frame = Image.open(io.BytesIO(_bytes_view(msg.data)), formats=[kind])
            if kind == "JPEG" and self.draft:
                frame.draft(None, (self.DRAFT_GAP * self.shape[1], self.DRAFT_GAP * self.shape[0]))
            frame.load()
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise ConversionError(f"{self.msgtype}: {fmt!r} data does not decode ({exc})") from None
        if frame.mode not in ("L", "RGB"):
            if frame.mode.startswith(("I", "F")):
                raise ConversionError(f"{self.msgtype}: {fmt!r} image is {frame.mode} (only 8-bit images are supported)")
            frame = frame.convert("L" if frame.mode in ("1", "LA", "La") else "RGB")
        pixels = np.asarray(frame)
        return self._rgb_or_mono(pixels[..., None] if pixels.ndim == 2 else pixels)


_POINTFIELD_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}


class PointCloud2Converter(Converter):
    """A PointCloud2 reduced to a fixed-size float32 array (``mode``).

    Points are read with a NumPy structured dtype built from the ``x``, ``y``, ``z`` fields'
    ``offset`` and ``datatype`` (any of INT8 … FLOAT64), ``point_step``, ``row_step`` and
    ``is_bigendian``; other fields and padding are skipped. Non-finite points (no return in a
    non-dense cloud) and points at exactly (0, 0, 0) (drivers that write zeros for no return)
    are dropped.

    ``range_image`` → ``(elevation_bins, azimuth_bins, 1)`` metres: the smallest range
    ``sqrt(x² + y² + z²)`` in each bin, clipped to ``range_max``; empty bins are ``range_max``.
    Azimuth (degrees, 0 = +x ahead, 90 = +y left) of column ``j`` is in
    ``(180 − (j+1)·360/A, 180 − j·360/A]``: behind at the image's edges, the sensor's left on
    the image's left, straight ahead at column ``A/2``. Elevation of row ``i`` is in
    ``(max − (i+1)·Δ, max − i·Δ]`` with ``Δ = (max − min) / elevation_bins`` (row 0 the top);
    points outside ``[elevation_min_deg, elevation_max_deg]`` are dropped.

    ``voxel`` → ``cells`` = ``(nx, ny, nz)``: cell ``(i, j, k)`` holds the points with
    ``x ∈ [x_min + i·Δx, x_min + (i+1)·Δx)`` (likewise y, z) inside ``bounds`` =
    ``[x_min, x_max, y_min, y_max, z_min, z_max]`` (metres, the cloud's frame); ``value:
    occupancy`` (default) gives 1 for a cell with a point and 0 otherwise, ``value: count``
    the number of points. Points outside the bounds are dropped.
    """

    msgtypes = ("sensor_msgs/msg/PointCloud2",)
    MODES = ("range_image", "voxel")

    def __init__(self, msgtype, options, shape):
        super().__init__(msgtype, options, shape)
        self.mode = options["mode"]
        self._dtypes: Dict[tuple, np.dtype] = {}

    @classmethod
    def parse(cls, msgtype, opts):
        mode = opts.get("mode", str, choices=cls.MODES)
        if mode == "range_image":
            o = {"mode": mode, "azimuth_bins": opts.positive("azimuth_bins", int),
                 "elevation_bins": opts.positive("elevation_bins", int),
                 "elevation_min_deg": opts.get("elevation_min_deg", float),
                 "elevation_max_deg": opts.get("elevation_max_deg", float),
                 "range_max": opts.positive("range_max", float)}
            if not -90.0 <= o["elevation_min_deg"] < o["elevation_max_deg"] <= 90.0:
                raise opts._fail("elevation_max_deg", "need -90 <= elevation_min_deg < elevation_max_deg <= 90, "
                                 f"got {o['elevation_min_deg']} and {o['elevation_max_deg']}")
            return cls(msgtype, o, (o["elevation_bins"], o["azimuth_bins"], 1))
        bounds = opts.float_list("bounds")
        if len(bounds) != 6 or any(bounds[2 * a] >= bounds[2 * a + 1] for a in range(3)):
            raise opts._fail("bounds", f"expected [x_min, x_max, y_min, y_max, z_min, z_max] with each min < max, got {bounds}")
        cells = opts.get("cells", list)
        if len(cells) != 3 or any(isinstance(c, bool) or not isinstance(c, int) or c <= 0 for c in cells):
            raise opts._fail("cells", f"expected three cell counts [nx, ny, nz] > 0, got {cells}")
        value = opts.get("value", str, "occupancy", choices=("occupancy", "count"))
        return cls(msgtype, {"mode": mode, "bounds": bounds, "cells": list(cells), "value": value}, tuple(cells))

    def _dtype(self, msg) -> np.dtype:
        """The structured dtype of (x, y, z) in one point of ``msg`` (cached per layout)."""
        step, big = int(msg.point_step), bool(msg.is_bigendian)
        layout = {str(f.name): (int(f.offset), int(f.datatype)) for f in msg.fields}
        key = (tuple(layout.get(a) for a in _VEC3), step, big)
        dtype = self._dtypes.get(key)
        if dtype is not None:
            return dtype
        missing = [a for a in _VEC3 if a not in layout]
        if missing:
            raise ConversionError(f"{self.msgtype}: no field(s) {', '.join(missing)} in the cloud "
                                  f"(it has {', '.join(layout) or 'no fields'})")
        formats = []
        for a in _VEC3:
            offset, datatype = layout[a]
            if datatype not in _POINTFIELD_DTYPES:
                raise ConversionError(f"{self.msgtype}: field '{a}' has datatype {datatype} (PointField 1 INT8 … 8 FLOAT64)")
            formats.append(np.dtype(_POINTFIELD_DTYPES[datatype]).newbyteorder(">" if big else "<"))
            if offset < 0 or offset + formats[-1].itemsize > step:
                raise ConversionError(f"{self.msgtype}: field '{a}' at offset {offset} does not fit point_step {step}")
        dtype = np.dtype({"names": list(_VEC3), "formats": formats, "offsets": [layout[a][0] for a in _VEC3],
                          "itemsize": step})
        if len(self._dtypes) < 16:
            self._dtypes[key] = dtype
        return dtype

    def points(self, msg) -> np.ndarray:
        """``(N, 3)`` float64 x, y, z of the cloud's valid points (row by row)."""
        dtype = self._dtype(msg)
        h, w, step, row_step = int(msg.height), int(msg.width), int(msg.point_step), int(msg.row_step)
        raw = _bytes_view(msg.data)
        need = (h - 1) * row_step + w * step if h and w else 0
        if row_step < w * step or raw.shape[0] < need:
            raise ConversionError(f"{self.msgtype}: {w}x{h} cloud with point_step {step}, row_step {row_step} "
                                  f"needs {need} bytes, data has {raw.shape[0]}")
        if not need:
            return np.empty((0, 3))
        grid = np.ndarray((h, w), dtype=dtype, buffer=raw, strides=(row_step, step))
        xyz = np.empty((h * w, 3))
        for a, name in enumerate(_VEC3):
            xyz[:, a] = grid[name].reshape(-1)
        return xyz[np.isfinite(xyz).all(axis=1) & xyz.any(axis=1)]

    def to_array(self, msg):
        xyz = self.points(msg)
        o = self.options
        if self.mode == "voxel":
            low, high = np.array(o["bounds"][0::2]), np.array(o["bounds"][1::2])
            cells = np.array(o["cells"])
            xyz = xyz[((xyz >= low) & (xyz < high)).all(axis=1)]
            idx = np.minimum(((xyz - low) / (high - low) * cells).astype(np.intp), cells - 1)
            counts = np.bincount(np.ravel_multi_index(idx.T, self.shape), minlength=self.size)
            out = counts if o["value"] == "count" else counts > 0
            return out.astype(np.float32).reshape(self.shape)
        rows, cols = self.shape[0], self.shape[1]
        lo, hi = o["elevation_min_deg"], o["elevation_max_deg"]
        flat = np.hypot(xyz[:, 0], xyz[:, 1])
        rng = np.hypot(flat, xyz[:, 2])
        elevation = np.degrees(np.arctan2(xyz[:, 2], flat))
        inside = (elevation >= lo) & (elevation <= hi)
        row = np.minimum(np.floor((hi - elevation[inside]) / (hi - lo) * rows).astype(np.intp), rows - 1)
        azimuth = np.degrees(np.arctan2(xyz[inside, 1], xyz[inside, 0]))
        col = np.floor((180.0 - azimuth) / 360.0 * cols).astype(np.intp) % cols
        out = np.full(rows * cols, o["range_max"], dtype=np.float32)
        np.minimum.at(out, row * cols + col, np.minimum(rng[inside], o["range_max"]).astype(np.float32))
        return out.reshape(self.shape)


class TFPoseConverter(Converter):
    """The pose of ``child_frame`` in ``parent_frame`` from ``tf2_msgs/TFMessage`` transforms.

    A :class:`~robot_training.interface.frames.FrameTree` inside the converter takes every transform
    of every message of the stream's topic (``/tf``) and of ``static_topic`` (``/tf_static``;
    ``""`` for none) through :meth:`observe`: per child frame the transform with the newest
    stamp wins (a tie: the later message), whether static or not. The array is the chained
    pose after the latest message: through intermediate frames, edges inverted where the chain
    runs against them, the quaternion normalized after each composition (not sign-canonical:
    ``q`` and ``-q`` are one rotation). Until the chain is complete :meth:`value` raises
    :class:`NotReady` naming the frames on each side of the missing edge. Transforms with a zero
    or non-finite quaternion or translation are skipped (as tf2 does) and named in that
    message. Leading ``/`` of frame names are dropped (ROS 1 style ids).

    ``fields``: ``pose`` (x y z qx qy qz qw), ``position`` (3), ``orientation`` (4, x y z w),
    ``yaw`` (1: rotation about z, ``atan2(2(wz + xy), 1 - 2(y² + z²))``).
    """

    msgtypes = ("tf2_msgs/msg/TFMessage",)
    stateful = True
    GROUPS = {"pose": ("x", "y", "z", "qx", "qy", "qz", "qw"), "position": ("x", "y", "z"),
              "orientation": ("qx", "qy", "qz", "qw"), "yaw": ("yaw",)}

    def __init__(self, msgtype, options, shape):
        super().__init__(msgtype, options, shape)
        self.parent, self.child = options["parent_frame"], options["child_frame"]
        self.extra_topics = ((options["static_topic"], msgtype),) if options["static_topic"] else ()
        self.fields = tuple(options["fields"])
        self.reset()

    @classmethod
    def parse(cls, msgtype, opts):
        frames = [opts.get(k, str).lstrip("/") for k in ("parent_frame", "child_frame")]
        for key, frame in zip(("parent_frame", "child_frame"), frames):
            if not frame or " " in frame:
                raise opts._fail(key, f"expected a frame name like 'base_link', got {opts.data[key]!r}")
        if frames[0] == frames[1]:
            raise opts._fail("child_frame", f"is the parent_frame '{frames[0]}' itself")
        static = opts.get("static_topic", str, "/tf_static")
        if static and (not static.startswith("/") or " " in static or static == opts.data.get("topic")):
            raise opts._fail("static_topic", f"expected another absolute topic like '/tf_static' (or \"\" for none), "
                                             f"got {static!r}")
        fields = opts.str_list("fields", ["position", "orientation"], choices=list(cls.GROUPS))
        options = {"parent_frame": frames[0], "child_frame": frames[1], "static_topic": static, "fields": fields}
        return cls(msgtype, options, (sum(len(cls.GROUPS[f]) for f in fields),))

    def reset(self):
        self.frames = FrameTree()
        self.skipped = ""

    def observe(self, msg):
        for tf in msg.transforms:
            header = tf.header
            child = str(tf.child_frame_id).lstrip("/")
            t, r = tf.transform.translation, tf.transform.rotation
            try:
                pose = make_transform((t.x, t.y, t.z), (r.x, r.y, r.z, r.w), child)
                stamp = int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
                self.frames.set(str(header.frame_id).lstrip("/"), child, stamp, pose)
            except FrameError as exc:
                self.skipped = str(exc)

    def value(self) -> np.ndarray:
        """The chained pose now, or :class:`NotReady`."""
        try:
            pose = self.frames.lookup(self.parent, self.child)
        except FrameError as exc:
            skipped = f" (skipped: {self.skipped})" if self.skipped else ""
            raise NotReady(f"{self.msgtype}: {exc}{skipped}") from None
        (qx, qy, qz, qw), out = pose.rotation, []
        for f in self.fields:
            if f in ("pose", "position"):
                out.extend(pose.translation)
            if f in ("pose", "orientation"):
                out.extend(pose.rotation)
            if f == "yaw":
                out.append(np.arctan2(2.0 * (qw * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz)))
        return np.array(out, dtype=np.float32)

    def to_array(self, msg):
        self.observe(msg)
        return self.value()

    def describe(self):
        return [f"{self.parent}->{self.child}.{n}" for f in self.fields for n in self.GROUPS[f]]


CONVERTERS: Dict[str, type] = {}
for _cls in (JointStateConverter, OdometryConverter, ImuConverter, TwistConverter,
             MultiArrayConverter, LaserScanConverter, ImageConverter, CompressedImageConverter,
             PointCloud2Converter, TFPoseConverter):
    for _t in _cls.msgtypes:
        CONVERTERS[_t] = _cls
del _cls, _t


def make_converter(msgtype: str, opts: Options, *, action: bool = False) -> Converter:
    """The converter of one stream: from :data:`CONVERTERS`, else :class:`FieldsConverter`."""
    if not isinstance(msgtype, str) or msgtype.count("/") != 2:
        raise InterfaceError(f"{opts.where}.type: expected a ROS type name like 'sensor_msgs/msg/JointState', got {msgtype!r}")
    cls = CONVERTERS.get(msgtype)
    if cls is JointStateConverter and action:
        conv = JointStateConverter.parse(msgtype, opts, default_fields=("effort",), action=True)
    elif cls is not None:
        conv = cls.parse(msgtype, opts)
    else:
        conv = FieldsConverter.parse(msgtype, opts)
    if action and (not conv.can_write or conv.is_image):
        raise InterfaceError(f"{opts.where}.type: {msgtype} cannot carry actions")
    return conv


# ----------------------------------------------------------------------------- action limits


def clip_action(values, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """The action as float64, NaNs replaced by 0, clipped to ``[low, high]``."""
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    if a.shape[0] != low.shape[0]:
        raise ConversionError(f"action has {a.shape[0]} values, the interface expects {low.shape[0]}")
    a = np.nan_to_num(a, nan=0.0, posinf=np.inf, neginf=-np.inf)
    return np.clip(a, low, high)


# ----------------------------------------------------------------------------- rosbags factory


def rosbags_message_factory(typestore, msgtype: str) -> Callable[[], Any]:
    """A zero-argument factory of default-valued rosbags messages of ``msgtype``.

    rosbags' message classes have no defaults, so this fills every field (0, '', empty
    arrays, nested defaults) from the typestore's field definitions. rclpy classes need no
    such help: pass the class itself (``Twist``) as the factory.
    """
    from rosbags.typesys.store import Nodetype  # noqa: PLC0415 - rosbags is only needed here

    numpy_types = {"bool": np.bool_, "byte": np.uint8, "char": np.uint8, "int8": np.int8, "uint8": np.uint8,
                   "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32,
                   "int64": np.int64, "uint64": np.uint64, "float32": np.float32, "float64": np.float64}

    def default_of(desc):
        kind, rest = desc[0], desc[1]
        if kind == Nodetype.BASE:
            name = rest[0]
            return "" if name in ("string", "wstring") else False if name == "bool" else \
                0.0 if name.startswith("float") else 0
        if kind == Nodetype.NAME:
            return build(rest)
        sub, length = rest[0], rest[1]
        if sub[0] == Nodetype.BASE and sub[1][0] in numpy_types:
            return np.zeros(length if kind == Nodetype.ARRAY else 0, dtype=numpy_types[sub[1][0]])
        if kind == Nodetype.ARRAY:
            return [default_of(sub) for _ in range(length)]
        return []

    def build(name: str):
        cls = typestore.types[name]
        _, fields = typestore.fielddefs[name]
        return cls(**{fname: default_of(desc) for fname, desc in fields})

    if msgtype not in typestore.types:
        raise ConversionError(f"{msgtype}: not a type known to this typestore")
    return lambda: build(msgtype)
