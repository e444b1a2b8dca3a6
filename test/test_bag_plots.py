"""``bags info --plot`` (message rates over time, gaps marked) and ``bags export --contact-sheet``."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from camera_bag import camera_interface, frame, write_camera_bag
from robot_training.bags import _topic_rows, main
from robot_training.data.bag_dataset import load_bag_dataset, write_synthetic_bag
from robot_training.data.plots import PlotError, contact_sheet_data, rate_plot_data, write_contact_sheet

PENDULUM = Path(__file__).resolve().parents[1] / "config" / "interface_inverted_pendulum.yaml"
START = 1_000_000_000_000  # write_synthetic_bag's first step (ns); its first message is the START 2.5 ms earlier


def png_size(path: Path):
    with Image.open(path) as img:
        img.verify()  # a complete, valid PNG
    with Image.open(path) as img:
        assert img.format == "PNG"
        return img.size


def plot_data(bag: Path):
    rows = _topic_rows(bag)[0]  # the rows of `bags info`'s table, each with its message times
    return rows, rate_plot_data({r["topic"]: r["times_ns"] for r in rows})


def test_rate_plot_draws_the_planted_gap_and_steady_rates(tmp_path):
    bag = write_synthetic_bag(tmp_path / "gap", steps=100, episodes=2, gap=(40, 50))  # no joint states 40..49
    rows, data = plot_data(bag)
    assert [t.topic for t in data.topics] == ["/joint_states", "/cmd", "/reward", "/episode_event"]
    assert data.t0_ns == START - 2_500_000
    js = data.topics[0]
    # the gap runs from state 39 to state 50 (header stamps k * 10 ms), shaded exactly there
    assert js.gaps_s == [pytest.approx((0.0025 + 0.39, 0.0025 + 0.50))]
    assert js.count == 90
    # (the bin starting at state 39 holds that message; the ones after it, up to state 50, nothing)
    inside = (js.bin_edges_s[:-1] > js.gaps_s[0][0]) & (js.bin_edges_s[1:] <= js.gaps_s[0][1])
    outside = (js.bin_edges_s[1:] <= js.gaps_s[0][0]) | (js.bin_edges_s[:-1] >= js.gaps_s[0][1])
    assert inside.sum() >= 2 and np.all(js.rate_hz[inside] == 0)   # nothing arrives in the gap
    np.testing.assert_allclose(js.rate_hz[outside], 100.0)          # 100 Hz everywhere else
    for tr in data.topics[1:3]:  # /cmd and /reward: every message there, steady
        assert tr.gaps_s == [] and tr.count == 100
        np.testing.assert_allclose(tr.rate_hz, 100.0)
    # the same gaps `bags info` counts (one shared rule, recording.stats.gap_indices)
    assert [len(t.gaps_s) for t in data.topics] == [r["gaps"] for r in rows] == [1, 0, 0, 0]
    assert max(b - a for a, b in js.gaps_s) == pytest.approx(rows[0]["max_gap_s"])
    assert "1 gap (longest 0.110 s)" in js.label

    _, clean = plot_data(write_synthetic_bag(tmp_path / "clean", steps=100, episodes=2))
    assert all(t.gaps_s == [] for t in clean.topics)


def test_info_plot_writes_a_png_per_bag(tmp_path, capsys):
    bag = write_synthetic_bag(tmp_path / "run", steps=100, episodes=2, gap=(40, 50))
    out = tmp_path / "rates.png"
    assert main(["info", str(bag), "--plot", str(out)]) == 0
    assert f"rate plot: {out}" in capsys.readouterr().out
    width, height = png_size(out)
    assert width >= 800 and 4 * 100 <= height <= 2000  # one row per topic (4 topics)

    data = tmp_path / "data"
    write_synthetic_bag(data / "a", steps=30, episodes=1)
    write_synthetic_bag(data / "b", steps=30, episodes=0)
    assert main(["info", str(data), "--plot", str(tmp_path / "all.png")]) == 0
    assert sorted(p.name for p in tmp_path.glob("all-*.png")) == ["all-a.png", "all-b.png"]
    assert png_size(tmp_path / "all-b.png")[1] < png_size(tmp_path / "all-a.png")[1]  # 3 topics, not 4

    assert main(["info", str(bag), "--plot", str(tmp_path / "missing" / "r.png")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such folder" in err[0]


def test_contact_sheet_frames_and_captions(tmp_path, capsys):
    bag = write_camera_bag(tmp_path / "cam", steps=30, episodes=2)
    iface = tmp_path / "interface.yaml"
    iface.write_text(camera_interface().to_yaml())
    trajs = load_bag_dataset(bag, iface, cache=False)
    sheet = contact_sheet_data(trajs[1], camera_interface(), max_frames=5)
    assert sheet.steps.tolist() == [0, 3, 6, 10, 13]  # evenly spread, first and last step included
    for k, tile, caption in zip(sheet.steps, sheet.tiles, sheet.captions):
        np.testing.assert_array_equal(tile, frame(15 + k))  # episode 1 starts at state 15
        assert caption == f"step {k}  t={k / 10:.2f} s\na=[{15 + k:.3g}, {-0.5 * (15 + k):.3g}]"
    # both cameras of a step side by side
    two = camera_interface(observations=camera_interface().to_dict()["observations"]
                           + [{"name": "camera2", "topic": "/camera/image_raw", "type": "sensor_msgs/msg/Image",
                               "height": 6, "width": 8, "output": "mono"}])
    (t2, _) = load_bag_dataset(bag, two, cache=False)
    tile = contact_sheet_data(t2, two, max_frames=1).tiles[0]
    assert tile.shape == (6, 16, 3)
    np.testing.assert_array_equal(tile[:, 8:, 0], t2.observations["camera2"][0, ..., 0])

    out = tmp_path / "sheet.png"
    assert main(["export", str(bag), "--interface", str(iface), "-o", str(tmp_path / "d.npz"), "--no-cache",
                 "--contact-sheet", str(out), "--contact-sheet-episode", "1"]) == 0
    assert "contact sheet: " in capsys.readouterr().out and (tmp_path / "d.npz").is_file()
    width, height = png_size(out)
    assert width >= 8 * 100 and height >= 2 * 100  # 14 frames: two rows of eight

    path, small = write_contact_sheet(trajs, camera_interface(), tmp_path / "small.png", max_frames=3)
    assert len(small.tiles) == 3 and png_size(path)[0] < width


def test_contact_sheet_refuses_what_it_cannot_draw(tmp_path, capsys):
    bag = write_synthetic_bag(tmp_path / "b", steps=40, episodes=1)
    assert main(["export", str(bag), "--interface", str(PENDULUM), "-o", str(tmp_path / "o.npz"),
                 "--contact-sheet", str(tmp_path / "s.png")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no camera stream" in err[0]
    cam = write_camera_bag(tmp_path / "cam", steps=10, episodes=1)
    trajs = load_bag_dataset(cam, camera_interface(), cache=False)
    with pytest.raises(PlotError, match="the dataset has 1"):
        write_contact_sheet(trajs, camera_interface(), tmp_path / "s.png", episode=3)
    assert not (tmp_path / "s.png").exists()
