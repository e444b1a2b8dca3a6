"""Faults as operators meet them, with real processes: a recorder SIGKILLed at random moments,
folders that cannot be written, NaN / Inf / wrong-length observations reaching the policy
server. Every case ends with nothing finished lost and one clear line.

``bench/bench_faults.py`` runs the recorder trials of this file 20 times and prints a table.
"""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from rosbags.rosbag2 import Reader

from robot_training.recording import RecordingTypestore, list_episode_dirs, read_sidecar, repair_bag

REPO = Path(__file__).resolve().parents[1]
SRC = str(REPO / 'src')
FLUSH_PERIOD_S = 0.1
EPISODE_MESSAGES = 150
MESSAGE_PERIOD_S = 0.002

#: a recorder core in its own process: episodes of EPISODE_MESSAGES known values, one message
#: every MESSAGE_PERIOD_S, flushed every FLUSH_PERIOD_S; prints "<monotonic> <episode> <count>"
RECORDER = textwrap.dedent(f'''
    import sys, time
    sys.path.insert(0, {SRC!r})
    from robot_training.recording import DatasetRecorder, RecorderConfig, RecordingTypestore
    ts = RecordingTypestore()
    Float = ts.store.types['std_msgs/msg/Float64']
    rec = DatasetRecorder(RecorderConfig(dataset_dir=sys.argv[1], flush_period_s={FLUSH_PERIOD_S}), typestore=ts)
    rec.start()
    last_flush = time.monotonic()
    for ep in range(10**6):
        for i in range({EPISODE_MESSAGES}):
            raw = bytes(ts.store.serialize_cdr(Float(data=ep * 1e6 + i), 'std_msgs/msg/Float64'))
            rec.write('/obs', 'std_msgs/msg/Float64', raw, time.time_ns())
            now = time.monotonic()
            if now - last_flush >= {FLUSH_PERIOD_S}:  # the node's flush timer
                rec.flush()
                last_flush = now
            print(now, ep, i + 1, flush=True)
            time.sleep({MESSAGE_PERIOD_S})
        rec.split()
''')


def expected(ep: int) -> list[float]:
    return [ep * 1e6 + i for i in range(EPISODE_MESSAGES)]


def obs_values(bag: Path) -> list[float]:
    ts = RecordingTypestore()
    with Reader(bag) as reader:
        return [ts.store.deserialize_cdr(raw, c.msgtype).data for c, _, raw in reader.messages()]


@dataclass
class KillTrial:
    killed_after_s: float
    finished: int          # episodes with metadata.yaml
    finished_exact: int    # of those, read back message for message
    open_written: int      # messages of the open episode the recorder had taken before the kill
    open_recovered: int    # messages of the open episode after repair_bag
    open_lost_age_s: float  # how long before the kill the first lost message was written
    open_prefix_ok: bool   # recovered messages are exactly the first ones written


def recorder_kill_trial(dataset: Path, delay_s: float) -> KillTrial:
    """Start the recorder, SIGKILL it after ``delay_s``, read back everything it left."""
    proc = subprocess.Popen([sys.executable, '-c', RECORDER, str(dataset)], stdout=subprocess.PIPE, text=True)
    lines = []
    try:
        first = proc.stdout.readline()  # started: the first message is written
        assert first, 'the recorder did not start'
        lines.append(first)
        time.sleep(delay_s)
        killed_at = time.monotonic()  # CLOCK_MONOTONIC: the same clock as the recorder's lines
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        lines += proc.stdout.read().splitlines()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    progress = [(float(t), int(ep), int(n)) for t, ep, n in (line.split() for line in lines if line.strip())]
    dirs = list_episode_dirs(dataset)
    finished = [d for d in dirs if (d / 'metadata.yaml').is_file()]
    assert finished == dirs[:len(finished)] and len(dirs) - len(finished) <= 1, dirs
    exact = sum(obs_values(d) == expected(i) for i, d in enumerate(finished))
    written = recovered = 0
    lost_age, prefix_ok = 0.0, True
    if len(dirs) > len(finished):  # the open episode
        ep = len(dirs) - 1
        times = {n: t for t, e, n in progress if e == ep}  # message count -> when it was written
        written = max(times, default=0)
        repair_bag(dirs[-1])  # killed before its first flush (only the MCAP header, or not even that): empty
        values = obs_values(dirs[-1])
        recovered = len(values)
        prefix_ok = values == expected(ep)[:recovered]
        if recovered < written:
            lost_age = killed_at - times[recovered + 1]
    return KillTrial(delay_s, len(finished), exact, written, recovered, lost_age, prefix_ok)


