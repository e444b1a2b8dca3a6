"""``bags``: look into, repair and export rosbag2 bags.

::

    bags info PATH [--strict]                       topics, types, counts, rates, gaps, episodes
    bags repair PATH                                rebuild a bag whose recorder was killed
    bags export PATH --interface YAML -o out.npz    bags → trajectories file (load_trajectories)

``PATH`` is a bag folder, a ``.mcap`` / ``.db3`` file or a folder of bags. ``info`` reads
header stamps where the messages have them (else the bag's receive times) and counts as a
gap every interval longer than 1.8 × the topic's median period. ``export`` writes the
trajectories with :func:`robot_training.data.trajectory.save_trajectories` and the interface
description (with its fingerprint) next to them as ``<out>.interface.yaml``.

In a folder of bags, ``info`` lists every readable bag and marks each unfinished (no
``metadata.yaml``) or unreadable one as needing repair, with the command that repairs it;
``--strict`` refuses such a dataset instead.

Bad input prints one line on stderr and exits with status 1 (2 for bad arguments).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np
import yaml

from robot_training.recording.stats import GAP_FACTOR

EVENT_NAMES = {0: "START", 1: "END", 2: "RESET"}


class CommandError(Exception):
    """A failure to report as one line, without a traceback."""


# ----------------------------------------------------------------------------- info


def _topic_rows(bag: Path):
    from robot_training.data.bag_dataset import BagError, _register_from_bag, make_typestore, open_reader
    from robot_training.data.converters import stamp_ns

    store = make_typestore()
    reader = open_reader(bag)
    try:
        connections = list(reader.connections)
        _register_from_bag(store, connections)
        by_id = {c.id: c for c in connections}
        times = {c.id: [] for c in reader.connections}
        stamped = {c.id: False for c in reader.connections}
        events = []
        has_header = {}
        for c in reader.connections:
            fields = store.fielddefs.get(c.msgtype)
            has_header[c.id] = bool(fields and fields[1] and fields[1][0][0] == "header")
        for conn, t, raw in reader.messages():
            c = by_id[conn.id]
            stamp = None
            if c.msgtype in store.fielddefs and (has_header[c.id] or c.msgtype.endswith("EpisodeEvent")):
                try:
                    msg = store.deserialize_cdr(raw, c.msgtype)
                except Exception as exc:  # noqa: BLE001
                    raise BagError(f"{bag}: message on {c.topic} does not deserialize as {c.msgtype} ({exc})") from None
                stamp = stamp_ns(msg)
                if c.msgtype == "robot_training_msgs/msg/EpisodeEvent":
                    events.append((stamp or t, int(msg.event), int(msg.episode_id), float(msg.episode_return),
                                   int(msg.length), bool(msg.success), str(msg.reason)))
            if stamp is not None:
                stamped[c.id] = True
            times[c.id].append(stamp if stamp is not None else t)
    finally:
        reader.close()
    rows = []
    for c in connections:
        t = np.sort(np.asarray(times[c.id], dtype=np.int64))
        row = {"topic": c.topic, "type": c.msgtype, "count": len(t), "rate_hz": 0.0, "gaps": 0,
               "max_gap_s": 0.0, "clock": "header" if stamped[c.id] else "receive"}
        if len(t) >= 2:
            dt = np.diff(t)
            duration = (t[-1] - t[0]) / 1e9
            row["rate_hz"] = (len(t) - 1) / duration if duration > 0 else float("inf")
            median = float(np.median(dt))
            if median > 0:
                gaps = dt[dt > GAP_FACTOR * median]
                row["gaps"] = int(len(gaps))
                row["max_gap_s"] = float(gaps.max() / 1e9) if len(gaps) else 0.0
        rows.append(row)
    return rows, sorted(events)


REPAIR_COMMAND = "python -m robot_training.bags repair"


def cmd_info(args) -> int:
    """Every readable bag in full; each unfinished or unreadable one in one line that says how
    to repair it (``--strict``: the first such bag is an error)."""
    from robot_training.data.bag_dataset import BagError, _read_sidecar, find_bags

    unfinished: Optional[List[Path]] = None if args.strict else []
    try:
        bags = find_bags(args.path, unfinished)
    except BagError:
        if not unfinished:
            raise
        bags = []  # only unfinished bags: each is listed below
    needs_repair = {bag: "unfinished (no metadata.yaml: its recorder stopped before finishing it)"
                    for bag in unfinished or []}
    readable = 0
    for bag in sorted([*bags, *needs_repair]):
        if bag in needs_repair:
            _print_needs_repair(bag, needs_repair[bag])
            continue
        try:
            rows, events = _topic_rows(bag)
        except BagError as exc:
            if args.strict or len(bags) == 1 and not needs_repair:
                raise
            needs_repair[bag] = str(exc).removeprefix(f"{bag}: ")
            _print_needs_repair(bag, needs_repair[bag])
            continue
        readable += 1
        total = sum(r["count"] for r in rows)
        print(f"{bag}: {len(rows)} topics, {total} messages")
        width = max([len(r["topic"]) for r in rows] + [5])
        twidth = max([len(r["type"]) for r in rows] + [4])
        print(f"  {'topic':{width}}  {'type':{twidth}}  {'count':>7}  {'rate Hz':>8}  {'gaps':>5}  {'max gap s':>9}  clock")
        for r in rows:
            print(f"  {r['topic']:{width}}  {r['type']:{twidth}}  {r['count']:7d}  {r['rate_hz']:8.2f}  "
                  f"{r['gaps']:5d}  {r['max_gap_s']:9.3f}  {r['clock']}")
        sidecar = _read_sidecar(bag)
        if events:
            print("  episodes (EpisodeEvent):")
            for t, kind, eid, ret, length, success, reason in events:
                extra = f" return {ret:g} length {length} success {success} reason '{reason}'" if kind != 0 else ""
                print(f"    {t / 1e9:.3f} s  {EVENT_NAMES.get(kind, kind)} episode {eid}{extra}")
        if sidecar:
            keys = ("status", "episode_id", "episode_return", "length", "success", "reason", "end_cause",
                    "interface_fingerprint")
            text = ", ".join(f"{k}: {sidecar[k]}" for k in keys if sidecar.get(k) not in (None, ""))
            print(f"  episode.yaml: {text}")
        if not events and not sidecar:
            print("  episodes: none recorded (the bag is one episode)")
    if needs_repair:
        print(f"{args.path}: {readable} bag{'s' * (readable != 1)} readable, {len(needs_repair)} "
              f"need{'s' * (len(needs_repair) == 1)} repair (listed above with the command)")
    if not readable:
        raise CommandError(f"{args.path}: no readable bag; repair the ones listed above first")
    return 0


def _print_needs_repair(bag: Path, reason: str) -> None:
    print(f"{bag}: NEEDS REPAIR: {reason}; repair it with: {REPAIR_COMMAND} {shlex.quote(str(bag))}")


# ----------------------------------------------------------------------------- repair


def cmd_repair(args) -> int:
    try:
        from robot_training.recording.repair import RepairError, repair_bag
    except ImportError as exc:
        raise CommandError(f"repair is not available in this installation (robot_training.recording.repair: {exc})")
    try:
        report = repair_bag(args.path)
    except RepairError as exc:
        raise CommandError(str(exc)) from None
    print(report.summary())
    return 0


# ----------------------------------------------------------------------------- export


def cmd_export(args) -> int:
    from robot_training.data.bag_dataset import load_bag_dataset
    from robot_training.data.interface import load_interface
    from robot_training.data.trajectory import save_trajectories

    desc = load_interface(args.interface) if args.interface else None
    skipped = []
    trajs = load_bag_dataset(args.path, desc, max_staleness_s=args.max_staleness, stale=args.stale,
                             cache=not args.no_cache, cache_dir=args.cache_dir, strict=args.strict, skipped=skipped)
    for _bag, reason in skipped:
        print(f"bags export: skipped {reason}", file=sys.stderr)
    if not trajs:
        raise CommandError(f"{args.path}: no complete steps after alignment (check the control rate and max_staleness_s)")
    if desc is None:
        from robot_training.data.bag_dataset import find_bags, find_interface

        desc = find_interface(args.path, find_bags(args.path))
    out = save_trajectories(args.output, trajs)
    side = out.with_name(out.name + ".interface.yaml")
    side.write_text(yaml.safe_dump({"fingerprint": desc.fingerprint, "interface": desc.to_dict()}, sort_keys=False))
    steps = sum(len(t) for t in trajs)
    print(f"{out}: {len(trajs)} trajectories, {steps} steps, observation {desc.observation_shape}, "
          f"action {desc.action_dim}, interface {desc.fingerprint[:12]} ({side.name})")
    return 0


def cmd_parity(args) -> int:
    """The player is a ROS program (``robot_training.ros.parity_node``): run it as one."""
    import subprocess

    return subprocess.call([sys.executable, "-m", "robot_training.ros.parity_node", *args.args])


# ----------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bags", description="Look into, repair and export rosbag2 bags.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="topics, types, counts, rates, gaps and episodes")
    p.add_argument("path")
    p.add_argument("--strict", action="store_true",
                   help="refuse a dataset with an unfinished or unreadable bag (default: list it as needing repair)")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("repair", help="rebuild a bag whose writer was killed")
    p.add_argument("path")
    p.set_defaults(func=cmd_repair)
    p = sub.add_parser("export", help="bags -> trajectories file")
    p.add_argument("path")
    p.add_argument("--interface", help="interface description YAML (default: the one stored with the bags)")
    p.add_argument("-o", "--output", required=True, help="output file (.npz, read by load_trajectories)")
    p.add_argument("--max-staleness", type=float, default=None, help="seconds (default: the description's)")
    p.add_argument("--stale", choices=("split", "flag"), default="split")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--strict", action="store_true",
                   help="refuse the dataset when one bag cannot be used (default: skip it, say why)")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("parity", add_help=False,
                       help="play a recorded episode to a real policy server and compare its actions with the "
                            "trainer's offline predict (BAG --checkpoint FILE [--interface FILE] [--episodes N])")
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_parity)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["parity"]:  # its options are the player's own (argparse would take --help)
        return cmd_parity(argparse.Namespace(args=argv[1:]))
    args = build_parser().parse_args(argv)
    from robot_training.config import ConfigError
    from robot_training.data.bag_dataset import BagError
    from robot_training.data.trajectory import TrajectoryError

    try:
        return args.func(args)
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return 0
    except (CommandError, BagError, ConfigError, TrajectoryError, OSError) as exc:
        print(f"bags {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"bags {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - never a traceback for bad input
        print(f"bags {args.command}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
