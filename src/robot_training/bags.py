"""``bags``: look into, repair and export rosbag2 bags.

::

    bags info PATH [--strict]                       topics, types, counts, rates, gaps, episodes
    bags repair PATH                                rebuild a bag whose recorder was killed
    bags export PATH --interface YAML -o out.npz    bags → trajectories file (load_trajectories)
    bags export PATH --format lerobot --out DIR     bags → LeRobot dataset (robot_training.data.export_lerobot)
    bags info PATH --plot rates.png                 also draw each topic's message rate, gaps marked
    bags export PATH -o out.npz --contact-sheet sheet.png   also draw an episode's camera frames + actions

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

from robot_training.recording.episode_meta import EPISODE_EVENT_TYPE, EVENT_NAMES, EVENT_START, SIDECAR, read_sidecar
from robot_training.recording.stats import gap_indices


class CommandError(Exception):
    """A failure to report as one line, without a traceback."""


# ----------------------------------------------------------------------------- info


def _topic_rows(bag: Path):
    """Per topic of ``bag``: its row of the table; the episode events; one line per problem
    (a topic that does not decode, a count that differs from metadata.yaml)."""
    from robot_training.data.bag_dataset import open_reader
    from robot_training.interface.converters import stamp_ns
    from robot_training.recording.typestore import DecodeError

    with open_reader(bag) as reader:
        conns = reader.connections
        recv = {c.id: [] for c in conns}
        stamps = {c.id: [] for c in conns}
        undecodable, failed, stamped, events = {}, {}, set(), []
        for conn, t, t_recv, _, msg in reader.decoded(undecodable=undecodable):
            cid = conn.id
            recv[cid].append(t_recv)
            if msg is None:
                if cid not in failed:  # the topic's first message that does not decode
                    exc = undecodable[cid]
                    failed[cid] = str(exc) if isinstance(exc, DecodeError) else \
                        f"message {len(recv[cid])} does not decode ({type(exc).__name__}: {exc})"
                continue
            if cid not in stamped and stamp_ns(msg) is not None:
                stamped.add(cid)
            stamps[cid].append(t)
            if conn.msgtype == EPISODE_EVENT_TYPE:
                events.append((t, int(msg.event), int(msg.episode_id), float(msg.episode_return),
                               int(msg.length), bool(msg.success), str(msg.reason)))
        notes = reader.warnings + [f"{bag}: {conns[cid].topic} ({conns[cid].msgtype}) not decodable: {why}; "
                                   "its messages are counted by receive time" for cid, why in failed.items()]
    rows = []
    for c in conns:
        use_stamps = c.id in stamped and c.id not in failed
        t = np.sort(np.asarray(stamps[c.id] if use_stamps else recv[c.id], dtype=np.int64))
        row = {"topic": c.topic, "type": c.msgtype, "count": len(recv[c.id]), "rate_hz": 0.0, "gaps": 0,
               "max_gap_s": 0.0, "clock": "header" if use_stamps else "receive", "times_ns": t}
        if len(t) >= 2:
            duration = (t[-1] - t[0]) / 1e9
            row["rate_hz"] = (len(t) - 1) / duration if duration > 0 else float("inf")
            gaps = np.diff(t)[gap_indices(t)]
            row["gaps"] = int(len(gaps))
            row["max_gap_s"] = float(gaps.max() / 1e9) if len(gaps) else 0.0
        rows.append(row)
    return rows, sorted(events), notes


REPAIR_COMMAND = "python -m robot_training.bags repair"


def cmd_info(args) -> int:
    """Every readable bag in full; each unfinished or unreadable one in one line that says how
    to repair it (``--strict``: the first such bag is an error)."""
    from robot_training.data.bag_dataset import BagError, find_bags

    unfinished: Optional[List[Path]] = None if args.strict else []
    try:
        bags = find_bags(args.path, unfinished)
    except BagError:
        if not unfinished:
            raise
        bags = []  # only unfinished bags: each is listed below
    needs_repair = {bag: "unfinished (no metadata.yaml: its recorder stopped before finishing it)"
                    for bag in unfinished or []}
    readable, unreadable = 0, []
    plotted = []  # (bag, {topic: message times}) for --plot
    for bag in sorted([*bags, *needs_repair]):
        if bag in needs_repair:
            _print_needs_repair(bag, needs_repair[bag])
            continue
        try:
            rows, events, notes = _topic_rows(bag)
        except BagError as exc:
            if args.strict or len(bags) == 1 and not needs_repair:
                raise
            if "bags repair" not in str(exc):  # repair cannot mend it: say why, suggest nothing
                unreadable.append(bag)
                print(f"{bag}: UNREADABLE: {str(exc).removeprefix(f'{bag}: ')}")
                continue
            needs_repair[bag] = str(exc).removeprefix(f"{bag}: ")
            _print_needs_repair(bag, needs_repair[bag])
            continue
        readable += 1
        plotted.append((bag, {r["topic"]: r["times_ns"] for r in rows}))
        total = sum(r["count"] for r in rows)
        print(f"{bag}: {len(rows)} topics, {total} messages")
        width = max([len(r["topic"]) for r in rows] + [5])
        twidth = max([len(r["type"]) for r in rows] + [4])
        print(f"  {'topic':{width}}  {'type':{twidth}}  {'count':>7}  {'rate Hz':>8}  {'gaps':>5}  {'max gap s':>9}  clock")
        for r in rows:
            print(f"  {r['topic']:{width}}  {r['type']:{twidth}}  {r['count']:7d}  {r['rate_hz']:8.2f}  "
                  f"{r['gaps']:5d}  {r['max_gap_s']:9.3f}  {r['clock']}")
        for note in notes:
            print(f"  warning: {note}")
        sidecar = read_sidecar(bag)
        if events:
            print("  episodes (EpisodeEvent):")
            for t, kind, eid, ret, length, success, reason in events:
                extra = f" return {ret:g} length {length} success {success} reason '{reason}'" if kind != EVENT_START else ""
                print(f"    {t / 1e9:.3f} s  {EVENT_NAMES.get(kind, kind)} episode {eid}{extra}")
        if sidecar:
            keys = ("status", "episode_id", "episode_return", "length", "success", "reason", "end_cause",
                    "interface_fingerprint")
            text = ", ".join(f"{k}: {sidecar[k]}" for k in keys if sidecar.get(k) not in (None, ""))
            print(f"  {SIDECAR}: {text}")
        if not events and not sidecar:
            print("  episodes: none recorded (the bag is one episode)")
    if needs_repair or unreadable:
        print(f"{args.path}: {readable} bag{'s' * (readable != 1)} readable"
              + (f", {len(needs_repair)} need{'s' * (len(needs_repair) == 1)} repair (listed above with the command)"
                 if needs_repair else "") + (f", {len(unreadable)} unreadable" if unreadable else ""))
    if not readable:
        raise CommandError(f"{args.path}: no readable bag"
                           + ("; repair the ones listed above first" if needs_repair else ""))
    if args.plot:
        _rate_plots(plotted, args.plot)
    return 0


def _print_needs_repair(bag: Path, reason: str) -> None:
    print(f"{bag}: NEEDS REPAIR: {reason}; repair it with: {REPAIR_COMMAND} {shlex.quote(str(bag))}")


# ----------------------------------------------------------------------------- repair


def cmd_repair(args) -> int:
    from robot_training.recording.repair import RepairError, repair_bag

    try:
        report = repair_bag(args.path)
    except RepairError as exc:
        raise CommandError(str(exc)) from None
    print(report.summary())
    return 0


# ----------------------------------------------------------------------------- export


def cmd_export(args) -> int:
    from robot_training.data.bag_dataset import load_bag_dataset
    from robot_training.interface.description import load_interface
    from robot_training.data.trajectory import save_trajectories

    _export_preflight(args)
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
    if _export_extras(args, trajs, desc):  # --contact-sheet; --format lerobot (written instead of the .npz)
        return 0
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


# ----------------------------------------------------------------------------- pictures, LeRobot export


def _rate_plots(plotted, out) -> None:
    from robot_training.data.plots import PlotError, write_rate_plots

    try:
        for path in write_rate_plots(plotted, out):
            print(f"rate plot: {path}")
    except PlotError as exc:
        raise CommandError(str(exc)) from None


def _export_preflight(args) -> None:
    """Refuse a LeRobot export or a contact sheet that cannot be written before reading the bags."""
    from robot_training.data.export_lerobot import ExportError, check_output

    try:
        if args.format == "lerobot":
            check_output(args.output)
    except ExportError as exc:
        raise CommandError(str(exc)) from None
    if args.contact_sheet and not Path(args.contact_sheet).resolve().parent.is_dir():
        raise CommandError(f"{Path(args.contact_sheet).parent}: no such folder (for --contact-sheet)")


def _export_extras(args, trajs, desc) -> bool:
    """Write the contact sheet and the LeRobot dataset when asked; True when the latter replaced the .npz."""
    from robot_training.data.export_lerobot import ExportError, export_lerobot
    from robot_training.data.plots import PlotError, write_contact_sheet

    try:
        if args.contact_sheet:
            path, sheet = write_contact_sheet(trajs, desc, args.contact_sheet, episode=args.contact_sheet_episode,
                                              max_frames=args.contact_sheet_frames)
            print(f"contact sheet: {path} ({len(sheet.tiles)} frames of {sheet.episode_id})")
        if args.format == "lerobot":
            print(export_lerobot(trajs, desc, args.output, task=args.task).summary())
            return True
    except (ExportError, PlotError) as exc:
        raise CommandError(str(exc)) from None
    return False


# ----------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bags", description="Look into, repair and export rosbag2 bags.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="topics, types, counts, rates, gaps and episodes")
    p.add_argument("path")
    p.add_argument("--strict", action="store_true",
                   help="refuse a dataset with an unfinished or unreadable bag (default: list it as needing repair)")
    p.add_argument("--plot", metavar="PNG", help="also draw each topic's message rate over time, gaps marked "
                   "(several bags: one PNG each, named PNG-stem-<bag>.png)")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("repair", help="rebuild a bag whose writer was killed")
    p.add_argument("path")
    p.set_defaults(func=cmd_repair)
    p = sub.add_parser("export", help="bags -> trajectories file")
    p.add_argument("path")
    p.add_argument("--interface", help="interface description YAML (default: the one stored with the bags)")
    p.add_argument("-o", "--output", "--out", required=True,
                   help="output file (.npz, read by load_trajectories); with --format lerobot a new folder")
    p.add_argument("--format", choices=("npz", "lerobot"), default="npz",
                   help="npz (default) or lerobot: a LeRobotDataset v3.0 folder (needs requirements/lerobot.txt)")
    p.add_argument("--task", default=None,
                   help="--format lerobot: the task of every frame (default: the interface's description or name)")
    p.add_argument("--contact-sheet", metavar="PNG", default=None,
                   help="also draw one episode's camera frames with the actions under them")
    p.add_argument("--contact-sheet-episode", type=int, default=0, help="which trajectory (default 0, the first)")
    p.add_argument("--contact-sheet-frames", type=int, default=32, help="at most this many frames (default 32)")
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
