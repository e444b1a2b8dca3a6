"""The train command line: errors, unavailable modes, a real kill -9 and --resume."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from robot_training import train
from robot_training.checkpoint import load_checkpoint
from robot_training.policies.common import latest_checkpoint

SRC = str(Path(__file__).resolve().parents[1] / "src")


def run_cli(args, cwd, timeout=300):
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "robot_training.train", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_bad_input_is_one_clear_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("policy:\n  gama: 0.9\n")
    assert train.main(["--mode", "policy", "--config", str(bad)]) == 2
    assert "unknown key 'policy.gama'" in capsys.readouterr().err
    assert train.main(["--mode", "policy", "--env", "NoSuchEnv-v9"]) == 2
    assert "unknown environment 'NoSuchEnv-v9'" in capsys.readouterr().err
    assert train.main(["--mode", "policy", "--resume", "--checkpoint-dir", str(tmp_path)]) == 2
    assert "no checkpoint to resume from" in capsys.readouterr().err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint")
    assert train.main(["--mode", "policy", "--resume", str(junk)]) == 2
    assert "not a readable checkpoint" in capsys.readouterr().err
    assert train.main(["--mode", "supervised", "--data", str(tmp_path / "missing.pkl.gz")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_errors_from_a_real_process_have_no_traceback(tmp_path):
    out = run_cli(["--mode", "policy", "--resume", str(tmp_path / "nope.pt")], cwd=tmp_path)
    assert out.returncode == 2
    assert "checkpoint not found" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def _state(path):
    return load_checkpoint(path, kind="ppo")


def _small_ppo_run(tmp_path, eval_episodes):
    """CLI arguments, checkpoint folder and environment of a small PPO run on CartPole."""
    cfg = tmp_path / "small.yaml"
    cfg.write_text(
        "policy: {hidden_dim: 32, num_envs: 2, num_steps: 128, update_epochs: 2, num_minibatches: 2}\n"
        f"training: {{checkpoint_every: 512, eval_episodes: {eval_episodes}, tensorboard: false, torch_threads: 1}}\n")
    common = ["--mode", "policy", "--algorithm", "ppo", "--env", "CartPole-v1", "--config", str(cfg),
              "--checkpoint-dir", str(tmp_path), "--no-progress", "--seed", "4"]
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    return common, tmp_path / "policies" / "checkpoints" / "ppo", env


def test_killed_run_resumes_with_same_step_counter_and_optimizer(tmp_path):
    common, ckpt_dir, env = _small_ppo_run(tmp_path, eval_episodes=2)
    proc = subprocess.Popen([sys.executable, "-m", "robot_training.train", *common, "--total-timesteps", "10000000"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not list(ckpt_dir.glob("policy_ppo_step*.pt")):
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.2)
        assert list(ckpt_dir.glob("policy_ppo_step*.pt")), "no checkpoint appeared"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (ckpt_dir / "policy_ppo_final.pt").exists()
    killed = latest_checkpoint(ckpt_dir, "policy_ppo")
    before = _state(killed)
    step = before["num_timesteps"]
    assert step >= 512

    # resume to the same budget: nothing left to do, the final checkpoint equals the killed one
    out = run_cli([*common, "--resume", "--total-timesteps", str(step)], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"at step {step}" in out.stdout
    same = _state(ckpt_dir / "policy_ppo_final.pt")
    assert same["num_timesteps"] == step and same["iteration"] == before["iteration"]
    for k, s in before["optimizer"]["state"].items():
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(torch.as_tensor(s[name]), torch.as_tensor(same["optimizer"]["state"][k][name]))
    for k, v in before["model"].items():
        assert torch.equal(v, same["model"][k])

    # resume for two more rollouts: the counters continue from where the run stopped
    out = run_cli([*common, "--resume", "--total-timesteps", str(step + 512)], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    after = _state(ckpt_dir / "policy_ppo_final.pt")
    assert after["num_timesteps"] == step + 512 and after["iteration"] == before["iteration"] + 2
    k = next(iter(before["optimizer"]["state"]))
    assert float(after["optimizer"]["state"][k]["step"]) == float(before["optimizer"]["state"][k]["step"]) + 2 * 2 * 2


def test_supervised_from_bags_through_the_interface(tmp_path, capsys):
    """--data takes rosbag2 bags; --interface (or the stored description) turns them into steps."""
    import yaml

    from robot_training.data.bag_dataset import write_synthetic_bag
    from robot_training.supervised_learning.bc import BehavioralCloning

    description = {
        "name": "cli-test", "control_rate_hz": 100, "max_staleness_s": 0.015,
        "observations": [{"name": "joints", "topic": "/joint_states", "type": "sensor_msgs/msg/JointState",
                          "joint_names": ["slider", "hinge"], "fields": ["position", "velocity"]}],
        "action": {"topic": "/cmd", "type": "std_msgs/msg/Float64MultiArray", "size": 1},
        "reward": {"topic": "/reward", "type": "std_msgs/msg/Float64"},
        "episodes": {"topic": "/episode_event", "terminal_reasons": ["terminated"]},
    }
    iface = tmp_path / "iface.yaml"
    iface.write_text(yaml.safe_dump(description))
    write_synthetic_bag(tmp_path / "bags" / "a", steps=60, episodes=2)
    cfg = tmp_path / "small.yaml"
    cfg.write_text("bc:\n  num_epochs: 3\n  hidden_dim: 16\n")
    common = ["--mode", "supervised", "--data", str(tmp_path / "bags"), "--config", str(cfg),
              "--checkpoint-dir", str(tmp_path / "ck"), "--no-progress"]
    assert train.main(common) == 2  # no description given and none stored with these bags
    assert "no interface description" in capsys.readouterr().err
    assert train.main(common + ["--interface", str(iface)]) == 0
    out = capsys.readouterr().out
    assert "supervised (bc, 2 episodes)" in out
    ckpt = tmp_path / "ck" / "supervised_learning" / "checkpoints" / "bc" / "bc_final.pt"
    bc = BehavioralCloning().load(ckpt)
    assert bc.predict(np.zeros(4, np.float32)).shape == (1,)
    # the model remembers the description its inputs came through (the policy server checks it)
    from robot_training.checkpoint import load_checkpoint
    from robot_training.interface.description import load_interface

    assert load_checkpoint(ckpt)["interface_fingerprint"] == load_interface(iface).fingerprint
    assert bc.interface_fingerprint == load_interface(iface).fingerprint
    assert train.main(["--mode", "supervised", "--data", str(tmp_path / "small.yaml"),
                       "--interface", str(iface)]) == 2
    assert "--interface applies to bags" in capsys.readouterr().err


def _ctrl_c_twice(proc) -> str:
    """Two SIGINTs 10 ms apart (ros2 launch plus a terminal), then the process's stderr; a
    process still running after 60 s is killed."""
    try:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            time.sleep(0.01)
            proc.send_signal(signal.SIGINT)
        return proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_ctrl_c_twice_saves_a_checkpoint_that_resume_continues(tmp_path):
    """Two SIGINTs within milliseconds (ros2 launch plus a terminal) on `train --mode policy`:
    it stops at the next update, saves, prints one line naming the checkpoint, exits 0; --resume
    continues from exactly that step."""
    import re

    common, ckpt_dir, env = _small_ppo_run(tmp_path, eval_episodes=1)
    proc = subprocess.Popen([sys.executable, "-m", "robot_training.train", *common, "--total-timesteps", "10000000"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not list(ckpt_dir.glob("policy_ppo_step*.pt")):
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.2)
        periodic = max(int(re.search(r"step(\d+)", p.name).group(1)) for p in ckpt_dir.glob("policy_ppo_step*.pt"))
    finally:
        err = _ctrl_c_twice(proc)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "interrupted" not in err, err
    found = re.search(r"^train: stopped at step (\d+): saved checkpoint (\S+)$", err, re.M)
    assert found, err
    step, path = int(found.group(1)), Path(found.group(2))
    assert step >= periodic and step % 256 == 0
    assert _state(path)["num_timesteps"] == step
    assert not (ckpt_dir / "policy_ppo_final.pt").exists()
    out = run_cli([*common, "--resume", str(path), "--total-timesteps", str(step + 256)], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"at step {step}" in out.stdout
    assert _state(ckpt_dir / "policy_ppo_final.pt")["num_timesteps"] == step + 256


def _demonstrations(tmp_path):
    from robot_training.data.trajectory import save_trajectories
    from robot_training.envs.factories import collect_random_trajectories, make_env_factory

    return save_trajectories(tmp_path / "demos.pkl.gz",
                             collect_random_trajectories(make_env_factory("Pendulum-v1"), 400, seed=0))


# mode → (extra arguments and config, checkpoint subfolder, checkpoint kind, step key in the file)
_OFFLINE_STOPS = {
    "world_model": ("world_model: {size: tiny, batch_size: 4, sequence_length: 8, num_epochs: 100000}\n"
                    "training: {checkpoint_every: 5}\n", "world_models/checkpoints/rssm", "world_model", "updates"),
    "dreamer": ("world_model: {size: tiny, batch_size: 4, sequence_length: 8}\n"
                "dreamer: {imagine_horizon: 5, offline_updates: 10000000}\ntraining: {checkpoint_every: 5}\n",
                "reinforcement_learning/checkpoints/dreamer", "dreamer", "updates"),
    "supervised": ("bc: {hidden_dim: 16, num_epochs: 100000}\n", "supervised_learning/checkpoints/bc", "bc", "epoch"),
}


@pytest.mark.parametrize("mode", sorted(_OFFLINE_STOPS))
def test_ctrl_c_twice_in_offline_modes_saves_what_resume_continues(tmp_path, mode):
    """World model, offline Dreamer and behavioral cloning: two SIGINTs mid-run give exit 0,
    one line naming the checkpoint written at the stop, a file that loads with the step it
    names, and --resume goes on from that step."""
    import re

    extra, folder, kind, key = _OFFLINE_STOPS[mode]
    cfg = tmp_path / "small.yaml"
    cfg.write_text(extra + "training: {tensorboard: true, torch_threads: 1}\n" if "training:" not in extra else
                   extra.replace("training: {", "training: {tensorboard: true, torch_threads: 1, "))
    demos = _demonstrations(tmp_path)
    logs = tmp_path / "runs"
    common = ["--mode", mode, "--config", str(cfg), "--checkpoint-dir", str(tmp_path), "--no-progress",
              "--data", str(demos), "--log-dir", str(logs)]
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "robot_training.train", *common], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt_dir = tmp_path / folder
    try:
        deadline = time.time() + 120
        # training has begun: a periodic checkpoint, or (bc) TensorBoard events past their header
        while time.time() < deadline and not (list(ckpt_dir.glob("*.pt")) or any(
                p.stat().st_size > 200 for p in logs.rglob("events.out.tfevents.*"))):
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.2)
    finally:
        err = _ctrl_c_twice(proc)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    found = re.search(r"^train: stopped at step (\d+): saved checkpoint (\S+)$", err, re.M)
    assert found, err
    step, path = int(found.group(1)), Path(found.group(2))
    assert step > 0 and path.parent == ckpt_dir
    assert int(load_checkpoint(path, kind=kind)[key]) == step
    if mode == "supervised":  # --resume goes on from the stop: two more epochs
        more = tmp_path / "more.yaml"
        more.write_text(f"bc: {{hidden_dim: 16, num_epochs: {step + 2}}}\ntraining: {{tensorboard: false}}\n")
        out = run_cli([*common[:2], "--config", str(more), *common[4:], "--resume", str(path)], cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert int(load_checkpoint(ckpt_dir / "bc_final.pt", kind="bc")["epoch"]) == step + 2
