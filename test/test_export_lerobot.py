"""``bags export --format lerobot``: a LeRobot v3.0 dataset whose files read back (with pyarrow)
to exactly the arrays of ``load_bag_dataset``.

The ``lerobot`` package cannot be installed beside torch 2.13.0 (see
``robot_training.data.export_lerobot``), so the files are read here with pyarrow, the way
LeRobot's loader reads them (parquet tables, PNG bytes of image features, JSON metadata).
"""

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from camera_bag import camera_interface, frame, write_camera_bag
from robot_training.bags import main
from robot_training.data.bag_dataset import load_bag_dataset, write_synthetic_bag
from robot_training.data.export_lerobot import ExportError, export_lerobot, require_pyarrow
from robot_training.interface.description import load_interface
from robot_training.data.trajectory import Trajectory

PENDULUM = Path(__file__).resolve().parents[1] / "config" / "interface_inverted_pendulum.yaml"
NEEDS_GROUP = "optional dependency group 'lerobot' not installed (pip install -r requirements/lerobot.txt)"


@pytest.fixture()
def pq():
    pytest.importorskip("pyarrow", reason=NEEDS_GROUP)
    import pyarrow.parquet

    return pyarrow.parquet


def read_frames(pq, root: Path, info: dict) -> dict:
    """Every data file of the dataset, in order, as numpy arrays per feature (images decoded)."""
    from PIL import Image

    files = sorted((root / "data").glob("chunk-*/file-*.parquet"))
    table = {}
    for f in files:
        for name, col in pq.read_table(f).to_pydict().items():
            table.setdefault(name, []).extend(col)
    out = {}
    for name, ft in info["features"].items():
        values = table[name]
        if ft["dtype"] == "image":
            out[name] = np.stack([np.asarray(Image.open(io.BytesIO(v["bytes"]))).reshape(ft["shape"]) for v in values])
        else:
            out[name] = np.asarray(values, dtype=ft["dtype"])
    return out


def concat(trajs, get):
    return np.concatenate([get(t) for t in trajs])


