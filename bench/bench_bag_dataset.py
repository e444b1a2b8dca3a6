"""Benchmark: rosbag2 bag → trajectories, first load and cached load.

``synthetic``: (with rosbags) a bag of small messages — JointState at 100 Hz with header
stamps, Float64MultiArray commands and Float64 rewards, plus EpisodeEvents — in MCAP and
sqlite3, then times ``load_bag_dataset`` without cache, filling the cache, and from the cache.

``real``: a bag like a robot's ``ros2 bag record``: several topics at different rates, header
stamps everywhere — JointState of 12 named joints (200 Hz), Imu with covariances (200 Hz),
Odometry (50 Hz), Twist commands (50 Hz), tf with three transforms (100 Hz) and topics the
description does not use (diagnostics, battery, rosout) — MCAP with zstd chunks and sqlite3.
Its first load is also timed in a fresh interpreter ("cold": decoders generated, stores loaded).

    python bench/bench_bag_dataset.py --messages 60000 --seconds 25
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from robot_training.data.bag_dataset import load_bag_dataset, write_synthetic_bag
from robot_training.interface.description import interface_from_dict

INTERFACE = {
    "name": "bench",
    "control_rate_hz": 100,
    "max_staleness_s": 0.015,
    "observations": [{"name": "joints", "topic": "/joint_states", "type": "sensor_msgs/msg/JointState",
                      "joint_names": ["slider", "hinge"], "fields": ["position", "velocity"]}],
    "action": {"topic": "/cmd", "type": "std_msgs/msg/Float64MultiArray", "size": 1, "low": [-3], "high": [3]},
    "reward": {"topic": "/reward", "type": "std_msgs/msg/Float64"},
    "episodes": {"topic": "/episode_event"},
}


JOINTS = [f"{leg}_{j}_joint" for leg in ("fl", "fr", "rl", "rr") for j in ("hip", "thigh", "calf")]
REAL_TOPICS = {"/joint_states": ("sensor_msgs/msg/JointState", 200), "/imu/data": ("sensor_msgs/msg/Imu", 200),
               "/odom": ("nav_msgs/msg/Odometry", 50), "/tf": ("tf2_msgs/msg/TFMessage", 100),
               "/cmd_vel": ("geometry_msgs/msg/Twist", 50), "/diagnostics": ("diagnostic_msgs/msg/DiagnosticArray", 2),
               "/battery_state": ("sensor_msgs/msg/BatteryState", 10), "/rosout": ("rcl_interfaces/msg/Log", 20)}
REAL_INTERFACE = {
    "name": "bench_real", "control_rate_hz": 50, "max_staleness_s": 0.05, "episodes": {"source": "bag"},
    "observations": [
        {"name": "joints", "topic": "/joint_states", "type": "sensor_msgs/msg/JointState", "joint_names": JOINTS,
         "fields": ["position", "velocity"]},
        {"name": "imu", "topic": "/imu/data", "type": "sensor_msgs/msg/Imu"},
        {"name": "odom", "topic": "/odom", "type": "nav_msgs/msg/Odometry"}],
    "action": {"topic": "/cmd_vel", "type": "geometry_msgs/msg/Twist", "fields": ["linear.x", "angular.z"]},
}


def write_real_like_bag(path: Path, storage: str, seconds: float, start_ns: int = 1_700_000_000_123_456_789) -> int:
    """A robot-like bag (see the module doc); returns its number of messages."""
    from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: PLC0415
    from rosbags.rosbag2.enums import CompressionFormat, CompressionMode  # noqa: PLC0415

    from robot_training.data.bag_dataset import make_typestore  # noqa: PLC0415
    from robot_training.interface.converters import rosbags_message_factory, set_stamp  # noqa: PLC0415

    store = make_typestore()
    rng = np.random.default_rng(0)
    msgs = {t: rosbags_message_factory(store, m)() for t, (m, _) in REAL_TOPICS.items()}
    msgs["/joint_states"].name = list(JOINTS)
    imu, odom = msgs["/imu/data"], msgs["/odom"]
    for c in ("orientation_covariance", "angular_velocity_covariance", "linear_acceleration_covariance"):
        setattr(imu, c, rng.random(9))
    imu.header.frame_id, odom.header.frame_id, odom.child_frame_id = "imu_link", "odom", "base_link"
    odom.pose.covariance, odom.twist.covariance = rng.random(36), rng.random(36)
    tfs = []
    for child in ("base_link", "lidar_link", "imu_link"):
        tf = rosbags_message_factory(store, "geometry_msgs/msg/TransformStamped")()
        tf.header.frame_id, tf.child_frame_id, tf.transform.rotation.w = "odom", child, 1.0
        tfs.append(tf)
    msgs["/tf"].transforms = tfs
    status = rosbags_message_factory(store, "diagnostic_msgs/msg/DiagnosticStatus")()
    status.name, status.message, status.hardware_id = "motors", "ok", "mcu0"
    status.values = [store.types["diagnostic_msgs/msg/KeyValue"](f"temp{i}", "41.5") for i in range(8)]
    msgs["/diagnostics"].status = [status]
    log = msgs["/rosout"]
    log.name, log.msg, log.file, log.function = "controller", "tick ok", "controller.cpp", "update"
    events = []
    for topic, (_, hz) in REAL_TOPICS.items():
        dt = int(round(1e9 / hz))
        phase = int(rng.integers(0, dt))
        events += [(start_ns + phase + k * dt, topic, k) for k in range(int(seconds * hz))]
    events.sort()
    writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3)
    if storage == "mcap":
        writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    with writer:
        conns = {t: writer.add_connection(t, m, typestore=store) for t, (m, _) in REAL_TOPICS.items()}
        for t, topic, k in events:
            m = msgs[topic]
            if topic == "/joint_states":
                m.position, m.velocity, m.effort = np.sin(np.arange(12) + k * 0.01), np.cos(np.arange(12)), np.zeros(12)
            elif topic == "/imu/data":
                m.angular_velocity.z, m.linear_acceleration.z = k * 1e-3, 9.81
            elif topic == "/odom":
                m.pose.pose.position.x, m.twist.twist.linear.x = k * 1e-2, 0.5
            elif topic == "/cmd_vel":
                m.linear.x, m.angular.z = 0.5, k * 1e-3
            for x in tfs if topic == "/tf" else ():
                set_stamp(x, t)
            set_stamp(m, t)
            writer.write(conns[topic], t + 150_000, store.serialize_cdr(m, REAL_TOPICS[topic][0]))
    return len(events)


def cold_first_load(bag: Path, real: bool) -> float:
    """Seconds of one ``load_bag_dataset(cache=False)`` in a fresh interpreter (the call only)."""
    code = ("import sys, time; sys.path.insert(0, %r); import bench_bag_dataset as b; "
            "from robot_training.interface.description import interface_from_dict as f; "
            "d = f(b.REAL_INTERFACE if %r else b.INTERFACE); t = time.perf_counter(); "
            "b.load_bag_dataset(%r, d, cache=False); print(time.perf_counter() - t)") % (
        str(Path(__file__).parent), real, str(bag))
    return float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=60000, help="approximate number of messages per synthetic bag")
    parser.add_argument("--seconds", type=float, default=25.0, help="length of the real-like bag (632 messages/s)")
    parser.add_argument("--cases", default="synthetic,real")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--storages", default="mcap,sqlite3")
    parser.add_argument("--repeat", type=int, default=3, help="cached loads to time (best is reported)")
    args = parser.parse_args(argv)
    steps = args.messages // 3
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_bags_") as tmp:
        tmp = Path(tmp)
        for case in args.cases.split(","):
            desc = interface_from_dict(REAL_INTERFACE if case == "real" else INTERFACE, source="<bench>")
            for storage in args.storages.split(","):
                rows.append(run_case(case, storage, tmp, desc, steps, args))
    print(f"{'case':9} {'storage':8} {'messages':>9} {'steps':>7} {'episodes':>8} {'write s':>8} {'cold s':>7} "
          f"{'cold msg/s':>11} {'first s':>8} {'first msg/s':>12} {'+cache s':>9} {'cached s':>9} "
          f"{'cached msg/s':>13} {'speed-up':>9}")
    for case, storage, n, steps_out, n_traj, tw, tcold, tn, tf, tc in rows:
        print(f"{case:9} {storage:8} {n:9d} {steps_out:7d} {n_traj:8d} {tw:8.2f} {tcold:7.3f} {n / tcold:11,.0f} "
              f"{tn:8.3f} {n / tn:12,.0f} {tf:9.2f} {tc:9.4f} {n / tc:13,.0f} {tn / tc:8.0f}x")


def run_case(case: str, storage: str, tmp: Path, desc, steps: int, args):
    bag = tmp / f"{case}_{storage}"
    t0 = time.perf_counter()
    if case == "real":
        n_msgs = write_real_like_bag(bag, storage, args.seconds)
    else:
        write_synthetic_bag(bag, storage=storage, steps=steps, rate_hz=100.0, episodes=args.episodes)
        n_msgs = steps * 3 + 2 * args.episodes
    t_write = time.perf_counter() - t0
    t_cold = cold_first_load(bag, case == "real")
    cache = tmp / f"cache_{case}_{storage}"

    t0 = time.perf_counter()
    trajs = load_bag_dataset(bag, desc, cache=False)
    t_nocache = time.perf_counter() - t0
    t0 = time.perf_counter()
    load_bag_dataset(bag, desc, cache_dir=cache)
    t_fill = time.perf_counter() - t0
    t_cached = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        cached = load_bag_dataset(bag, desc, cache_dir=cache)
        t_cached = min(t_cached, time.perf_counter() - t0)
    steps_out = sum(len(t) for t in trajs)
    assert sum(len(t) for t in cached) == steps_out
    shutil.rmtree(cache, ignore_errors=True)
    return case, storage, n_msgs, steps_out, len(trajs), t_write, t_cold, t_nocache, t_fill, t_cached


if __name__ == "__main__":
    main()
