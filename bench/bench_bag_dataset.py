"""Benchmark: rosbag2 bag → trajectories, first load and cached load.

Writes (with rosbags) a bag of small messages — JointState at 100 Hz with header stamps,
Float64MultiArray commands and Float64 rewards, plus EpisodeEvents — in MCAP and sqlite3,
then times ``load_bag_dataset`` without cache, filling the cache, and from the cache.

    python bench/bench_bag_dataset.py --messages 60000
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from robot_training.data.bag_dataset import load_bag_dataset, write_synthetic_bag
from robot_training.data.interface import interface_from_dict

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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=60000, help="approximate number of messages per bag")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--storages", default="mcap,sqlite3")
    parser.add_argument("--repeat", type=int, default=3, help="cached loads to time (best is reported)")
    args = parser.parse_args(argv)
    desc = interface_from_dict(INTERFACE, source="<bench>")
    steps = args.messages // 3
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_bags_") as tmp:
        tmp = Path(tmp)
        for storage in args.storages.split(","):
            bag = tmp / storage
            t0 = time.perf_counter()
            write_synthetic_bag(bag, storage=storage, steps=steps, rate_hz=100.0, episodes=args.episodes)
            t_write = time.perf_counter() - t0
            n_msgs = steps * 3 + 2 * args.episodes
            cache = tmp / f"cache_{storage}"

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
            rows.append((storage, n_msgs, steps_out, len(trajs), t_write, t_nocache, t_fill, t_cached))
            shutil.rmtree(cache, ignore_errors=True)

    print(f"{'storage':8} {'messages':>9} {'steps':>7} {'episodes':>8} {'write s':>8} "
          f"{'first s':>8} {'first msg/s':>12} {'+cache s':>9} {'cached s':>9} {'cached msg/s':>13} {'speed-up':>9}")
    for storage, n, steps_out, n_traj, tw, tn, tf, tc in rows:
        print(f"{storage:8} {n:9d} {steps_out:7d} {n_traj:8d} {tw:8.2f} {tn:8.2f} {n / tn:12,.0f} "
              f"{tf:9.2f} {tc:9.4f} {n / tc:13,.0f} {tn / tc:8.0f}x")


if __name__ == "__main__":
    main()
