"""Trajectories → a LeRobot dataset on disk (LeRobotDataset format v3.0), written with pyarrow.

::

    python -m robot_training.bags export dataset/ --format lerobot --out lerobot_ds/

    from robot_training.data.export_lerobot import export_lerobot
    summary = export_lerobot(trajs, interface, "lerobot_ds/", task="balance the pole")

Why not through the ``lerobot`` package: no release of it installs and imports beside this
project's torch 2.13.0 CPU build. lerobot 0.3.3 to 0.4.4 pin ``torch<2.8`` or ``torch<2.11``,
0.1.0 pins torchvision 0.17 (torch 2.2); 0.3.2 installs but needs ``gymnasium<1.0`` (this
project pins 1.4.0) and its dataset module imports torchvision, whose only build for torch
2.13.0 (0.28.0) is a CUDA build that fails to load beside the CPU torch
(``libc10_cuda.so: cannot open shared object file``). So this module writes the files of the
format LeRobot documents for its datasets itself, with ``pyarrow`` only (the optional
dependency group ``requirements/lerobot.txt``).

Layout (``out`` is the dataset root; ``lerobot.datasets.lerobot_dataset.LeRobotDataset(repo_id,
root=out)`` of lerobot >= 0.4 reads it)::

    meta/info.json                              codebase_version "v3.0", fps, features, totals,
                                                splits, data_path / video_path templates
    meta/stats.json                             per feature: min max mean std count q01 q10 q50 q90 q99
    meta/tasks.parquet                          the task strings (pandas index) and task_index
    meta/episodes/chunk-000/file-000.parquet    one row per episode: episode_index, tasks, length,
                                                data/chunk_index, data/file_index,
                                                dataset_from_index, dataset_to_index,
                                                meta/episodes/chunk_index, meta/episodes/file_index,
                                                stats/<feature>/<stat>, source_episode_id
    data/chunk-000/file-000.parquet             one row per frame (a new file past ~100 MB)

Features (one frame per step of a trajectory):

* ``observation.<name>`` for each observation stream of the interface description: vectors as
  their float arrays (``names`` are the converter's entry names, e.g. ``hinge.position``);
  uint8 camera streams (rgb, mono) as ``image`` features (PNG bytes in the parquet, shape
  ``(height, width, channels)``); depth streams and other float grids (PointCloud2 range
  images, voxels) as float32 arrays of their shape, losslessly;
* ``action``; ``next.reward``; ``next.done`` (the episode ends after this step),
  ``next.terminated`` (it ended in a terminal state; ``done and not terminated`` is a
  truncation);
* ``timestamp`` (seconds since the episode's first step), ``frame_index``,
  ``episode_index``, ``index`` (frame index in the whole dataset), ``task_index``.

A feature of shape ``(1,)`` is a scalar column, a vector a fixed-size list, as LeRobot stores
them. The trajectory's ``final_observation`` has no frame of its own (a LeRobot episode's
next observation is its next frame's). The folder is written beside ``out`` and renamed into
place at the end, so an interrupted export leaves no half dataset.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from robot_training.interface.description import InterfaceDescription
from robot_training.data.trajectory import Trajectory

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000          # files per chunk folder
DATA_FILE_SIZE_MB = 100     # a data file is closed once it holds about this much
VIDEO_FILE_SIZE_MB = 200    # written to info.json for readers; no videos are written
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
INSTALL_COMMAND = "pip install -r requirements/lerobot.txt"
SETUP_COMMAND = "ROBOT_TRAINING_EXTRAS=lerobot make setup"
#: frames of a camera stream that its statistics are computed over (evenly spread)
STATS_MAX_IMAGES = 2000

PathLike = Union[str, os.PathLike]


class ExportError(ValueError):
    """A dataset that cannot be exported (missing optional dependency, bad output folder, ...)."""


def require_pyarrow():
    """The ``pyarrow`` module, or an :class:`ExportError` that says how to install it."""
    try:
        import pyarrow  # noqa: PLC0415 - optional dependency group 'lerobot'
        import pyarrow.parquet  # noqa: F401, PLC0415
    except ImportError:
        raise ExportError(
            "--format lerobot needs pyarrow, from the optional dependency group 'lerobot', which is not "
            f"installed: install it with `{INSTALL_COMMAND}` (or `{SETUP_COMMAND}`)"
        ) from None
    return pyarrow


# ----------------------------------------------------------------------------- features


def lerobot_features(interface: InterfaceDescription) -> Dict[str, dict]:
    """The ``features`` of ``meta/info.json`` for datasets of ``interface`` (key order = column order)."""
    feats: Dict[str, dict] = {}
    for s in interface.observations:
        conv = s.converter
        key = f"observation.{s.name}"
        if conv.is_image:
            h, w, c = conv.shape
            if conv.dtype == np.uint8:
                feats[key] = {"dtype": "image", "shape": [h, w, c], "names": ["height", "width", "channels"]}
            else:  # depth in metres, range images: no lossless image encoding in LeRobot, a float array
                feats[key] = {"dtype": np.dtype(conv.dtype).name, "shape": [h, w, c], "names": None}
        else:
            feats[key] = {"dtype": np.dtype(conv.dtype).name, "shape": [conv.size], "names": list(conv.describe())}
    act = interface.action.converter
    feats["action"] = {"dtype": "float32", "shape": [act.size], "names": list(act.describe())}
    feats["next.reward"] = {"dtype": "float32", "shape": [1], "names": None}
    feats["next.done"] = {"dtype": "bool", "shape": [1], "names": None}
    feats["next.terminated"] = {"dtype": "bool", "shape": [1], "names": None}
    for name, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                        ("index", "int64"), ("task_index", "int64")):
        feats[name] = {"dtype": dtype, "shape": [1], "names": None}
    return feats


def _hf_feature(ft: dict) -> dict:
    """The Hugging Face ``datasets`` feature description of one LeRobot feature (parquet metadata)."""
    if ft["dtype"] == "image":
        return {"_type": "Image"}
    shape = list(ft["shape"])
    if shape == [1]:
        return {"dtype": ft["dtype"], "_type": "Value"}
    if len(shape) == 1:
        return {"feature": {"dtype": ft["dtype"], "_type": "Value"}, "length": shape[0], "_type": "Sequence"}
    return {"shape": shape, "dtype": ft["dtype"], "_type": f"Array{len(shape)}D"}


def _arrow_type(pa, ft: dict):
    if ft["dtype"] == "image":
        return pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    value = pa.from_numpy_dtype(np.dtype(ft["dtype"]))
    shape = list(ft["shape"])
    if shape == [1]:
        return value
    if len(shape) == 1:
        return pa.list_(value, shape[0])
    t = value
    for _ in shape:
        t = pa.list_(t)
    return t


def _png(frame: np.ndarray) -> bytes:
    from PIL import Image  # noqa: PLC0415 - only camera streams need Pillow

    img = Image.fromarray(frame[..., 0] if frame.shape[-1] == 1 else frame)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _column(pa, ft: dict, values: np.ndarray):
    """One arrow column of ``len(values)`` frames for feature ``ft``."""
    typ = _arrow_type(pa, ft)
    if ft["dtype"] == "image":
        return pa.array([{"bytes": _png(np.ascontiguousarray(f)), "path": None} for f in values], type=typ)
    values = np.ascontiguousarray(values, dtype=np.dtype(ft["dtype"]))
    shape = list(ft["shape"])
    if shape == [1]:
        return pa.array(values.reshape(len(values)), type=typ)
    if len(shape) == 1:
        flat = pa.array(values.reshape(-1), type=typ.value_type)
        return pa.FixedSizeListArray.from_arrays(flat, shape[0])
    arr = pa.array(values.reshape(-1), type=pa.from_numpy_dtype(values.dtype))
    for size in reversed(shape):  # innermost list first
        offsets = np.arange(0, len(arr) + 1, size, dtype=np.int32)
        arr = pa.ListArray.from_arrays(pa.array(offsets), arr)
    return arr


def _hf_schema_metadata(features: Dict[str, dict]) -> Dict[bytes, bytes]:
    info = {"info": {"features": {k: _hf_feature(ft) for k, ft in features.items()}}}
    return {b"huggingface": json.dumps(info).encode()}


# ----------------------------------------------------------------------------- statistics


def _image_sample(values: np.ndarray, keep: int) -> np.ndarray:
    """At most ``keep`` frames of ``values``, evenly spread (camera statistics are taken over these)."""
    if len(values) <= keep:
        return values
    return values[np.linspace(0, len(values) - 1, keep).round().astype(int)]


def _stats(values: np.ndarray, ft: dict, count: Optional[int] = None) -> Dict[str, list]:
    """LeRobot's per-feature statistics: per entry for vectors, per channel ``(C, 1, 1)`` for images
    (uint8 images scaled to [0, 1], as LeRobot normalizes them; taken over at most
    :data:`STATS_MAX_IMAGES` frames). ``count`` is the number of frames (default: ``len(values)``)."""
    n = len(values) if count is None else count
    if len(ft["shape"]) == 3:
        values = _image_sample(values, STATS_MAX_IMAGES)
        c = values.shape[-1]
        x = values.reshape(-1, c).astype(np.float64)
        if ft["dtype"] == "image":
            x = x / 255.0
        shape = (c, 1, 1)
    else:
        x = values.reshape(len(values), -1).astype(np.float64)
        shape = (x.shape[1],)
    out = {"min": x.min(axis=0), "max": x.max(axis=0), "mean": x.mean(axis=0), "std": x.std(axis=0)}
    for q in QUANTILES:
        out[f"q{int(round(q * 100)):02d}"] = np.quantile(x, q, axis=0)
    stats = {k: v.reshape(shape).tolist() for k, v in out.items()}
    stats["count"] = [int(n)]
    return stats


# ----------------------------------------------------------------------------- frames


def _episode_frames(traj: Trajectory, interface: InterfaceDescription, fps: float, episode_index: int,
                    first_index: int, task_index: int) -> Dict[str, np.ndarray]:
    """Every feature's values for the frames of one trajectory."""
    n = len(traj)
    cols: Dict[str, np.ndarray] = {}
    for s in interface.observations:
        if isinstance(traj.observations, dict):
            cols[f"observation.{s.name}"] = np.asarray(traj.observations[s.name])
        else:
            cols[f"observation.{s.name}"] = np.asarray(traj.observations)[:, interface.observation_slices[s.name]]
    cols["action"] = traj.actions
    cols["next.reward"] = traj.rewards
    cols["next.done"] = traj.terminals | traj.truncations
    cols["next.terminated"] = traj.terminals
    if traj.timestamps is not None and n:
        cols["timestamp"] = (traj.timestamps - traj.timestamps[0]).astype(np.float32)
    else:
        cols["timestamp"] = (np.arange(n) / fps).astype(np.float32)
    cols["frame_index"] = np.arange(n, dtype=np.int64)
    cols["episode_index"] = np.full(n, episode_index, dtype=np.int64)
    cols["index"] = np.arange(first_index, first_index + n, dtype=np.int64)
    cols["task_index"] = np.full(n, task_index, dtype=np.int64)
    return cols


