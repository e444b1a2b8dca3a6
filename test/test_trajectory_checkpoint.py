"""The trajectory structure, its file format, and checkpoints."""

import gzip
import pickle

import numpy as np
import pytest
import torch

from robot_training.checkpoint import (
    CheckpointError, checkpoint_directory, load_checkpoint, rng_state, save_checkpoint, set_rng_state,
)
from robot_training.data.trajectory import Trajectory, TrajectoryError, load_trajectories, save_trajectories


def make_traj(t=7, obs_dim=3, act_dim=2, dict_obs=False, seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(t, obs_dim))
    if dict_obs:
        obs = {"state": obs, "camera": rng.integers(0, 255, size=(t, 8, 8, 3), dtype=np.uint8)}
    return Trajectory(
        observations=obs, actions=rng.normal(size=(t, act_dim)), rewards=rng.normal(size=t),
        terminals=np.eye(t)[-1].astype(bool), truncations=np.zeros(t, bool),
        timestamps=np.arange(t) * 0.1, episode_id=f"ep{seed}", info={"success": np.ones(t)},
    )


def test_length_mismatch_is_named():
    with pytest.raises(TrajectoryError, match="rewards has 3"):
        Trajectory(observations=np.zeros((4, 2)), actions=np.zeros((4, 1)), rewards=np.zeros(3),
                   terminals=np.zeros(4), truncations=np.zeros(4))


def test_next_observations_use_final_observation():
    traj = make_traj()
    traj.final_observation = np.full(3, 9.0, np.float32)
    nxt = traj.next_observations()
    np.testing.assert_array_equal(nxt[:-1], traj.observations[1:])
    np.testing.assert_array_equal(nxt[-1], traj.final_observation)
    part = traj.slice(2, 5)
    assert len(part) == 3
    np.testing.assert_array_equal(part.final_observation, traj.observations[5])


@pytest.mark.parametrize("dict_obs", [False, True])
def test_save_load_round_trip_with_seed_file_name(tmp_path, dict_obs):
    trajs = [make_traj(dict_obs=dict_obs, seed=s) for s in range(3)]
    path = save_trajectories(tmp_path / "data" / "trajectories.pkl.gz", trajs)
    back = load_trajectories(path)
    assert len(back) == 3
    for a, b in zip(trajs, back):
        assert a.episode_id == b.episode_id
        if dict_obs:
            for k in a.observations:
                np.testing.assert_array_equal(a.observations[k], b.observations[k])
            assert b.observations["camera"].dtype == np.uint8
        else:
            np.testing.assert_array_equal(a.observations, b.observations)
        for f in ("actions", "rewards", "terminals", "truncations", "timestamps"):
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
        np.testing.assert_array_equal(a.info["success"], b.info["success"])


