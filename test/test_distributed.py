"""torchrun / DDP: two gloo processes end where one process ends (same global batch and seed),
on one node or as two nodes meeting at a c10d rendezvous; every rank resumes from the same
checkpoint, rank 0 alone writes, bad set-ups are refused in one line; the sampler's shards and
the sharded noise on their own."""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robot_training.checkpoint import load_checkpoint
from robot_training.utils import distributed
from robot_training.utils.data_collection import create_synthetic_dataset, save_trajectories

SRC = str(Path(__file__).resolve().parents[1] / "src")

#: world model and Dreamer in float32: bfloat16 autocast (``precision: auto`` on CPUs with AMX)
#: rounds a half batch differently from a whole one, ~1e-3 after a few updates
CONFIG = """\
bc: {num_epochs: 3, hidden_dim: 32, batch_size: 64, observation_noise: 0.1}
world_model: {size: tiny, batch_size: 8, sequence_length: 16, num_epochs: 4, precision: float32}
dreamer: {hidden_dim: 32, imagine_horizon: 5}
training: {torch_threads: 1}
"""

FINAL = {"supervised": "supervised_learning/checkpoints/bc/bc_final.pt",
         "world_model": "world_models/checkpoints/rssm/world_model_final.pt",
         "dreamer": "reinforcement_learning/checkpoints/dreamer/dreamer_final.pt"}


@pytest.fixture
def data(tmp_path):
    # 7 training episodes of 37 steps: 259 BC samples, a last global batch of 3 (uneven shards)
    path = save_trajectories(tmp_path / "demos.pkl.gz",
                             create_synthetic_dataset(8, observation_dim=4, action_dim=2, episode_length=37, seed=0))
    (tmp_path / "small.yaml").write_text(CONFIG)
    return path


def train_env() -> dict:
    return dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")


def train_args(tmp_path, name, mode, *extra, config="small.yaml") -> list:
    """``-m robot_training.train`` and its options, writing under ``tmp_path / name``."""
    out = tmp_path / name
    return ["-m", "robot_training.train", "--mode", mode, "--data", str(tmp_path / "demos.pkl.gz"),
            "--config", str(tmp_path / config), "--checkpoint-dir", str(out), "--log-dir", str(out / "runs"),
            "--no-progress", "--seed", "3", *extra]


