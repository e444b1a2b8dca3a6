"""Updates per second of the data-parallel learners: one process against torchrun with N.

    source scripts/env.sh
    python bench/bench_distributed.py                      # supervised, world_model, dreamer; 1 and 2 processes
    python bench/bench_distributed.py --modes world_model --nproc 1 2 4

Each mode trains on a synthetic dataset (40 episodes of 200 steps, 6 observations, 2 actions)
with the default sizes and the global batch of the default config, once with a short and once
with a long budget; updates/s is (long − short updates) / (long − short seconds), so start-up
(imports, process group, data) cancels out. ``1 process, 2 threads`` (``training.torch_threads:
2``, no torchrun) is the other way to give one run both cores.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

#: mode → (final checkpoint, counter key, CLI budget flag for short / long)
MODES = {
    "supervised": ("supervised_learning/checkpoints/bc/bc_final.pt", "epoch", "bc.num_epochs", (5, 40)),
    "world_model": ("world_models/checkpoints/rssm/world_model_final.pt", "updates", "world_model.num_epochs", (2, 8)),
    "dreamer": ("reinforcement_learning/checkpoints/dreamer/dreamer_final.pt", "updates", "steps", (10, 40)),
}


def run(mode, data, folder, nproc, threads, budget):
    """Seconds and updates of one run."""
    from robot_training.checkpoint import load_checkpoint

    final, counter, key, _ = MODES[mode]
    section, _, name = key.partition(".")
    config = folder / "bench.yaml"
    config.write_text(f"training: {{torch_threads: {threads}, tensorboard: false}}\n"
                      + (f"{section}: {{{name}: {budget}}}\n" if name else ""))
    launch = [sys.executable] + (["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
                                 if nproc > 1 else [])
    args = ["--mode", mode, "--data", str(data), "--config", str(config), "--checkpoint-dir", str(folder / "ck"),
            "--no-progress", *(["--total-timesteps", str(budget)] if not name else [])]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    start = time.perf_counter()
    subprocess.run([*launch, "-m", "robot_training.train", *args], env=env, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    checkpoint = load_checkpoint(folder / "ck" / final)
    updates = checkpoint[counter]
    if counter == "epoch":  # BC: updates = epochs × global batches per epoch
        updates *= -(-checkpoint_samples(checkpoint, data) // checkpoint["config"]["bc"]["batch_size"])
    return seconds, updates


def checkpoint_samples(checkpoint, data):
    """BC's training samples (the episodes its split keeps for training)."""
    from robot_training.config import config_from_dict
    from robot_training.data.trajectory import load_trajectories
    from robot_training.supervised_learning.bc import BehavioralCloning

    trainer = BehavioralCloning(config_from_dict(checkpoint["config"]), seed=checkpoint["seed"])
    return sum(len(t) for t in trainer.split(load_trajectories(data))[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--nproc", nargs="+", type=int, default=[1, 2])
    args = parser.parse_args()
    from robot_training.utils.data_collection import create_synthetic_dataset, save_trajectories

    with tempfile.TemporaryDirectory() as tmp:
        data = save_trajectories(Path(tmp) / "demos.pkl.gz", create_synthetic_dataset(40, 6, 2, 200, seed=0))
        rows = []
        variants = [(n, 1) for n in args.nproc] + [(1, 2)]
        for mode in args.modes:
            for nproc, threads in variants:
                figures = []
                for budget in MODES[mode][3]:
                    folder = Path(tmp) / f"{mode}_{nproc}_{threads}_{budget}"
                    folder.mkdir()
                    figures.append(run(mode, data, folder, nproc, threads, budget))
                (t0, u0), (t1, u1) = figures
                label = (f"{nproc} processes (torchrun), {threads} thread each" if nproc > 1
                         else f"1 process, {threads} thread{'s' if threads > 1 else ''}")
                rows.append((mode, label, (u1 - u0) / (t1 - t0)))
                print(f"{mode:12s} {label:28s} {rows[-1][2]:7.1f} updates/s", flush=True)
    print("\n| mode | processes | updates/s |\n|---|---|---:|")
    for mode, label, rate in rows:
        print(f"| {mode} | {label} | {rate:.1f} |")


if __name__ == "__main__":
    main()
