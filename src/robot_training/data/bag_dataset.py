"""rosbag2 bags → :class:`~robot_training.data.trajectory.Trajectory` lists, through an interface description.

::

    trajs = load_bag_dataset("dataset/", "config/interface_inverted_pendulum.yaml")

``path`` is one bag (a rosbag2 folder with ``metadata.yaml``, or a single ``.mcap`` /
``.db3`` file) or a folder holding bags at any depth (e.g. the recorder's
``episode_NNNNNN/`` folders). The storage files are read as they are
(:mod:`robot_training.data.bag_reader`: bags of ``ros2 bag record`` from Foxy to Kilted, split,
compressed or without ``metadata.yaml``, of the project's recorder or of other tools), and
each topic is decoded with the definition the bag carries where it carries one
(:mod:`robot_training.recording.typestore`). Only the topics the description names are
decoded. A topic whose count differs from ``metadata.yaml``'s is reported as a
:class:`BagWarning`.

Time
    Each message is placed at its ``header.stamp`` when it has a non-zero one, else at the
    time the bag recorded it (receive time), in int64 nanoseconds throughout (the
    trajectories' ``timestamps_ns``; ``timestamps`` are the same in float seconds). Mixing the two clocks inside one description
    (e.g. simulated header stamps and wall-clock receive times) is the user's to avoid.

Alignment (the control grid)
    Ticks ``t_k = t_0 + k / control_rate_hz`` run from the first instant every observation
    stream has a message to the last observation (ticks with no command sent before
    ``t_{k+1}`` count as stale). At each tick the
    observation is built from the **latest message at or before** ``t_k`` of each stream
    (exactly what the policy server does live); the action of step ``k`` is the latest
    command sent **before** ``t_{k+1}`` (the command in force during the step); the reward
    of step ``k`` is the sum (``mode: sum``) or last value (``mode: latest``) of reward
    messages stamped in ``(t_k, t_{k+1}]``, or a registered reward function of
    ``(o_k, a_k, o_{k+1})``.

Poses from /tf
    A pose stream of ``tf2_msgs/msg/TFMessage`` (placed at the newest stamp of its
    transforms) has one row per ``/tf`` message once its chain is complete: the transforms of
    every ``/tf`` message at or before it, and every ``/tf_static`` message of the bag
    (timeless). A bag without ``/tf_static`` is read when the chain needs no static edge.

Staleness
    A tick is stale when some stream's latest message is older than ``max_staleness_s``
    (from the description, overridable here). ``stale="split"`` (default) cuts the
    trajectory around stale ticks: each piece is truncated at its end and keeps its order.
    ``stale="flag"`` keeps every tick and marks ``info["stale"]``. Every trajectory carries
    ``info["staleness_s"]``: the largest age of any stream's message at that tick.

Episodes
    With ``episodes: {topic: ...}`` the ``EpisodeEvent`` messages split the grid: START
    opens an episode, END or RESET closes it, the tick at the END's own stamp included (a
    simulator stamps the END with the episode's last observation); ``terminals`` is set on
    the last step when the END's reason is in ``terminal_reasons``, else ``truncations``. Ticks between an END and
    the next START are dropped. With ``episodes: {source: bag}`` every bag is one episode
    (terminal when the recorder's ``episode.yaml`` names a terminal reason).
    ``N`` ticks make ``N - 1`` steps; the observation of the last tick is
    ``final_observation``.

Cache
    The arrays of each bag are stored under ``cache_dir`` (default
    ``$ROBOT_TRAINING_CACHE`` or ``~/.cache/robot_training/bag_dataset``) as ``.npy`` files
    that later loads memory-map. The key hashes the bag's files (names, sizes, mtimes), the
    bytes of its ``metadata.yaml``, the interface fingerprint and the options of this
    function; changing any of them makes a new entry.

Without ``interface``, the description is looked for next to the bags: ``interface.yaml``
in the bag's folder or any parent up to ``path``, or the bag's custom metadata
``robot_training.interface``; a recorded ``interface_fingerprint`` (``episode.yaml``) that
does not match the description is an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import yaml

from robot_training.data.bag_reader import (  # noqa: F401 - BagError and open_reader are this module's API too
    STORAGE_SUFFIXES,
    BagError,
    BagWarning,
    open_reader,
    storage_problem,
)
from robot_training.interface.converters import ConversionError, NotReady
from robot_training.interface.description import (
    EPISODE_EVENT_TYPE,
    InterfaceDescription,
    InterfaceError,
    interface_from_yaml_text,
    load_interface,
)
from robot_training.data.trajectory import Trajectory
from robot_training.recording.episode_meta import (
    EVENT_END,
    EVENT_RESET,
    EVENT_START,
    INTERFACE_CUSTOM_KEY,
    INTERFACE_FILE,
    SIDECAR,
    STATUS_RECORDING,
    read_sidecar,
)

PathLike = Union[str, os.PathLike]

CACHE_VERSION = 2  # 2: timestamps stored as int64 ns


# ----------------------------------------------------------------------------- finding bags


def find_bags(path: PathLike, unfinished: Optional[List[Path]] = None) -> List[Path]:
    """Every bag at ``path``: itself when it is a bag, else the bags below it (sorted).

    A bag folder needs no ``metadata.yaml`` when its storage files (named after the folder)
    are complete. A folder holding bags whose writer was killed (no ``metadata.yaml``, an
    unfinished storage file or the recorder's ``status: recording``) is refused, unless
    ``unfinished`` is a list: those bags are then appended to it and the others returned."""
    p = Path(path)
    if not p.exists():
        raise BagError(f"{p}: no such file or directory")
    if p.is_file():
        if p.suffix in STORAGE_SUFFIXES:
            return [p]
        raise BagError(f"{p}: not a rosbag2 bag (expected a bag folder, a .mcap or a .db3 file)")
    if (p / "metadata.yaml").is_file() or _complete_bag_without_metadata(p):
        return [p]
    if _looks_like_unfinished_bag(p):
        raise BagError(
            f"{p}: bag has no metadata.yaml (its writer was probably killed); run `bags repair {p}` first"
        )
    dirs = [d for d in p.rglob("*") if d.is_dir()]
    bags = sorted({m.parent for m in p.rglob("metadata.yaml")} | {d for d in dirs if _complete_bag_without_metadata(d)})
    inside = set(bags)
    # standalone .mcap/.db3 files (other tools) that are not part of a rosbag2 folder
    bags += sorted(f for f in p.rglob("*") if f.suffix in STORAGE_SUFFIXES and f.is_file()
                   and f.parent not in inside and not _looks_like_unfinished_bag(f.parent))
    left = sorted(d for d in dirs if d not in inside and _looks_like_unfinished_bag(d))
    if left and unfinished is None:
        raise BagError(
            f"{left[0]}: bag has no metadata.yaml (its writer was probably killed); "
            f"run `bags repair {left[0]}` first"
            + (f" ({len(left)} such bags under {p})" if len(left) > 1 else "")
        )
    if unfinished is not None:
        unfinished.extend(left)
    if not bags:
        raise BagError(f"{p}: no rosbag2 bags found (no metadata.yaml, .mcap or .db3 below it)")
    return bags


def _own_storage_files(d: Path) -> List[Path]:
    return [x for x in d.iterdir() if x.suffix in STORAGE_SUFFIXES and x.stem.startswith(d.name) and x.is_file()]


def _looks_like_unfinished_bag(d: Path) -> bool:
    """A rosbag2 folder without metadata: a sidecar, or a storage file named after the folder."""
    if (d / "metadata.yaml").exists():
        return False
    return (d / SIDECAR).is_file() or bool(_own_storage_files(d))


def _complete_bag_without_metadata(d: Path) -> bool:
    """A bag folder without ``metadata.yaml`` whose storage files are complete (read directly, no repair)."""
    if (d / "metadata.yaml").exists() or read_sidecar(d).get("status") == STATUS_RECORDING:
        return False
    files = _own_storage_files(d)
    return bool(files) and not any(storage_problem(f) for f in files)


def _bag_files(bag: Path) -> List[Path]:
    if bag.is_file():
        return [bag]
    return sorted(x for x in bag.iterdir() if x.is_file() and x.name != SIDECAR)


# ----------------------------------------------------------------------------- reading


@dataclass
class _TopicData:
    times: np.ndarray                      # int64 ns, sorted
    arrays: Dict[str, np.ndarray]          # per stream name (or "reward"), aligned with times


@dataclass
class _Events:
    times: np.ndarray
    kinds: np.ndarray
    ids: List[int] = field(default_factory=list)
    reasons: List[str] = field(default_factory=list)


def _check_topics(bag: Path, reader, interface: InterfaceDescription):
    by_topic = {}
    for c in reader.connections:
        by_topic.setdefault(c.topic, []).append(c)
    needed = interface.streams()
    for topic, msgtype in needed:
        conns = by_topic.get(topic)
        if not conns and topic in interface.optional_topics:
            continue  # e.g. /tf_static: only a chain with a static edge needs it
        if not conns:
            available = ", ".join(f"{t} ({cs[0].msgtype})" for t, cs in sorted(by_topic.items())) or "none"
            raise BagError(f"{bag}: no topic {topic} in the bag, the interface ({interface.source}) "
                           f"needs it as {msgtype}; topics in the bag: {available}")
        types = {c.msgtype for c in conns}
        if msgtype not in types:
            raise BagError(f"{bag}: topic {topic} is {', '.join(sorted(types))} in the bag, "
                           f"the interface ({interface.source}) says {msgtype}")
    return {t: [c for c in by_topic[t] if c.msgtype == m] for t, m in needed if t in by_topic}


def _warn(lines: Sequence[str]) -> None:
    for line in lines:
        warnings.warn(line, BagWarning, stacklevel=3)


def make_typestore():
    """rosbags' Kilted typestore plus ``robot_training_msgs`` (for writing bags; reading needs none)."""
    from robot_training.recording.typestore import make_typestore as make  # noqa: PLC0415

    return make()


def _read_bag(bag: Path, interface: InterfaceDescription) -> Tuple[Dict[str, _TopicData], Optional[_Events], dict]:
    with open_reader(bag) as reader:
        conns_by_topic = _check_topics(bag, reader, interface)
        # converters per topic: observation streams, then the action, then the reward
        per_topic: Dict[str, List[Tuple[str, object]]] = {}
        for s in interface.observations:
            per_topic.setdefault(s.topic, []).append((s.name, s.converter.to_array))
        per_topic.setdefault(interface.action.topic, []).append(("action", interface.action.converter.to_array))
        if interface.reward.source == "topic":
            per_topic.setdefault(interface.reward.topic, []).append(("reward", lambda m: float(m.data)))
        event_topic = interface.episodes.topic if interface.episodes.source == "event" else None
        held = {t: [] for t in interface.observers if t in conns_by_topic}  # stateful streams' topics

        conn_list = [c for cs in conns_by_topic.values() for c in cs]
        times: Dict[str, List[int]] = {t: [] for t in conns_by_topic}
        values: Dict[str, Dict[str, list]] = {t: {n: [] for n, _ in per_topic.get(t, ())} for t in conns_by_topic}
        ev_t, ev_k, ev_id, ev_reason = [], [], [], []
        # per connection: (topic, times, [(values list, converter, stream name)])
        slots = {c.id: (c.topic, times[c.topic], [(values[c.topic][n], fn, n) for n, fn in per_topic.get(c.topic, ())])
                 for c in conn_list}
        for conn, t, _, _, msg in reader.decoded(conn_list):
            topic, out_times, outs = slots[conn.id]
            if topic == event_topic:
                ev_t.append(t)
                ev_k.append(int(msg.event))
                ev_id.append(int(msg.episode_id))
                ev_reason.append(str(msg.reason))
                continue
            if topic in held:  # a pose from /tf: fed in time order by _replay_stateful
                held[topic].append((t, msg))
                continue
            out_times.append(t)
            for out, fn, name in outs:
                try:
                    out.append(fn(msg))
                except ConversionError as exc:
                    raise BagError(f"{bag}: {topic} (stream '{name}') at {t} ns: {exc}") from None
        _warn(reader.warnings)
        custom = dict(reader.custom_data)
    if held:
        _replay_stateful(bag, interface, held, per_topic, times, values)

    data: Dict[str, _TopicData] = {}
    for topic, ts in times.items():
        if topic == event_topic or topic in interface.optional_topics:
            continue
        if not ts:
            raise BagError(f"{bag}: no messages on {topic}, which the interface ({interface.source}) needs")
        t_arr = np.asarray(ts, dtype=np.int64)
        order = np.argsort(t_arr, kind="stable")
        sorted_already = bool(np.all(order == np.arange(len(order))))
        arrays = {}
        for name, vals in values[topic].items():
            arr = np.asarray(vals, dtype=np.float64 if name == "reward" else None)
            arrays[name] = arr if sorted_already else arr[order]
        data[topic] = _TopicData(t_arr[order], arrays)
    events = None
    if event_topic is not None:
        o = np.argsort(np.asarray(ev_t, dtype=np.int64), kind="stable")
        events = _Events(np.asarray(ev_t, dtype=np.int64)[o], np.asarray(ev_k, dtype=np.int64)[o],
                         [ev_id[i] for i in o], [ev_reason[i] for i in o])
    return data, events, custom


def _replay_stateful(bag: Path, interface: InterfaceDescription, held: Dict[str, list],
                     per_topic: Dict[str, list], times: Dict[str, List[int]], values: Dict[str, Dict[str, list]]) -> None:
    """The rows of topics read by stateful streams (a pose chained from ``/tf``), from the
    messages ``_read_bag`` held back, ``{topic: [(time, msg)]}``.

    Each stateful stream gets a fresh converter (the interface's own keeps the policy server's
    state). Its extra topics' messages (``/tf_static``) are fed first, as timeless; then the
    topic's messages in time order: after each, one row, once every stream of the topic is
    ready (the value at a tick uses only messages at or before it). A stream never ready is
    an error naming what is missing."""
    for topic in {s.topic for s in interface.observations if s.converter.stateful}:
        fns, waiting = [], {}
        for s in interface.observations:
            if s.topic == topic and s.converter.stateful:
                conv = s.converter.fresh()
                for extra, _ in conv.extra_topics:
                    for _, msg in held.get(extra, ()):
                        conv.observe(msg)
                fns.append((s.name, conv.to_array))
        fns += [(n, fn) for n, fn in per_topic[topic] if n not in dict(fns)]
        msgs = sorted(held.get(topic, ()), key=lambda m: m[0])
        for t, msg in msgs:
            row = []
            for name, fn in fns:
                try:
                    row.append((name, fn(msg)))
                except NotReady as exc:
                    waiting[name] = exc
                except ConversionError as exc:
                    raise BagError(f"{bag}: {topic} (stream '{name}') at {t} ns: {exc}") from None
            if len(row) == len(fns):
                times[topic].append(t)
                for name, arr in row:
                    values[topic][name].append(arr)
        if msgs and not times[topic]:
            name, exc = next(iter(waiting.items()))
            raise BagError(f"{bag}: stream '{name}' is never complete ({len(msgs)} messages on {topic}): {exc}")


# ----------------------------------------------------------------------------- alignment


@dataclass
class _Segment:
    start: float
    end: float
    episode_id: Optional[int]
    ending: Optional[str]  # "terminal", "truncated" or None (bag ended)
    end_inclusive: bool = False  # closed by an END/RESET: the tick at its stamp still belongs to it


def _segments(events: Optional[_Events], terminal_reasons: Sequence[str], bag_ending: Optional[str]) -> List[_Segment]:
    if events is None or len(events.times) == 0:
        return [_Segment(-np.inf, np.inf, None, bag_ending)]
    uses_start = bool(np.any(events.kinds == EVENT_START))
    out: List[_Segment] = []
    current: Optional[_Segment] = None if uses_start else _Segment(-np.inf, np.inf, None, None)
    for t, kind, eid, reason in zip(events.times, events.kinds, events.ids, events.reasons):
        if kind == EVENT_START:
            if current is not None:
                current.end = t
                out.append(current)
            current = _Segment(t, np.inf, eid, None)
        elif kind in (EVENT_END, EVENT_RESET):
            if current is not None:
                current.end = t
                current.end_inclusive = True
                if current.episode_id is None:
                    current.episode_id = eid
                current.ending = "terminal" if kind == EVENT_END and reason in terminal_reasons else "truncated"
                out.append(current)
            current = None if uses_start else _Segment(t, np.inf, None, None)
    if current is not None:
        out.append(current)
    return out


def _runs(mask: np.ndarray) -> List[Tuple[int, int]]:
    """[start, stop) index ranges where ``mask`` is True."""
    if mask.size == 0:
        return []
    padded = np.concatenate([[False], mask, [False]])
    d = np.flatnonzero(padded[1:] != padded[:-1])
    return list(zip(d[::2].tolist(), d[1::2].tolist()))


def _bag_trajectories(bag: Path, interface: InterfaceDescription, *, max_staleness_s: float,
                      stale: str, min_steps: int, sidecar: dict) -> List[Trajectory]:
    data, events, _custom = _read_bag(bag, interface)
    dt = int(round(1e9 / interface.control_rate_hz))
    obs_topics = [s.topic for s in interface.observations]
    act = data[interface.action.topic]
    first = max(data[t].times[0] for t in obs_topics)
    last = max(data[t].times[-1] for t in obs_topics)
    if last < first:
        return []
    ticks = np.arange(first, last + 1, dt, dtype=np.int64)
    limit = int(round(max_staleness_s * 1e9))

    per_stream: Dict[str, np.ndarray] = {}
    age = np.zeros(len(ticks), dtype=np.int64)
    for s in interface.observations:
        td = data[s.topic]
        idx = np.searchsorted(td.times, ticks, side="right") - 1
        per_stream[s.name] = td.arrays[s.name][idx]
        age = np.maximum(age, ticks - td.times[idx])
    a_idx = np.searchsorted(act.times, ticks + dt, side="left") - 1
    no_action = a_idx < 0  # no command sent yet: such ticks count as stale
    a_idx = np.maximum(a_idx, 0)
    actions = act.arrays["action"][a_idx].astype(np.float32)
    age = np.maximum(age, np.maximum(ticks - act.times[a_idx], 0))
    fresh = (age <= limit) & ~no_action

    if interface.reward.source == "topic":
        rd = data[interface.reward.topic]
        rv = rd.arrays["reward"]
        lo = np.searchsorted(rd.times, ticks, side="right")
        hi = np.searchsorted(rd.times, ticks + dt, side="right")
        if interface.reward.mode == "sum":
            c = np.concatenate([[0.0], np.cumsum(rv)])
            rewards = c[hi] - c[lo]
        else:
            rewards = np.where(hi > lo, rv[np.maximum(hi - 1, 0)] if len(rv) else 0.0, 0.0)
        rewards = (rewards * interface.reward.scale).astype(np.float32)
    else:
        rewards = None

    bag_ending = None
    if interface.episodes.source == "bag" and sidecar.get("reason"):
        bag_ending = "terminal" if sidecar.get("reason") in interface.episodes.terminal_reasons else None
    segments = _segments(events, interface.episodes.terminal_reasons, bag_ending)
    out: List[Trajectory] = []
    bag_name = bag.stem if bag.is_file() else bag.name
    for seg in segments:
        in_seg = (ticks >= seg.start) & ((ticks <= seg.end) if seg.end_inclusive else (ticks < seg.end))
        idx_all = np.flatnonzero(in_seg)
        if idx_all.size == 0:
            continue
        pieces = [(idx_all[0], idx_all[-1] + 1)]
        if stale == "split":
            pieces = [(idx_all[0] + a, idx_all[0] + b) for a, b in _runs(fresh[idx_all[0]:idx_all[-1] + 1])]
        base_id = bag_name if seg.episode_id is None or interface.episodes.source == "bag" else f"{bag_name}/episode_{seg.episode_id}"
        kept = [(a, b) for a, b in pieces if b - a - 1 >= min_steps]
        for j, (a, b) in enumerate(kept):
            n = b - a - 1
            obs_now = {k: v[a:b - 1] for k, v in per_stream.items()}
            obs_next = {k: v[a + 1:b] for k, v in per_stream.items()}
            acts = actions[a:b - 1]
            if rewards is not None:
                r = rewards[a:b - 1]
            elif interface.reward.source == "function":
                r = interface.reward.compute(obs_now, acts, obs_next)
            else:
                r = np.zeros(n, dtype=np.float32)
            terminals = np.zeros(n, dtype=bool)
            truncations = np.zeros(n, dtype=bool)
            ends_episode = b == idx_all[-1] + 1
            if ends_episode and seg.ending == "terminal":
                terminals[-1] = True
            else:
                truncations[-1] = True
            info = {"staleness_s": np.where(no_action[a:b - 1], np.inf, age[a:b - 1] / 1e9).astype(np.float32)}
            if stale == "flag":
                info["stale"] = ~fresh[a:b - 1]
            out.append(Trajectory(
                observations=interface.assemble_observation(obs_now),
                actions=acts,
                rewards=r,
                terminals=terminals,
                truncations=truncations,
                final_observation=interface.assemble_observation({k: v[b - 1] for k, v in per_stream.items()}),
                timestamps_ns=ticks[a:b - 1],
                episode_id=base_id if len(kept) == 1 else f"{base_id}#{j}",
                info=info,
            ))
    return out


# ----------------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    env = os.environ.get("ROBOT_TRAINING_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "robot_training" / "bag_dataset"


def bag_content_key(bag: Path) -> dict:
    """What identifies a bag's content: its files' names, sizes, mtimes and metadata bytes."""
    files = []
    for f in _bag_files(bag):
        st = f.stat()
        files.append([f.name, st.st_size, st.st_mtime_ns])
    meta = bag / "metadata.yaml" if bag.is_dir() else None
    meta_sha = hashlib.sha256(meta.read_bytes()).hexdigest() if meta is not None and meta.is_file() else ""
    return {"path": str(bag.resolve()), "files": files, "metadata_sha256": meta_sha}


def _cache_key(bag: Path, interface: InterfaceDescription, options: dict) -> str:
    key = {"version": CACHE_VERSION, "bag": bag_content_key(bag), "interface": interface.fingerprint,
           "options": options}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _flatten(prefix: str, obs) -> Dict[str, np.ndarray]:
    if isinstance(obs, dict):
        return {f"{prefix}.{k}": v for k, v in obs.items()}
    return {prefix: obs}


def _save_cache(entry: Path, trajs: List[Trajectory]) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        index = []
        for i, tr in enumerate(trajs):
            arrays = {**_flatten("obs", tr.observations), **_flatten("final", tr.final_observation),
                      "actions": tr.actions, "rewards": tr.rewards, "terminals": tr.terminals,
                      "truncations": tr.truncations, "timestamps_ns": tr.timestamps_ns,
                      **{f"info.{k}": v for k, v in tr.info.items()}}
            for name, arr in arrays.items():
                np.save(tmp / f"{i}.{name}.npy", np.ascontiguousarray(arr), allow_pickle=False)
            index.append({"episode_id": tr.episode_id, "arrays": sorted(arrays),
                          "dict_obs": isinstance(tr.observations, dict)})
        (tmp / "index.json").write_text(json.dumps({"version": CACHE_VERSION, "trajectories": index}))
        try:
            os.replace(tmp, entry)
        except OSError:  # another process filled the entry first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _load_cache(entry: Path) -> Optional[List[Trajectory]]:
    try:
        index = json.loads((entry / "index.json").read_text())
    except (OSError, ValueError):
        return None
    if index.get("version") != CACHE_VERSION:
        return None
    out = []
    try:
        for i, item in enumerate(index["trajectories"]):
            arrs = {n: np.load(entry / f"{i}.{n}.npy", mmap_mode="r", allow_pickle=False) for n in item["arrays"]}

            def obs(prefix):
                if item["dict_obs"]:
                    return {n[len(prefix) + 1:]: a for n, a in arrs.items() if n.startswith(prefix + ".")}
                return arrs[prefix]

            out.append(Trajectory(
                observations=obs("obs"), actions=arrs["actions"], rewards=arrs["rewards"],
                terminals=arrs["terminals"], truncations=arrs["truncations"],
                final_observation=obs("final"), timestamps_ns=arrs["timestamps_ns"],
                episode_id=item["episode_id"],
                info={n[5:]: a for n, a in arrs.items() if n.startswith("info.")},
            ))
    except (OSError, ValueError, KeyError):
        return None
    return out


# ----------------------------------------------------------------------------- interface lookup


def find_interface(path: PathLike, bags: Sequence[Path]) -> InterfaceDescription:
    """The description stored with the bags (``interface.yaml`` or bag custom metadata)."""
    root = Path(path).resolve()
    candidates: List[Path] = []
    for bag in bags:
        d = bag.resolve() if bag.is_dir() else bag.resolve().parent
        while True:
            candidates.append(d / INTERFACE_FILE)
            if d == root or d == d.parent or root not in d.parents:
                break
            d = d.parent
    for c in dict.fromkeys(candidates):
        if c.is_file():
            return load_interface(c)
    for bag in bags:
        meta = bag / "metadata.yaml" if bag.is_dir() else None
        if meta is not None and meta.is_file():
            try:
                info = yaml.safe_load(meta.read_text()) or {}
                custom = (info.get("rosbag2_bagfile_information") or {}).get("custom_data") or {}
            except yaml.YAMLError:
                custom = {}
            if INTERFACE_CUSTOM_KEY in custom:
                return interface_from_yaml_text(custom[INTERFACE_CUSTOM_KEY], source=f"{meta} custom_data")
    raise InterfaceError(
        f"{path}: no interface description given and none stored with the bags "
        f"(looked for {INTERFACE_FILE} next to them and custom_data '{INTERFACE_CUSTOM_KEY}'); "
        "pass one (--interface FILE)"
    )


# ----------------------------------------------------------------------------- entry point


def load_bag_dataset(
    path: Union[PathLike, Sequence[PathLike]],
    interface: Union[None, PathLike, InterfaceDescription] = None,
    *,
    max_staleness_s: Optional[float] = None,
    stale: str = "split",
    min_steps: int = 1,
    cache: bool = True,
    cache_dir: Optional[PathLike] = None,
    check_fingerprint: bool = True,
    strict: bool = True,
    skipped: Optional[List[Tuple[Path, str]]] = None,
) -> List[Trajectory]:
    """Trajectories from one bag, a folder of bags, or a list of either (see the module doc).

    Raises :class:`BagError` for unreadable bags and bags that lack what the description
    needs, :class:`~robot_training.interface.description.InterfaceError` for a bad description.
    With ``strict=False`` a dataset is read as far as it can be: every usable episode is
    returned, and each bag that is not (unfinished, unreadable, foreign, missing a topic, such
    as an episode recorded before the actor's first command) is skipped and appended to
    ``skipped`` as ``(bag, one-line reason)``. At least one usable bag is still required.
    """
    if stale not in ("split", "flag"):
        raise ValueError(f"stale must be 'split' or 'flag', got {stale!r}")
    roots = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not roots:
        raise BagError("no bag paths given")
    bags: List[Path] = []
    unfinished: Optional[List[Path]] = None if strict else []
    for r in roots:
        bags.extend(find_bags(r, unfinished))
    skipped = skipped if skipped is not None else []
    for bag in unfinished or []:
        skipped.append((bag, f"{bag}: unfinished (no metadata.yaml); run `bags repair {bag}` to recover it"))
    if interface is None:
        desc = find_interface(roots[0], bags)
    else:
        desc = load_interface(interface)
    staleness = desc.max_staleness_s if max_staleness_s is None else float(max_staleness_s)
    options = {"max_staleness_s": staleness, "stale": stale, "min_steps": int(min_steps)}
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out: List[Trajectory] = []
    for bag in bags:
        try:
            trajs = _load_one(bag, desc, cache_root if cache else None, options, check_fingerprint)
        except BagError as exc:
            if strict:
                raise
            skipped.append((bag, str(exc)))
            continue
        for traj in trajs:
            traj.interface_fingerprint = desc.fingerprint
        out.extend(trajs)
    if not strict and skipped and len(skipped) == len(bags) + len(unfinished or []):
        raise BagError(f"no usable bag under {', '.join(str(r) for r in roots)}; the first: {skipped[0][1]}")
    return out


def _load_one(bag: Path, desc: InterfaceDescription, cache_root: Optional[Path], options: dict,
              check_fingerprint: bool):
    sidecar = read_sidecar(bag)
    recorded = sidecar.get("interface_fingerprint")
    if check_fingerprint and recorded and recorded != desc.fingerprint:
        raise BagError(
            f"{bag}: recorded with interface fingerprint {recorded[:12]}…, but the description "
            f"{desc.source} has {desc.fingerprint[:12]}… (pass check_fingerprint=False to load anyway)"
        )
    entry = cache_root / _cache_key(bag, desc, options) if cache_root is not None else None
    trajs = _load_cache(entry) if entry is not None and entry.is_dir() else None
    if trajs is None:
        trajs = _bag_trajectories(bag, desc, max_staleness_s=options["max_staleness_s"],
                                  stale=options["stale"], min_steps=options["min_steps"], sidecar=sidecar)
        if entry is not None:
            try:
                _save_cache(entry, trajs)
            except OSError:
                pass  # a read-only cache directory only costs speed
    return trajs


def is_bag_path(path: PathLike) -> bool:
    """True when ``path`` is a bag or a folder with bags below it (for ``train --data``)."""
    try:
        return bool(find_bags(path))
    except BagError:
        return False


# ----------------------------------------------------------------------------- synthetic bags


def write_synthetic_bag(
    path: PathLike,
    *,
    storage: str = "mcap",
    steps: int = 100,
    rate_hz: float = 100.0,
    joint_names: Sequence[str] = ("slider", "hinge"),
    episodes: int = 1,
    start_ns: int = 1_000_000_000_000,
    gap: Optional[Tuple[int, int]] = None,
    end_reason: str = "terminated",
) -> Path:
    """Write a small pendulum-like bag with rosbags (tests, benchmark, demos).

    Per step ``k`` (time ``start_ns + k / rate_hz``): a ``JointState`` on ``/joint_states``
    (header stamp; position ``[k, -k]``·1e-3, velocity ``[k, 2k]``·1e-3, joints listed in
    reverse order so converters must reorder), a ``Float64MultiArray`` on ``/cmd`` (no header:
    receive time, 1 ms after the state) holding ``[k]`` and a ``Float64`` on ``/reward``
    holding ``1.0`` 2 ms after the state. ``episodes`` > 0 adds ``EpisodeEvent`` START/END
    pairs on ``/episode_event`` splitting the steps evenly (END reason ``end_reason``).
    ``gap=(a, b)`` leaves out the joint states of steps ``a`` to ``b - 1``.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: PLC0415

    from robot_training.interface.converters import rosbags_message_factory, set_stamp  # noqa: PLC0415

    store = make_typestore()
    path = Path(path)
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    dt = int(round(1e9 / rate_hz))
    js_t, cmd_t, rew_t, ev_t = ("sensor_msgs/msg/JointState", "std_msgs/msg/Float64MultiArray",
                                "std_msgs/msg/Float64", EPISODE_EVENT_TYPE)
    js = rosbags_message_factory(store, js_t)()
    cmd = rosbags_message_factory(store, cmd_t)()
    rew = rosbags_message_factory(store, rew_t)()
    ev = rosbags_message_factory(store, ev_t)()
    names = list(joint_names)[::-1]
    js.name = names
    n = len(names)
    rew.data = 1.0
    bounds = []
    if episodes > 0:
        edges = np.linspace(0, steps, episodes + 1).astype(int)
        bounds = list(zip(edges[:-1], edges[1:]))
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        c_js = writer.add_connection("/joint_states", js_t, typestore=store)
        c_cmd = writer.add_connection("/cmd", cmd_t, typestore=store)
        c_rew = writer.add_connection("/reward", rew_t, typestore=store)
        c_ev = writer.add_connection("/episode_event", ev_t, typestore=store) if episodes > 0 else None
        ser = store.serialize_cdr

        def event(t, kind, eid):
            set_stamp(ev, t)
            ev.event = kind
            ev.episode_id = eid
            ev.reason = end_reason if kind == EVENT_END else ""
            writer.write(c_ev, t, ser(ev, ev_t))

        for k in range(steps):
            t = start_ns + k * dt
            for e, (a, b) in enumerate(bounds):
                if k == a:
                    event(t - dt // 4, EVENT_START, e)
            if gap is None or not gap[0] <= k < gap[1]:
                set_stamp(js, t)
                base = np.array([k, -k], dtype=np.float64)[:n] * 1e-3 if n == 2 else np.full(n, k * 1e-3)
                js.position = base[::-1].copy()
                js.velocity = (np.array([k, 2 * k], dtype=np.float64)[:n] * 1e-3)[::-1].copy() if n == 2 else np.full(n, k * 1e-3)
                js.effort = np.zeros(n)
                writer.write(c_js, t + dt // 10, ser(js, js_t))
            cmd.data = np.array([float(k)])
            writer.write(c_cmd, t + 1_000_000, ser(cmd, cmd_t))
            writer.write(c_rew, t + 2_000_000, ser(rew, rew_t))
            for e, (a, b) in enumerate(bounds):
                if k == b - 1:
                    event(t + 3_000_000, EVENT_END, e)
    return path