@dataclass
class ExportSummary:
    """What :func:`export_lerobot` wrote."""

    root: Path
    episodes: int
    frames: int
    features: Dict[str, dict]
    data_files: List[Path]

    def summary(self) -> str:
        cams = [k for k, ft in self.features.items() if ft["dtype"] == "image"]
        return (f"{self.root}: LeRobot dataset ({CODEBASE_VERSION}), {self.episodes} episodes, {self.frames} frames, "
                f"{len(self.features)} features" + (f" (images: {', '.join(cams)})" if cams else "")
                + f", {len(self.data_files)} data file{'s' * (len(self.data_files) != 1)}")


def check_output(out: PathLike) -> Path:
    """``out`` as a Path; :class:`ExportError` unless pyarrow is installed and ``out`` can become a
    new dataset folder (absent or empty, its parent existing). ``bags export`` calls it before
    reading any bag."""
    require_pyarrow()
    root = Path(out)
    _check_out(root)
    return root


def _check_out(root: Path) -> None:
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ExportError(f"{root}: already exists and is not an empty folder; "
                          "choose a new folder for the LeRobot dataset")
    if not root.parent.exists():
        raise ExportError(f"{root.parent}: no such folder (the LeRobot dataset's parent folder must exist)")


def export_lerobot(
    trajs: Sequence[Trajectory],
    interface: InterfaceDescription,
    out: PathLike,
    *,
    task: Optional[str] = None,
    robot_type: Optional[str] = None,
    data_file_size_mb: float = DATA_FILE_SIZE_MB,
) -> ExportSummary:
    """Write ``trajs`` (one LeRobot episode each) as a LeRobot v3.0 dataset in the new folder ``out``.

    ``task`` (default: the description's ``description``, else its name) is every frame's task;
    ``robot_type`` defaults to the description's name. Raises :class:`ExportError` when pyarrow is
    missing, ``out`` exists and is not empty, or there is nothing to export.
    """
    pa = require_pyarrow()
    import pyarrow.parquet as pq  # noqa: PLC0415

    root = Path(out)
    _check_out(root)
    trajs = [t for t in trajs if len(t) > 0]
    if not trajs:
        raise ExportError(f"{root}: no steps to export")
    fps_f = float(interface.control_rate_hz)
    fps: Union[int, float] = int(fps_f) if fps_f.is_integer() else fps_f
    task = task or interface.description or interface.name
    features = lerobot_features(interface)
    schema = pa.schema([(k, _arrow_type(pa, ft)) for k, ft in features.items()],
                       metadata=_hf_schema_metadata(features))

    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        data_files: List[Path] = []
        episodes: List[dict] = []
        all_cols: Dict[str, List[np.ndarray]] = {k: [] for k in features}
        chunk, file, writer, written = 0, 0, None, 0
        limit = data_file_size_mb * 1024 * 1024
        total = 0
        all_frames = sum(len(t) for t in trajs)
        for e, traj in enumerate(trajs):
            cols = _episode_frames(traj, interface, fps_f, e, total, 0)
            table = pa.Table.from_arrays([_column(pa, features[k], cols[k]) for k in features], schema=schema)
            if writer is not None and written and written + table.nbytes > limit:
                writer.close()
                writer, written = None, 0
                chunk, file = (chunk + 1, 0) if file == CHUNKS_SIZE - 1 else (chunk, file + 1)
            if writer is None:
                rel = DATA_PATH.format(chunk_index=chunk, file_index=file)
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                writer = pq.ParquetWriter(tmp / rel, schema, compression="snappy")
                data_files.append(root / rel)
            writer.write_table(table)
            written += table.nbytes
            n = len(traj)
            ep = {"episode_index": e, "tasks": [task], "length": n,
                  "data/chunk_index": chunk, "data/file_index": file,
                  "dataset_from_index": total, "dataset_to_index": total + n,
                  "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
            for k, ft in features.items():
                for stat, v in _stats(cols[k], ft).items():
                    ep[f"stats/{k}/{stat}"] = v
                if len(ft["shape"]) == 3:  # keep this episode's share of the frames the statistics use
                    all_cols[k].append(_image_sample(cols[k], max(1, -(-STATS_MAX_IMAGES * n // all_frames))))
                else:
                    all_cols[k].append(cols[k])
            ep["source_episode_id"] = traj.episode_id
            episodes.append(ep)
            total += n
        if writer is not None:
            writer.close()

        meta = tmp / "meta"
        meta.mkdir()
        stats = {k: _stats(np.concatenate(v), features[k], count=total) for k, v in all_cols.items()}
        (meta / "stats.json").write_text(json.dumps(stats, indent=2))
        _write_tasks(pa, pq, meta / "tasks.parquet", [task])
        ep_path = tmp / EPISODES_PATH.format(chunk_index=0, file_index=0)
        ep_path.parent.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(episodes), ep_path)
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": robot_type or interface.name,
            "total_episodes": len(episodes),
            "total_frames": total,
            "total_tasks": 1,
            "chunks_size": CHUNKS_SIZE,
            "data_files_size_in_mb": int(round(data_file_size_mb)) or 1,
            "video_files_size_in_mb": VIDEO_FILE_SIZE_MB,
            "fps": fps,
            "splits": {"train": f"0:{len(episodes)}"},
            "data_path": DATA_PATH,
            "video_path": None,
            "features": features,
            "robot_training": {"interface": interface.name, "interface_fingerprint": interface.fingerprint,
                               "exported_by": "robot_training.data.export_lerobot"},
        }
        (meta / "info.json").write_text(json.dumps(info, indent=4))
        if root.exists():
            root.rmdir()  # empty (checked above)
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportSummary(root, len(episodes), total, features, data_files)


def _write_tasks(pa, pq, path: Path, tasks: List[str]) -> None:
    """``meta/tasks.parquet``: LeRobot reads it with pandas, the task string being the row index."""
    table = pa.table({"task_index": pa.array(range(len(tasks)), type=pa.int64()),
                      "task": pa.array(tasks, type=pa.string())})
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
             "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object",
             "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
    }
    pq.write_table(table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()}), path)
