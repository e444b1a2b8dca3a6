"""The ``bags`` command line: info, repair, export; exit codes and one-line errors."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from robot_training.bags import main
from robot_training.data.bag_dataset import load_bag_dataset, write_synthetic_bag
from robot_training.interface.description import load_interface
from robot_training.data.trajectory import load_trajectories

CONFIG = Path(__file__).resolve().parents[1] / "config"
PENDULUM = CONFIG / "interface_inverted_pendulum.yaml"


@pytest.fixture()
def bag(tmp_path):
    return write_synthetic_bag(tmp_path / "run", steps=100, episodes=2, gap=(40, 50))


def test_info_lists_topics_rates_gaps_and_episodes(bag, capsys):
    assert main(["info", str(bag)]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("  /")}
    js = lines["/joint_states"]
    assert js[1] == "sensor_msgs/msg/JointState" and js[2] == "90"
    assert js[4] == "1" and float(js[5]) == pytest.approx(0.11) and js[6] == "header"  # one gap, 110 ms
    assert lines["/cmd"][2] == "100" and float(lines["/cmd"][3]) == pytest.approx(100.0) and lines["/cmd"][4] == "0"
    assert lines["/cmd"][6] == "receive"
    assert "START episode 0" in out and "END episode 1" in out and "reason 'terminated'" in out


def test_export_writes_trajectories_and_interface(bag, tmp_path, capsys):
    out = tmp_path / "out.npz"
    assert main(["export", str(bag), "--interface", str(PENDULUM), "-o", str(out), "--no-cache"]) == 0
    assert "trajectories" in capsys.readouterr().out
    trajs = load_trajectories(out)
    direct = load_bag_dataset(bag, PENDULUM, cache=False)
    assert [t.episode_id for t in trajs] == [t.episode_id for t in direct]
    for a, b in zip(trajs, direct):
        np.testing.assert_array_equal(a.observations, b.observations)
        np.testing.assert_array_equal(a.actions, b.actions)
    side = yaml.safe_load((tmp_path / "out.npz.interface.yaml").read_text())
    assert side["fingerprint"] == load_interface(PENDULUM).fingerprint


def test_bad_input_gives_one_line_and_nonzero(tmp_path, bag, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "zero.mcap").write_bytes(b"")
    (tmp_path / "text.txt").write_text("not a bag")
    (f,) = list(bag.glob("*.mcap"))
    truncated = tmp_path / "trunc"
    truncated.mkdir()
    (truncated / "metadata.yaml").write_text((bag / "metadata.yaml").read_text())
    (truncated / f.name).write_bytes(f.read_bytes()[:2000])
    wrong = tmp_path / "wrong.yaml"
    data = yaml.safe_load(PENDULUM.read_text())
    data["observations"][0]["topic"] = "/nope"
    wrong.write_text(yaml.safe_dump(data))
    cases = [
        (["info", str(tmp_path / "missing")], "no such file or directory"),
        (["info", str(tmp_path / "empty")], "no rosbag2 bags found"),
        (["info", str(tmp_path / "zero.mcap")], "not a readable rosbag2 bag"),
        (["info", str(tmp_path / "text.txt")], "not a rosbag2 bag"),
        (["info", str(truncated)], "not a readable rosbag2 bag"),
        (["export", str(bag), "--interface", str(wrong), "-o", str(tmp_path / "o.npz")], "no topic /nope in the bag"),
        (["export", str(bag), "--interface", str(tmp_path / "none.yaml"), "-o", str(tmp_path / "o.npz")],
         "interface description not found"),
        (["export", str(bag), "-o", str(tmp_path / "o.npz")], "no interface description given"),
        (["repair", str(tmp_path / "text.txt")], "text.txt"),
    ]
    for argv, expected in cases:
        capsys.readouterr()
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "o.npz").exists()


def test_repair_then_info(bag, tmp_path, capsys):
    """A bag whose writer died (no metadata, torn end) is rebuilt by the recorder's repair_bag."""
    (f,) = list(bag.glob("*.mcap"))
    (bag / "metadata.yaml").unlink()
    f.write_bytes(f.read_bytes()[:-300])
    assert main(["info", str(bag)]) == 1
    assert "bags repair" in capsys.readouterr().err
    assert main(["repair", str(bag)]) == 0
    assert "repaired" in capsys.readouterr().out
    assert main(["info", str(bag)]) == 0
    assert "/joint_states" in capsys.readouterr().out


