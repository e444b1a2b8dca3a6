"""The train command line: errors, unavailable modes, a real kill -9 and --resume."""

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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


@pytest.mark.parametrize("mode,module", [
    ("world_model", "robot_training.world_models.train_world_model"),
    ("dreamer", "robot_training.reinforcement_learning.train_dreamer"),
])
def test_modes_not_yet_available_fail_with_message(tmp_path, capsys, mode, module):
    if importlib.util.find_spec(module) is None:
        assert train.main(["--mode", mode, "--checkpoint-dir", str(tmp_path)]) == train.EXIT_UNAVAILABLE
        assert f"mode '{mode}' is not available yet" in capsys.readouterr().err
    else:  # once the module exists the CLI dispatches to its run_cli
        assert callable(train._external(module, mode))
    with pytest.raises(train.ModeUnavailable, match="mode 'x' is not available yet"):
        train._external("robot_training.no_such_module", "x")


def _state(path):
    return load_checkpoint(path, kind="ppo")


def test_killed_run_resumes_with_same_step_counter_and_optimizer(tmp_path):
    cfg = tmp_path / "small.yaml"
    cfg.write_text(
        "policy: {hidden_dim: 32, num_envs: 2, num_steps: 128, update_epochs: 2, num_minibatches: 2}\n"
        "training: {checkpoint_every: 512, eval_episodes: 2, tensorboard: false, torch_threads: 1}\n")
    common = ["--mode", "policy", "--algorithm", "ppo", "--env", "CartPole-v1", "--config", str(cfg),
              "--checkpoint-dir", str(tmp_path), "--no-progress", "--seed", "4"]
    ckpt_dir = tmp_path / "policies" / "checkpoints" / "ppo"
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
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