def test_camera_bag_exports_to_lerobot_and_reads_back_exactly(tmp_path, pq, capsys):
    bag = write_camera_bag(tmp_path / "run", steps=30, episodes=2)
    iface = tmp_path / "interface.yaml"
    iface.write_text(camera_interface().to_yaml())
    out = tmp_path / "lerobot"
    assert main(["export", str(bag), "--interface", str(iface), "--format", "lerobot", "--out", str(out),
                 "--no-cache"]) == 0
    assert "2 episodes, 28 frames" in capsys.readouterr().out
    trajs = load_bag_dataset(bag, iface, cache=False)
    assert [len(t) for t in trajs] == [14, 14]

    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 10
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (2, 28, 1)
    assert info["splits"] == {"train": "0:2"} and info["video_path"] is None
    assert list(info["features"]) == ["observation.joints", "observation.camera", "action", "next.reward",
                                      "next.done", "next.terminated", "timestamp", "frame_index",
                                      "episode_index", "index", "task_index"]
    cam = info["features"]["observation.camera"]
    assert cam == {"dtype": "image", "shape": [6, 8, 3], "names": ["height", "width", "channels"]}
    assert info["features"]["observation.joints"]["names"] == ["position.a", "position.b"]
    assert info["data_path"].format(chunk_index=0, file_index=0) == "data/chunk-000/file-000.parquet"

    got = read_frames(pq, out, info)
    np.testing.assert_array_equal(got["observation.joints"], concat(trajs, lambda t: t.observations["joints"]))
    np.testing.assert_array_equal(got["observation.camera"], concat(trajs, lambda t: t.observations["camera"]))
    np.testing.assert_array_equal(got["observation.camera"][15], frame(16))  # episode 1 starts at state 15
    np.testing.assert_array_equal(got["action"], concat(trajs, lambda t: t.actions))
    np.testing.assert_array_equal(got["next.reward"], concat(trajs, lambda t: t.rewards))
    np.testing.assert_array_equal(got["next.done"], concat(trajs, lambda t: t.dones))
    np.testing.assert_array_equal(got["next.terminated"], concat(trajs, lambda t: t.terminals))
    assert got["next.done"].sum() == 2 and got["next.done"][[13, 27]].all()
    np.testing.assert_array_equal(got["timestamp"], concat(trajs, lambda t: (t.timestamps - t.timestamps[0]).astype(np.float32)))
    np.testing.assert_allclose(got["timestamp"][:3], [0.0, 0.1, 0.2], atol=1e-6)
    np.testing.assert_array_equal(got["frame_index"], np.r_[np.arange(14), np.arange(14)])
    np.testing.assert_array_equal(got["episode_index"], np.repeat([0, 1], 14))
    np.testing.assert_array_equal(got["index"], np.arange(28))
    np.testing.assert_array_equal(got["task_index"], np.zeros(28))

    # the parquet says which columns are images for Hugging Face datasets (LeRobot's loader)
    meta = json.loads(pq.read_schema(out / "data" / "chunk-000" / "file-000.parquet").metadata[b"huggingface"])
    assert meta["info"]["features"]["observation.camera"] == {"_type": "Image"}
    assert meta["info"]["features"]["action"]["length"] == 2

    episodes = pq.read_table(out / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pylist()
    assert [(e["episode_index"], e["length"], e["dataset_from_index"], e["dataset_to_index"]) for e in episodes] \
        == [(0, 14, 0, 14), (1, 14, 14, 28)]
    assert episodes[1]["tasks"] == ["push the block with the camera on"]
    assert episodes[1]["source_episode_id"] == "run/episode_1"
    np.testing.assert_allclose(episodes[1]["stats/action/mean"], trajs[1].actions.mean(axis=0), rtol=1e-6)

    tasks = pq.read_table(out / "meta" / "tasks.parquet")
    assert tasks.to_pydict() == {"task_index": [0], "task": ["push the block with the camera on"]}
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]  # pandas' row index

    stats = json.loads((out / "meta" / "stats.json").read_text())
    acts = concat(trajs, lambda t: t.actions).astype(np.float64)
    np.testing.assert_allclose(stats["action"]["mean"], acts.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(stats["action"]["max"], acts.max(axis=0))
    np.testing.assert_allclose(stats["action"]["q50"], np.quantile(acts, 0.5, axis=0))
    assert stats["action"]["count"] == [28]
    imgs = got["observation.camera"].reshape(-1, 3) / 255.0
    assert np.asarray(stats["observation.camera"]["mean"]).shape == (3, 1, 1)
    np.testing.assert_allclose(np.asarray(stats["observation.camera"]["mean"]).reshape(3), imgs.mean(axis=0))


def test_flat_interface_one_dimensional_action_is_a_scalar_column(tmp_path, pq):
    bag = write_synthetic_bag(tmp_path / "pend", steps=80, episodes=2)
    desc = load_interface(PENDULUM)
    trajs = load_bag_dataset(bag, desc, cache=False)
    summary = export_lerobot(trajs, desc, tmp_path / "ds")
    assert (summary.episodes, summary.frames) == (len(trajs), sum(len(t) for t in trajs))
    info = json.loads((tmp_path / "ds" / "meta" / "info.json").read_text())
    assert info["fps"] == 25 and info["robot_type"] == desc.name
    assert info["features"]["action"]["shape"] == [1]
    table = pq.read_table(tmp_path / "ds" / "data" / "chunk-000" / "file-000.parquet")
    assert str(table.schema.field("action").type) == "float"  # a scalar column, as LeRobot stores shape (1,)
    got = read_frames(pq, tmp_path / "ds", info)
    for name, part in desc.observation_slices.items():
        np.testing.assert_array_equal(got[f"observation.{name}"], concat(trajs, lambda t: t.observations[:, part]))
    np.testing.assert_array_equal(got["action"], concat(trajs, lambda t: t.actions[:, 0]))


def test_depth_mono_and_data_files_rolled_over(tmp_path, pq):
    desc = camera_interface(observations=[
        {"name": "depth", "topic": "/depth", "type": "sensor_msgs/msg/Image", "height": 4, "width": 5,
         "output": "depth"},
        {"name": "gray", "topic": "/gray", "type": "sensor_msgs/msg/Image", "height": 4, "width": 5,
         "output": "mono"}])
    rng = np.random.default_rng(1)
    trajs = [Trajectory(observations={"depth": rng.uniform(0, 10, (n, 4, 5, 1)).astype(np.float32),
                                      "gray": rng.integers(0, 256, (n, 4, 5, 1), dtype=np.uint8)},
                        actions=rng.normal(size=(n, 2)), rewards=rng.normal(size=n),
                        terminals=np.arange(n) == n - 1, truncations=np.zeros(n, bool),
                        timestamps=5.0 + np.arange(n) * 0.1, episode_id=f"e{i}")
             for i, n in enumerate((6, 9, 4))]
    summary = export_lerobot(trajs, desc, tmp_path / "ds", task="look", data_file_size_mb=1e-4)
    assert len(summary.data_files) == 3  # every episode past the (tiny) size limit starts a new file
    assert [p.name for p in summary.data_files] == ["file-000.parquet", "file-001.parquet", "file-002.parquet"]
    info = json.loads((tmp_path / "ds" / "meta" / "info.json").read_text())
    assert info["features"]["observation.depth"]["dtype"] == "float32"  # no lossless image encoding for depth
    assert info["features"]["observation.gray"]["dtype"] == "image"
    got = read_frames(pq, tmp_path / "ds", info)
    np.testing.assert_array_equal(got["observation.depth"], concat(trajs, lambda t: t.observations["depth"]))
    np.testing.assert_array_equal(got["observation.gray"], concat(trajs, lambda t: t.observations["gray"]))
    np.testing.assert_array_equal(got["index"], np.arange(19))
    episodes = pq.read_table(tmp_path / "ds" / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pylist()
    assert [e["data/file_index"] for e in episodes] == [0, 1, 2]
    assert [e["source_episode_id"] for e in episodes] == ["e0", "e1", "e2"]


def test_output_folder_must_be_new_and_nothing_is_left_on_failure(tmp_path, pq, capsys):
    bag = write_synthetic_bag(tmp_path / "b", steps=40, episodes=1)
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("x")
    assert main(["export", str(bag), "--interface", str(PENDULUM), "--format", "lerobot", "--out", str(full)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists and is not an empty folder" in err[0]
    assert sorted(p.name for p in full.iterdir()) == ["keep.txt"]
    with pytest.raises(ExportError, match="no steps to export"):
        export_lerobot([], load_interface(PENDULUM), tmp_path / "empty")
    assert not (tmp_path / "empty").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_without_the_optional_group_the_error_names_the_install_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` now raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ExportError, match=r"pip install -r requirements/lerobot\.txt"):
        require_pyarrow()
    # refused before any bag is read: the path does not even exist
    code = main(["export", str(tmp_path / "no_such_bag"), "--format", "lerobot", "--out", str(tmp_path / "ds")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert "optional dependency group 'lerobot'" in err[0] and "pip install -r requirements/lerobot.txt" in err[0]
    assert not (tmp_path / "ds").exists()