def test_module_entry_point_exit_codes(bag, tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src") + os.pathsep + env.get("PYTHONPATH", "")
    ok = subprocess.run([sys.executable, "-m", "robot_training.bags", "info", str(bag)],
                        capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0 and "/joint_states" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "robot_training.bags", "info", str(tmp_path / "nothing")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0 and "Traceback" not in bad.stderr
    usage = subprocess.run([sys.executable, "-m", "robot_training.bags", "frobnicate"],
                           capture_output=True, text=True, env=env, timeout=120)
    assert usage.returncode == 2


RECORD_THEN_HANG = """
import sys, time
sys.path.insert(0, {src!r})
from robot_training.recording import DatasetRecorder, RecorderConfig, RecordingTypestore
ts = RecordingTypestore()
Float = ts.store.types['std_msgs/msg/Float64']
rec = DatasetRecorder(RecorderConfig(dataset_dir={dataset!r}, flush_period_s=0.0), typestore=ts)
rec.start()
t = 10**9
for ep in range(4):
    for i in range(30):
        raw = bytes(ts.store.serialize_cdr(Float(data=ep * 100.0 + i), 'std_msgs/msg/Float64'))
        rec.write('/obs', 'std_msgs/msg/Float64', raw, t)
        t += 10**7
    if ep < 3:
        rec.split()
rec.flush()
print('READY', flush=True)
time.sleep(120)
"""


def test_info_lists_finished_episodes_and_marks_the_unfinished_one_for_repair(tmp_path):
    """A recorder SIGKILLed inside its 4th episode: info lists the three finished bags, names the
    unfinished one with the exact command that repairs it, exits 0; --strict refuses; the
    printed command works and afterwards all four bags are listed."""
    import shlex
    import signal

    dataset = tmp_path / "ds"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src") + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen([sys.executable, "-c", RECORD_THEN_HANG.format(src=env["PYTHONPATH"].split(os.pathsep)[0],
                                                                          dataset=str(dataset))],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "READY"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    unfinished = dataset / "episode_000004"
    assert not (unfinished / "metadata.yaml").exists()

    def info(*extra):
        return subprocess.run([sys.executable, "-m", "robot_training.bags", "info", str(dataset), *extra],
                              capture_output=True, text=True, env=env, timeout=120)

    out = info()
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    for i in (1, 2, 3):
        header = next(line for line in out.stdout.splitlines() if line.startswith(str(dataset / f"episode_00000{i}")))
        assert header.endswith("1 topics, 30 messages"), header
    (mark,) = [line for line in out.stdout.splitlines() if "NEEDS REPAIR" in line]
    assert mark.startswith(f"{unfinished}: NEEDS REPAIR: unfinished")
    assert f"{dataset}: 3 bags readable, 1 needs repair" in out.stdout

    strict = info("--strict")
    assert strict.returncode == 1 and "episode_000004" in strict.stderr and "bags repair" in strict.stderr
    assert len(strict.stderr.strip().splitlines()) == 1 and "Traceback" not in strict.stderr

    command = shlex.split(mark.split("repair it with: ", 1)[1])
    assert command[:3] == ["python", "-m", "robot_training.bags"]
    repaired = subprocess.run([sys.executable, *command[1:]], capture_output=True, text=True, env=env, timeout=120)
    assert repaired.returncode == 0, repaired.stderr
    after = info("--strict")
    assert after.returncode == 0, after.stderr
    assert "NEEDS REPAIR" not in after.stdout
    header = next(line for line in after.stdout.splitlines() if line.startswith(str(unfinished)))
    assert header.endswith("1 topics, 30 messages"), header  # flush_period 0: every message was on disk