def test_loading_a_pickle_is_refused_without_executing_it(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("open(%r, 'w').write('pwned')" % str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pkl.gz"
    path.write_bytes(gzip.compress(pickle.dumps(Boom())))
    with pytest.raises(TrajectoryError, match="pickle"):
        load_trajectories(path)
    assert not (tmp_path / "pwned").exists()


def test_truncated_trajectory_file(tmp_path):
    path = save_trajectories(tmp_path / "t.pkl.gz", [make_traj()])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(TrajectoryError):
        load_trajectories(path)


def test_checkpoint_round_trip_and_layout(tmp_path):
    d = checkpoint_directory(tmp_path, "policy", "ppo")
    assert d == tmp_path / "policies" / "checkpoints" / "ppo"
    net = torch.nn.Linear(3, 2)
    path = save_checkpoint(d / "a.pt", "ppo", {"model": net.state_dict(), "step": 5}, config={"x": 1})
    data = load_checkpoint(path, kind="ppo")
    assert data["step"] == 5 and data["config"] == {"x": 1}
    torch.testing.assert_close(data["model"]["weight"], net.weight)
    assert not [p for p in d.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(CheckpointError, match="'ppo' checkpoint, expected sac"):
        load_checkpoint(path, kind="sac")


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(junk)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a robot_training checkpoint"):
        load_checkpoint(foreign)


def test_checkpoint_with_code_is_refused(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("open(%r, 'w').write('pwned')" % str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pt"
    torch.save({"format": "robot_training.checkpoint", "x": Boom()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def test_rng_state_survives_a_checkpoint(tmp_path):
    gen = np.random.default_rng(1)
    state = rng_state(gen)
    save_checkpoint(tmp_path / "r.pt", "test", {"rng": state})
    first = (np.random.rand(), torch.rand(1).item(), gen.random())
    set_rng_state(load_checkpoint(tmp_path / "r.pt")["rng"], gen)
    assert (np.random.rand(), torch.rand(1).item(), gen.random()) == first


def test_interface_fingerprint_travels_with_trajectories(tmp_path):
    from robot_training.data.trajectory import common_interface_fingerprint

    a, b = make_traj(seed=1), make_traj(seed=2)
    assert common_interface_fingerprint([a, b]) is None
    a.interface_fingerprint = b.interface_fingerprint = "f" * 64
    back = load_trajectories(save_trajectories(tmp_path / "t.pkl.gz", [a, b]))
    assert common_interface_fingerprint(back) == "f" * 64
    assert back[0].slice(0, 2).interface_fingerprint == "f" * 64
    back[1].interface_fingerprint = "e" * 64
    with pytest.raises(TrajectoryError, match="2 different interface descriptions"):
        common_interface_fingerprint(back)


class _RunsCode:
    """Unpickling this object would create ``marker``: a stand-in for a malicious checkpoint."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _malicious_files(tmp_path):
    """A torch.save zip that looks like ours and a bare protocol-2 pickle, both with code inside."""
    marker = tmp_path / "pwned"
    as_zip = tmp_path / "policy_ppo_step1.pt"
    torch.save({"format": "robot_training.checkpoint", "format_version": 1, "kind": "ppo",
                "model": _RunsCode(marker)}, as_zip)
    as_pickle = tmp_path / "bare_pickle.pt"
    as_pickle.write_bytes(pickle.dumps(_RunsCode(marker), protocol=2))
    return marker, [as_zip, as_pickle]


def _assert_safe_refusal(message, path, marker):
    assert str(path) in message and "not a safe checkpoint" in message
    assert "weights_only=False" not in message.replace(" ", "") and "False" not in message
    assert len(message.strip().splitlines()) == 1
    assert not marker.exists()


def test_malicious_checkpoint_is_refused_on_every_load_path_without_advice_to_unsafe_load(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from robot_training.deploy.policy import DeployError, load_policy
    from robot_training.policies.train_policy import PolicyTrainer

    marker, files = _malicious_files(tmp_path)
    for path in files:
        with pytest.raises(CheckpointError) as exc:
            load_checkpoint(path)
        _assert_safe_refusal(str(exc.value), path, marker)
        with pytest.raises(CheckpointError) as exc:
            PolicyTrainer("ppo", checkpoint_dir=tmp_path / "run").load(path)
        _assert_safe_refusal(str(exc.value), path, marker)
        with pytest.raises(DeployError) as exc:
            load_policy(path)
        _assert_safe_refusal(str(exc.value), path, marker)
    assert "it references exec" in _message_of(files[0])  # names what it would have run

    src = str(Path(__file__).resolve().parents[1] / "src")
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-m", "robot_training.train", "--mode", "policy", "--algorithm", "ppo",
                          "--env", "CartPole-v1", "--checkpoint-dir", str(tmp_path / "run"), "--no-progress",
                          "--resume", str(files[0])],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    _assert_safe_refusal(out.stderr, files[0], marker)
    assert out.stderr.startswith("train: error: ")


def _message_of(path):
    try:
        load_checkpoint(path)
    except CheckpointError as exc:
        return str(exc)
    raise AssertionError(f"{path} loaded")
