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
``nav_msgs/msg/Odometry``  ``fields`` ⊆ {pose (7: xyz + quaternion xyzw), position (3),
    orientation (4), twist (6: linear + angular), linear_velocity (3), angular_velocity (3)}.
``sensor_msgs/msg/Imu``  ``fields`` ⊆ {orientation (4), angular_velocity (3),
    linear_acceleration (3)}.
``sensor_msgs/msg/LaserScan``  ``num_beams`` bins (min over each bin, or ``downsample:
    sample``), clipped to ``[0, range_max]``; ``+inf`` and ``nan`` (no return) become
    ``range_max``, ``-inf`` (too close) becomes 0.
``sensor_msgs/msg/Image``  resized (nearest neighbour) to ``height`` × ``width``;
    ``output: rgb`` → uint8 (H, W, 3), ``mono`` → uint8 (H, W, 1), ``depth`` → float32
    metres (H, W, 1) clipped to ``[0, depth_max]`` (invalid readings → ``depth_max``).
    Encodings: rgb8, bgr8, rgba8, bgra8, mono8, mono16, 16UC1 (millimetres), 32FC1 (metres).
``std_msgs/msg/Float64MultiArray`` / ``Float32MultiArray``  ``size`` values of ``data``.
``geometry_msgs/msg/Twist`` / ``TwistStamped``  ``fields`` ⊆ {linear.x … angular.z}
    (default all six).
``std_msgs/msg/Float64``, ``Float32``, ``Int32``, ``Bool`` …  ``fields`` default ``[data]``.
"""

from __future__ import annotations

import array
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from robot_training.config import ConfigError


class InterfaceError(ConfigError):
    """An interface description (or one stream of it) that is not valid."""


class ConversionError(ValueError):
    """A message that cannot be turned into the array the interface describes."""


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
    """``msg.header.stamp`` in nanoseconds, or None when the message has no (non-zero) header stamp."""
    header = getattr(msg, "header", None)
    if header is None:
        return None
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

    def describe(self) -> List[str]:
        """Names of the vector's entries (for logs and dataset metadata)."""
        return [f"{i}" for i in range(self.size)]


class JointStateConverter(Converter):
    msgtypes = ("sensor_msgs/msg/JointState",)
    can_write = True
    FIELDS = ("position", "velocity", "effort")

    def __init__(self, msgtype, options, shape):
        super().__init__(msgtype, options, shape)
        self.joint_names = tuple(options["joint_names"])
        self.fields = tuple(options["fields"])
        self._index_cache: Dict[Tuple[str, ...], np.ndarray] = {}

    @classmethod
    def parse(cls, msgtype, opts, default_fields=("position", "velocity")):
        names = opts.str_list("joint_names")
        fields = opts.str_list("fields", list(default_fields), choices=cls.FIELDS)
        return cls(msgtype, {"joint_names": names, "fields": fields}, (len(names) * len(fields),))

    def _indices(self, msg_names) -> np.ndarray:
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
            if values.shape[0] != len(msg.name):
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

    def __init__(self, msgtype, options, shape):
        super().__init__(msgtype, options, shape)
        self.output = options["output"]
        self.depth_max = options["depth_max"]
        self.resize = options["resize"]
        self.dtype = np.dtype(np.float32 if self.output == "depth" else np.uint8)

    @classmethod
    def parse(cls, msgtype, opts):
        h = opts.positive("height", int)
        w = opts.positive("width", int)
        output = opts.get("output", str, "rgb", choices=("rgb", "mono", "depth"))
        depth_max = opts.positive("depth_max", float, 10.0)
        resize = opts.get("resize", str, "area", choices=cls.RESIZE)
        channels = 3 if output == "rgb" else 1
        return cls(msgtype, {"height": h, "width": w, "output": output, "depth_max": depth_max, "resize": resize},
                   (h, w, channels))

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
        if self.output == "rgb":
            if img.shape[2] == 1:
                img = np.repeat(img, 3, axis=2)
            return np.ascontiguousarray(self._resized(np.ascontiguousarray(img)), dtype=np.uint8)
        if img.shape[2] != 1:
            gray = img[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
            img = np.clip(np.rint(gray), 0, 255).astype(np.uint8)[..., None]
        return np.ascontiguousarray(self._resized(np.ascontiguousarray(img)), dtype=np.uint8)


CONVERTERS: Dict[str, type] = {}
for _cls in (JointStateConverter, OdometryConverter, ImuConverter, TwistConverter,
             MultiArrayConverter, LaserScanConverter, ImageConverter):
    for _t in _cls.msgtypes:
        CONVERTERS[_t] = _cls
del _cls, _t


def make_converter(msgtype: str, opts: Options, *, action: bool = False) -> Converter:
    """The converter of one stream: from :data:`CONVERTERS`, else :class:`FieldsConverter`."""
    if not isinstance(msgtype, str) or msgtype.count("/") != 2:
        raise InterfaceError(f"{opts.where}.type: expected a ROS type name like 'sensor_msgs/msg/JointState', got {msgtype!r}")
    cls = CONVERTERS.get(msgtype)
    if cls is JointStateConverter and action:
        conv = JointStateConverter.parse(msgtype, opts, default_fields=("effort",))
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
