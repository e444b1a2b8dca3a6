"""Pictures of bags and datasets: message rates over time, and contact sheets of camera frames.

::

    python -m robot_training.bags info run/ --plot rates.png
    python -m robot_training.bags export run/ -o out.npz --contact-sheet sheet.png

Rate plot
    One row per topic on a shared time axis (seconds since the bag's first message): the
    message rate in bins (a few message periods wide, at least 1/200 of the bag), each gap
    shaded red. Gaps are the ones ``bags info`` counts
    (:func:`robot_training.recording.stats.gap_indices`: intervals longer than
    ``GAP_FACTOR`` × the topic's median interval). :func:`rate_plot_data` computes what is
    drawn; :func:`draw_rate_plot` draws it.

Contact sheet
    A grid of the aligned frames of one episode (at most ``max_frames``, evenly spread), every
    camera stream of a step side by side, with the step, its time and the action values
    written under each. :func:`contact_sheet_data` picks the frames and writes the captions;
    :func:`draw_contact_sheet` draws them.

Both draw with matplotlib's Agg canvas (no display, no pyplot state) into PNG files.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from robot_training.interface.description import InterfaceDescription
from robot_training.data.trajectory import Trajectory
from robot_training.recording.stats import GAP_FACTOR, gap_indices

PathLike = Union[str, os.PathLike]

#: a topic's rate bins are this many of its median message periods wide (at least)
BIN_PERIODS = 3
#: and at least this fraction of the bag's duration
MIN_BIN_FRACTION = 1 / 200


class PlotError(ValueError):
    """Nothing (suitable) to draw."""


# ----------------------------------------------------------------------------- rate plot


@dataclass
class TopicRate:
    """What one row of the rate plot shows (times in seconds since the plot's ``t0_ns``)."""

    topic: str
    count: int
    mean_rate_hz: float
    bin_edges_s: np.ndarray           # (B + 1,)
    rate_hz: np.ndarray               # (B,) messages per second in each bin
    gaps_s: List[Tuple[float, float]]  # (start, end) of each gap: the messages either side of it
    message_times_s: np.ndarray        # every message (drawn as ticks for sparse topics)

    @property
    def label(self) -> str:
        text = f"{self.topic}: {self.count} msgs, {self.mean_rate_hz:.1f} Hz"
        if self.gaps_s:
            longest = max(b - a for a, b in self.gaps_s)
            text += f", {len(self.gaps_s)} gap{'s' * (len(self.gaps_s) != 1)} (longest {longest:.3f} s)"
        return text


@dataclass
class RatePlot:
    t0_ns: int
    duration_s: float
    topics: List[TopicRate] = field(default_factory=list)


def rate_plot_data(times_by_topic: Mapping[str, Sequence[int]]) -> RatePlot:
    """Per topic (in the mapping's order): rate over time and gaps, from message times in ns.

    A topic's bins start at its first message and are ``BIN_PERIODS`` median intervals wide (at
    least ``MIN_BIN_FRACTION`` of the plot), counted in integer nanoseconds so that a steady
    stream puts the same number of messages in every bin; the last bin's rate is taken over the
    part of it the topic covers. A topic with fewer than two messages has no bins.
    """
    series = {topic: np.sort(np.asarray(t, dtype=np.int64)) for topic, t in times_by_topic.items()}
    if not series:
        raise PlotError("no topics to plot")
    firsts = [t[0] for t in series.values() if len(t)]
    if not firsts:
        raise PlotError("no messages to plot")
    t0 = int(min(firsts))
    t1 = int(max(t[-1] for t in series.values() if len(t)))
    out = RatePlot(t0, max(t1 - t0, 1) / 1e9)
    for topic, t in series.items():
        n = len(t)
        edges, rate, mean_rate = np.zeros(0), np.zeros(0), 0.0
        if n >= 2:
            span = int(t[-1] - t[0])
            mean_rate = (n - 1) / (span / 1e9) if span > 0 else float("inf")
            median = int(np.median(np.diff(t)))
            width = max(BIN_PERIODS * median, int(np.ceil((t1 - t0) * MIN_BIN_FRACTION)), 1)
            counts = np.bincount((t - t[0]) // width)
            starts = t[0] + width * np.arange(len(counts) + 1, dtype=np.int64)
            seconds = np.full(len(counts), width / 1e9)
            seconds[-1] = min(width, int(t[-1] - starts[-2]) + max(median, 1)) / 1e9
            edges, rate = (starts - t0) / 1e9, counts / seconds
        gaps = [(float(t[i] - t0) / 1e9, float(t[i + 1] - t0) / 1e9) for i in gap_indices(t)]
        out.topics.append(TopicRate(topic, n, mean_rate, edges, rate, gaps, (t - t0) / 1e9))
    return out


def draw_rate_plot(data: RatePlot, out: PathLike, title: str = "") -> Path:
    """The rate plot as a PNG: one row per topic, shared time axis, gaps shaded red."""
    from matplotlib.figure import Figure  # noqa: PLC0415 - matplotlib only when drawing
    from matplotlib.patches import Patch  # noqa: PLC0415

    rows = len(data.topics)
    fig = Figure(figsize=(11, 0.8 + 1.15 * rows), dpi=100, layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    for ax, tr in zip(axes, data.topics):
        if tr.rate_hz.size:
            ax.stairs(tr.rate_hz, tr.bin_edges_s, fill=True, color="tab:blue", alpha=0.35)
            ax.stairs(tr.rate_hz, tr.bin_edges_s, color="tab:blue", linewidth=1.0)
        for a, b in tr.gaps_s:
            ax.axvspan(a, b, color="tab:red", alpha=0.3, linewidth=0)
        if 0 < tr.count <= 50:  # sparse topics (episode events, ...): each message as a tick
            ax.plot(tr.message_times_s, np.zeros(tr.count), "|", color="black", markersize=10)
        top = float(tr.rate_hz.max()) if tr.rate_hz.size else 0.0
        ax.set_ylim(0, top * 1.25 if top > 0 else 1.0)
        ax.set_ylabel("Hz", fontsize=8)
        ax.set_title(tr.label, loc="left", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlim(0, data.duration_s)
    axes[-1].set_xlabel("time since the first message (s)")
    fig.legend(handles=[Patch(color="tab:red", alpha=0.3, label=f"gap (interval > {GAP_FACTOR:g} x median)")],
               loc="outside upper right", fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(out)
    fig.savefig(path, format="png")
    return path


def write_rate_plots(per_bag: Sequence[Tuple[Path, Mapping[str, Sequence[int]]]], out: PathLike) -> List[Path]:
    """One rate plot per bag: ``out`` itself for one bag, ``<out stem>-<bag name>.png`` for several."""
    out = Path(out)
    if not out.parent.is_dir():
        raise PlotError(f"{out.parent}: no such folder (for the plot {out.name})")
    paths = []
    for bag, times in per_bag:
        name = bag.stem if bag.is_file() else bag.name
        path = out if len(per_bag) == 1 else out.with_name(f"{out.stem}-{name}{out.suffix or '.png'}")
        paths.append(draw_rate_plot(rate_plot_data(times), path, title=f"{bag}: message rates"))
    return paths


# ----------------------------------------------------------------------------- contact sheet


@dataclass
class ContactSheet:
    """What a contact sheet shows: ``tiles[i]`` (uint8 RGB, the cameras side by side) is step
    ``steps[i]`` of the episode, with ``captions[i]`` under it."""

    episode_id: str
    cameras: List[str]
    action_names: List[str]
    steps: np.ndarray
    tiles: List[np.ndarray]
    captions: List[str]


def _as_rgb(frame: np.ndarray, depth_max: Optional[float]) -> np.ndarray:
    """A camera frame (H, W, 3 | 1), uint8 or float depth, as uint8 RGB for display."""
    if frame.dtype != np.uint8:  # depth in metres: near is dark
        top = depth_max or float(np.nanmax(frame)) or 1.0
        frame = np.clip(np.rint(np.asarray(frame, dtype=np.float64) / top * 255), 0, 255).astype(np.uint8)
    if frame.shape[-1] == 1:
        frame = np.repeat(frame, 3, axis=-1)
    return frame


def _side_by_side(frames: List[np.ndarray]) -> np.ndarray:
    height = frames[0].shape[0]
    same = []
    for f in frames:
        if f.shape[0] != height:
            from PIL import Image  # noqa: PLC0415

            w = max(1, int(round(f.shape[1] * height / f.shape[0])))
            f = np.asarray(Image.fromarray(f).resize((w, height), Image.Resampling.NEAREST))
        same.append(f)
    return np.concatenate(same, axis=1)


def _format_action(values: np.ndarray) -> str:
    return "[" + ", ".join(f"{v + 0.0:.3g}" for v in np.asarray(values, dtype=np.float64).reshape(-1)) + "]"


def contact_sheet_data(traj: Trajectory, interface: InterfaceDescription, *, max_frames: int = 32) -> ContactSheet:
    """The frames (at most ``max_frames``, evenly spread, first and last included) of one episode."""
    cams = [s for s in interface.observations if s.converter.is_image and s.shape[-1] in (1, 3)]
    if not cams:
        raise PlotError(f"interface '{interface.name}' has no camera stream (an Image or CompressedImage "
                        "observation): a contact sheet needs one")
    if not isinstance(traj.observations, dict):
        raise PlotError(f"episode {traj.episode_id} has no per-stream observations to take frames from")
    n = len(traj)
    if n == 0:
        raise PlotError(f"episode {traj.episode_id} has no steps")
    if max_frames < 1:
        raise PlotError(f"max_frames must be at least 1, got {max_frames}")
    steps = np.unique(np.linspace(0, n - 1, min(n, max_frames)).round().astype(int))
    tiles, captions = [], []
    for k in steps:
        tiles.append(_side_by_side([_as_rgb(np.asarray(traj.observations[s.name][k]), s.converter.options.get("depth_max"))
                                    for s in cams]))
        t = f"  t={traj.timestamps[k] - traj.timestamps[0]:.2f} s" if traj.timestamps is not None else ""
        captions.append(f"step {k}{t}\na={_format_action(traj.actions[k])}")
    return ContactSheet(traj.episode_id, [s.name for s in cams], list(interface.action.converter.describe()),
                        steps, tiles, captions)


def draw_contact_sheet(sheet: ContactSheet, out: PathLike, *, columns: Optional[int] = None) -> Path:
    """The contact sheet as a PNG grid, the caption under each frame."""
    from matplotlib.figure import Figure  # noqa: PLC0415

    count = len(sheet.tiles)
    cols = columns or min(count, 8)
    rows = math.ceil(count / cols)
    h, w = sheet.tiles[0].shape[:2]
    tile_w = 1.7
    tile_h = tile_w * h / w + 0.45  # room for two caption lines
    fig = Figure(figsize=(cols * tile_w + 0.2, rows * tile_h + 0.6), dpi=100, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= count:
            ax.set_axis_off()
            continue
        ax.imshow(sheet.tiles[i], interpolation="nearest")
        ax.set_xlabel(sheet.captions[i], fontsize=7)
    named = any(not n.isdigit() for n in sheet.action_names)
    fig.suptitle(f"{sheet.episode_id}: {', '.join(sheet.cameras)}"
                 + (f"; a = [{', '.join(sheet.action_names)}]" if named else "; a = action"), fontsize=9)
    path = Path(out)
    fig.savefig(path, format="png")
    return path


def write_contact_sheet(trajs: Sequence[Trajectory], interface: InterfaceDescription, out: PathLike, *,
                        episode: int = 0, max_frames: int = 32) -> Tuple[Path, ContactSheet]:
    """The contact sheet of ``trajs[episode]`` written to ``out``."""
    if not -len(trajs) <= episode < len(trajs):
        raise PlotError(f"episode {episode} for the contact sheet: the dataset has {len(trajs)} "
                        f"(0 to {len(trajs) - 1})")
    out = Path(out)
    if not out.parent.is_dir():
        raise PlotError(f"{out.parent}: no such folder (for the contact sheet {out.name})")
    sheet = contact_sheet_data(trajs[episode], interface, max_frames=max_frames)
    return draw_contact_sheet(sheet, out), sheet