def test_recorder_sigkill_at_random_moments_loses_nothing_finished(tmp_path):
    """Three SIGKILLs at random moments: every finished episode reads back message for message;
    the open one, once repaired, holds the first messages written, losing at most about one
    flush period of them."""
    rng = random.Random(12)
    for trial in range(3):
        result = recorder_kill_trial(tmp_path / f'ds{trial}', rng.uniform(0.4, 1.6))
        assert result.finished >= 1, result
        assert result.finished_exact == result.finished, result
        assert result.open_prefix_ok, result
        assert result.open_lost_age_s <= FLUSH_PERIOD_S + 0.15, result  # + scheduling on a loaded machine
        sidecars = [read_sidecar(d) for d in list_episode_dirs(tmp_path / f'ds{trial}')]
        assert [s['status'] for s in sidecars[:-1]] == ['complete'] * (len(sidecars) - 1)
        assert sidecars[-1]['status'] in ('repaired', 'complete', 'recording')  # recording: nothing was flushed


# ----------------------------------------------------------------------------- unwritable


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get('PYTHONPATH', ''), OMP_NUM_THREADS='1')


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and 'Traceback' not in stderr, stderr
    return lines[0]


def test_unwritable_folders_give_one_line_before_any_work(tmp_path):
    """A folder that cannot be written (a file in the way; /sys, which even root cannot write)
    as the checkpoint folder, the export target and the recorder's dataset: one line naming it."""
    blocker = tmp_path / 'a_file'
    blocker.write_text('x')
    read_only = Path('/sys/robot_training_faults')
    train = [sys.executable, '-m', 'robot_training.train', '--mode', 'policy', '--env', 'CartPole-v1',
             '--total-timesteps', '64', '--no-progress']
    for folder, why in ((blocker / 'ckpt', 'Not a directory'), (read_only, None)):
        out = subprocess.run([*train, '--checkpoint-dir', str(folder)], capture_output=True, text=True,
                             env=_env(), cwd=tmp_path, timeout=120)
        assert out.returncode == 2, out.stderr
        line = _one_line(out.stderr)
        assert line.startswith(f'train: error: checkpoint folder {folder} is not writable'), line
        assert why is None or why in line
    assert not read_only.exists()

    bag = tmp_path / 'run'
    from robot_training.data.bag_dataset import write_synthetic_bag

    write_synthetic_bag(bag, steps=20, episodes=1)
    out = subprocess.run([sys.executable, '-m', 'robot_training.bags', 'export', str(bag), '--interface',
                          str(REPO / 'config' / 'interface_inverted_pendulum.yaml'), '--no-cache',
                          '-o', str(blocker / 'out.npz')], capture_output=True, text=True, env=_env(), timeout=120)
    assert out.returncode == 1, out.stderr
    assert str(blocker) in _one_line(out.stderr)

    code = (f'import sys; sys.path.insert(0, {SRC!r})\n'
            'from robot_training.recording import DatasetRecorder, RecorderConfig, RecordingError\n'
            'try:\n'
            f'    DatasetRecorder(RecorderConfig(dataset_dir={str(read_only / "ds")!r}))\n'
            'except RecordingError as err:\n'
            '    sys.exit(f"recorder: {err}")\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and str(read_only / 'ds') in _one_line(out.stderr), out.stderr


# ----------------------------------------------------------------------------- policy server


def test_nan_inf_and_wrong_length_observations_never_give_a_nan_action(tmp_path, procs, ros_node):
    """Observations a broken driver sends (NaN, Inf, one joint missing, a short array) reach a
    running policy server: no command it publishes is non-finite or out of limits, it says why
    it did not act, and it acts again on the next good observation."""
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    from ros_helpers import INTERFACE, node_cmd, spin_for, spin_until, stop
    from test_deploy import tiny_policy

    checkpoint = tiny_policy(tmp_path, steps=128)
    server = procs.start(node_cmd('policy_server_node', f'interface_file:={INTERFACE}',
                                  f'checkpoint:={checkpoint}', 'warn_period_s:=0.0'))
    cmds = []
    ros_node.create_subscription(Float64MultiArray, '/cmd', cmds.append, 100)
    pub = ros_node.create_publisher(JointState, '/joint_states', 10)

    def send(names, position, velocity):
        msg = JointState(name=list(names), position=[float(v) for v in position],
                         velocity=[float(v) for v in velocity])
        msg.header.stamp = ros_node.get_clock().now().to_msg()
        pub.publish(msg)
        spin_for(ros_node, 0.1)

    good = (['slider', 'hinge'], [0.0, 0.01], [0.0, 0.0])
    deadline = time.monotonic() + 30
    while not cmds and time.monotonic() < deadline:  # discovery: until the server answers
        send(*good)
    assert cmds, 'the policy server never answered a good observation'
    bad = [(['slider', 'hinge'], [math.nan, 0.0], [0.0, 0.0]),
           (['slider', 'hinge'], [0.0, math.inf], [0.0, 0.0]),
           (['slider', 'hinge'], [0.0, 0.0], [0.0, -math.inf]),
           (['slider'], [0.0], [0.0]),                       # a joint missing
           (['slider', 'hinge'], [0.0], [0.0, 0.0])]         # a short position array
    for _ in range(3):
        for obs in bad:
            send(*obs)
    spin_for(ros_node, 1.0)
    assert server.poll() is None, (f'the policy server exited ({server.poll()}) on a bad observation:\n'
                                   + '\n'.join(server.lines))
    count = len(cmds)
    for _ in range(5):
        send(*good)
    spin_until(ros_node, lambda: len(cmds) > count, 10, 'a command after the bad observations')
    out = stop(server)
    assert server.returncode == 0, out
    assert all(len(c.data) == 1 and math.isfinite(c.data[0]) and -3.0 <= c.data[0] <= 3.0 for c in cmds), \
        [list(c.data) for c in cmds]
    assert 'Traceback' not in out
    refusals = [line for line in out.splitlines() if 'not acting' in line]
    assert any('non-finite values' in line for line in refusals), out  # the observation is named
    assert any('slider' in line or 'hinge' in line or 'length' in line or 'expected' in line
               for line in refusals if 'non-finite' not in line), out


# ----------------------------------------------------------------------------- full disk, torn files


def test_full_disk_and_truncated_checkpoint_give_one_line(tmp_path):
    """A disk that fills during training (a file-size limit stands in: no tmpfs needs mounting)
    stops `train` with one line naming where it wrote and leaves no torn checkpoint; a checkpoint
    cut in half is refused by --resume in one line."""
    import resource

    from robot_training.checkpoint import load_checkpoint, save_checkpoint

    cfg = tmp_path / 'small.yaml'
    cfg.write_text("policy: {hidden_dim: 16, num_envs: 2, num_steps: 64, update_epochs: 1, num_minibatches: 1}\n"
                   "training: {checkpoint_every: 128, eval_episodes: 1, tensorboard: false, torch_threads: 1}\n")
    common = ['-m', 'robot_training.train', '--mode', 'policy', '--env', 'CartPole-v1', '--config', str(cfg),
              '--no-progress', '--total-timesteps', '256']

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))  # a checkpoint is larger

    full = tmp_path / 'full'
    out = subprocess.run([sys.executable, *common, '--checkpoint-dir', str(full)], preexec_fn=small_disk,
                         capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=120)
    assert out.returncode == 1, out.stderr
    line = _one_line(out.stderr)
    assert f'writing under {full}' in line and 'File too large' in line, line
    assert not [p for p in full.rglob('*') if p.is_file()]  # nothing torn left behind

    import torch

    whole = save_checkpoint(tmp_path / 'whole.pt', 'ppo', {'model': {'weight': torch.randn(64, 64)}})
    load_checkpoint(whole, kind='ppo')
    torn = tmp_path / 'torn.pt'
    torn.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    out = subprocess.run([sys.executable, *common, '--checkpoint-dir', str(tmp_path / 'resumed'), '--resume', str(torn)],
                         capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=120)
    assert out.returncode == 2, out.stderr
    line = _one_line(out.stderr)
    assert line.startswith(f'train: error: {torn}: not a readable checkpoint'), line


def test_ctrl_c_twice_while_a_node_is_still_starting_exits_0_without_a_traceback(tmp_path):
    """ros2 launch stopped in its first seconds: each node gets two SIGINTs while it is still
    importing rclpy / PyTorch / MuJoCo, or building itself. It exits 0 with one line, never a
    KeyboardInterrupt traceback (the policy server needs about 2 s to start on a 2-core VM)."""
    interface = REPO / 'config' / 'interface_inverted_pendulum.yaml'
    outcomes = []
    for module, delay in (('policy_server_node', 0.8), ('policy_server_node', 1.6), ('sim_node', 0.8),
                          ('recorder_node', 0.8)):
        cmd = [sys.executable, '-m', f'robot_training.ros.{module}', '--ros-args', '-p', f'interface_file:={interface}',
               '-p', f'dataset_dir:={tmp_path / "ds"}'] if module == 'recorder_node' else [
            sys.executable, '-m', f'robot_training.ros.{module}', '--ros-args', '-p', f'interface_file:={interface}']
        proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.005)
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0 and 'Traceback' not in out, (module, delay, out)
        outcomes.append('before it started' in out)
    print('stopped before starting:', outcomes)