def train(tmp_path, name, mode, nproc, *extra, config="small.yaml", check=True):
    """``python -m robot_training.train`` (nproc 0) or torchrun with ``nproc`` processes."""
    launch = [sys.executable]
    if nproc:
        launch += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    result = subprocess.run([*launch, *train_args(tmp_path, name, mode, *extra, config=config)], env=train_env(),
                            capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr[-4000:]
    return result


def weights(checkpoint):
    """Every network tensor of a checkpoint, by dotted name."""
    found = {}
    for part in ("model", "world_model", "behavior"):
        for key, value in checkpoint.get(part, {}).items():
            found[f"{part}.{key}"] = value
    return found


def assert_same_weights(one, two, atol=1e-5):
    a, b = weights(one), weights(two)
    assert a and a.keys() == b.keys()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst < atol, f"largest difference {worst:.3g}"


@pytest.mark.parametrize("mode", ["supervised", "world_model", "dreamer"])
def test_two_processes_end_where_one_process_ends(tmp_path, data, mode):
    extra = ("--total-timesteps", "12") if mode == "dreamer" else ()
    single = train(tmp_path, "one", mode, 0, *extra)
    double = train(tmp_path, "two", mode, 2, *extra)
    one = load_checkpoint(tmp_path / "one" / FINAL[mode])
    two = load_checkpoint(tmp_path / "two" / FINAL[mode])
    counter = "epoch" if mode == "supervised" else "updates"
    assert one[counter] == two[counter] > 0
    assert_same_weights(one, two)
    if mode == "supervised":  # the logged losses are the global batch's, not one rank's
        assert one["history"]["train_loss"] == pytest.approx(two["history"]["train_loss"], rel=1e-5)
        assert one["history"]["val_loss"] == pytest.approx(two["history"]["val_loss"], rel=1e-5)
    # rank 0 alone: one TensorBoard run, one summary table, nothing from rank 1
    assert len(list((tmp_path / "two" / "runs").iterdir())) == 1
    assert double.stdout.count("final metric") == single.stdout.count("final metric") == 1
    assert "rank 1" not in double.stderr


def test_every_rank_resumes_from_the_same_checkpoint(tmp_path, data):
    train(tmp_path, "one", "world_model", 0)
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    before = load_checkpoint(tmp_path / "one" / FINAL["world_model"])["updates"]
    (tmp_path / "more.yaml").write_text(CONFIG.replace("num_epochs: 4", "num_epochs: 7"))
    train(tmp_path, "one", "world_model", 0, "--resume", config="more.yaml")
    train(tmp_path, "two", "world_model", 2, "--resume", config="more.yaml")
    one = load_checkpoint(tmp_path / "one" / FINAL["world_model"])
    two = load_checkpoint(tmp_path / "two" / FINAL["world_model"])
    assert one["updates"] == two["updates"] > before
    assert_same_weights(one, two)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_meet_at_a_rendezvous_and_end_where_one_process_ends(tmp_path, data):
    """The README's multi-machine command (``--nnodes 2 --rdzv-backend c10d --rdzv-endpoint``), its two
    launchers started side by side on this host, one process each: they find each other through the
    c10d rendezvous and train what one process trains."""
    train(tmp_path, "one", "world_model", 0)
    launch = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
              "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--rdzv-id", "two-nodes",
              *train_args(tmp_path, "nodes", "world_model")]
    nodes = [subprocess.Popen(launch, env=train_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        results = [node.communicate(timeout=180) for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    for node, (_, err) in zip(nodes, results):
        assert node.returncode == 0, err[-4000:]
    # one node got global rank 0 and alone wrote the summary and the checkpoint
    assert sum(stdout.count("final metric") for stdout, _ in results) == 1
    one = load_checkpoint(tmp_path / "one" / FINAL["world_model"])
    two = load_checkpoint(tmp_path / "nodes" / FINAL["world_model"])
    assert one["updates"] == two["updates"] > 0
    assert_same_weights(one, two)


def test_refusals_are_one_line_per_rank(tmp_path, data):
    (tmp_path / "odd.yaml").write_text(CONFIG.replace("batch_size: 8", "batch_size: 7"))
    out = train(tmp_path, "odd", "world_model", 2, config="odd.yaml", check=False)
    errors = [line for line in out.stderr.splitlines() if line.startswith("train: error:")]
    assert out.returncode != 0 and len(errors) == 2, out.stderr[-3000:]
    message = "world_model.batch_size: a global batch of 7 does not split over 2 processes"
    assert sorted(e.split(message)[0] for e in errors) == ["train: error: ", "train: error: rank 1: "]
    assert not (tmp_path / "odd" / "world_models").exists()

    out = train(tmp_path, "ppo", "policy", 2, check=False)
    assert out.returncode != 0
    assert "train: error: --mode policy does not run under torchrun" in out.stderr


def as_rank(monkeypatch, rank, world):
    monkeypatch.setattr(distributed, "active", lambda: True)
    monkeypatch.setattr(distributed, "rank", lambda: rank)
    monkeypatch.setattr(distributed, "world_size", lambda: world)


@pytest.mark.parametrize("world", [2, 3])
def test_shards_take_every_sample_once_per_epoch(monkeypatch, world):
    n, batch = 23, 6
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    taken = []
    for start in range(0, n, batch):
        sizes = set()
        for rank in range(world):
            as_rank(monkeypatch, rank, world)
            mine, weight = distributed.shard(perm[start:start + batch])
            sizes.add(len(mine))
            taken += mine[weight > 0].tolist()
        assert len(sizes) == 1  # equal shards: every rank runs every update
    assert sorted(taken) == list(range(n))


def test_sharded_noise_is_the_global_batchs_noise(monkeypatch):
    torch.manual_seed(5)
    whole = torch.rand(6, 4, 1)
    parts = []
    for rank in range(2):
        as_rank(monkeypatch, rank, 2)
        torch.manual_seed(5)
        with distributed.batch_shard():
            parts.append(distributed.batch_noise(torch.rand, (3, 4, 1)))
        assert distributed.batch_rows(6) == slice(3 * rank, 3 * rank + 3)
    assert torch.equal(torch.cat(parts), whole)
    with pytest.raises(distributed.DistributedError, match="does not split over 2 processes"):
        distributed.local_batch_size(7, "bc.batch_size")
