"""A small bag with a camera, for the LeRobot export and contact-sheet tests.

Per step ``k`` at ``rate_hz``: a JointState (header stamp, position ``[k, -k]``·1e-2), an rgb8
Image whose pixels encode ``k`` (header stamp), a Float64MultiArray command ``[k, -0.5 k]``
1 ms after them and a Float64 reward ``0.1 k`` 2 ms after; EpisodeEvent START/END pairs split
the steps into ``episodes`` (END reason ``terminated``).
"""

from pathlib import Path

import numpy as np

from robot_training.interface.converters import rosbags_message_factory, set_stamp
from robot_training.interface.description import interface_from_dict

try:  # the typestore's home (bag_dataset formerly)
    from robot_training.recording.typestore import make_typestore
except ImportError:  # pragma: no cover
    from robot_training.data.bag_dataset import make_typestore

H, W = 6, 8


def camera_interface(**changes):
    d = {
        "name": "camera_test",
        "description": "push the block with the camera on",
        "control_rate_hz": 10,
        "max_staleness_s": 0.15,
        "observations": [
            {"name": "joints", "topic": "/joint_states", "type": "sensor_msgs/msg/JointState",
             "joint_names": ["a", "b"], "fields": ["position"]},
            {"name": "camera", "topic": "/camera/image_raw", "type": "sensor_msgs/msg/Image",
             "height": H, "width": W},
        ],
        "action": {"topic": "/cmd", "type": "std_msgs/msg/Float64MultiArray", "size": 2},
        "reward": {"topic": "/reward", "type": "std_msgs/msg/Float64"},
        "episodes": {"topic": "/episode_event", "terminal_reasons": ["terminated"]},
    }
    d.update(changes)
    return interface_from_dict(d, source="<camera test>")


def frame(k: int) -> np.ndarray:
    """The (H, W, 3) uint8 picture of step k: a gradient that moves with k, so frames differ."""
    y, x = np.mgrid[0:H, 0:W]
    return np.stack([(x * 30 + k * 7) % 256, (y * 40 + k * 3) % 256, np.full((H, W), (k * 11) % 256)],
                    axis=-1).astype(np.uint8)


def write_camera_bag(path, *, steps: int = 30, episodes: int = 2, rate_hz: float = 10.0,
                     start_ns: int = 2_000_000_000_000) -> Path:
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = make_typestore()
    path = Path(path)
    dt = int(round(1e9 / rate_hz))
    types = {"js": "sensor_msgs/msg/JointState", "img": "sensor_msgs/msg/Image",
             "cmd": "std_msgs/msg/Float64MultiArray", "rew": "std_msgs/msg/Float64",
             "ev": "robot_training_msgs/msg/EpisodeEvent"}
    msgs = {k: rosbags_message_factory(store, t)() for k, t in types.items()}
    js, img, cmd, rew, ev = (msgs[k] for k in ("js", "img", "cmd", "rew", "ev"))
    js.name = ["a", "b"]
    img.height, img.width, img.encoding, img.step = H, W, "rgb8", W * 3
    edges = np.linspace(0, steps, episodes + 1).astype(int)
    bounds = list(zip(edges[:-1], edges[1:]))
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {k: writer.add_connection(topic, types[k], typestore=store) for k, topic in
                 (("js", "/joint_states"), ("img", "/camera/image_raw"), ("cmd", "/cmd"),
                  ("rew", "/reward"), ("ev", "/episode_event"))}

        def put(key, msg, t):
            writer.write(conns[key], t, store.serialize_cdr(msg, types[key]))

        for k in range(steps):
            t = start_ns + k * dt
            for e, (a, b) in enumerate(bounds):
                if k == a:
                    set_stamp(ev, t - dt // 4)
                    ev.event, ev.episode_id, ev.reason = 0, e, ""
                    put("ev", ev, t - dt // 4)
            set_stamp(js, t)
            js.position = np.array([k, -k], dtype=np.float64) * 1e-2
            js.velocity = np.zeros(2)
            js.effort = np.zeros(2)
            put("js", js, t + 100_000)
            set_stamp(img, t)
            img.data = frame(k).reshape(-1).copy()
            put("img", img, t + 200_000)
            cmd.data = np.array([float(k), -0.5 * k])
            put("cmd", cmd, t + 1_000_000)
            rew.data = 0.1 * k
            put("rew", rew, t + 2_000_000)
            for e, (a, b) in enumerate(bounds):
                if k == b - 1:
                    set_stamp(ev, t + 3_000_000)
                    ev.event, ev.episode_id, ev.reason = 1, e, "terminated"
                    put("ev", ev, t + 3_000_000)
    return path
