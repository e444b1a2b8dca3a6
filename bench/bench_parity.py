"""Train/deploy parity on recorded episodes: max |online - offline| per algorithm.

    source scripts/env.sh
    python bench/bench_parity.py [--episodes 5] [--workdir DIR]

Records ``--episodes`` ugv missions over ROS (the simulator in timer mode on its own clock,
the navigator's scripted driver, the recorder: one bag per mission, four observation streams:
lidar, odometry, IMU, goal), trains a PPO and a SAC policy briefly in Gymnasium, a
feed-forward and an LSTM BC on the recorded bags (``train --mode supervised --data``) and
builds an untrained Dreamer agent of the ugv's sizes, then runs ``bags parity`` (a real policy server process, lock-step on the bag's clock)
for each checkpoint on every recorded episode. Target (issue "Real robot data in"):
max |Δ| ≤ 1e-5 for every algorithm, no action missing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INTERFACE = REPO / 'config' / 'interface_ugv.yaml'
ENV_ID = 'robot_training/Ugv-v0'


def ros_env() -> dict:
    return dict(os.environ, ROS_DOMAIN_ID=os.environ.get('ROS_DOMAIN_ID', str(100 + os.getpid() % 50)),
                ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')


def record(episodes: int, dataset: Path) -> None:
    env = ros_env()
    py = [sys.executable, '-m']
    start = lambda cmd: subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,  # noqa: E731
                                         preexec_fn=lambda: __import__('signal').signal(2, 0))
    sim = start(py + ['robot_training.ros.sim_node', '--ros-args', '-p', f'env:={ENV_ID}', '-p', 'seed:=7',
                      '-p', 'max_episode_steps:=150', '-p', 'wait_for_subscribers:=2', '-p', 'status_period_s:=0.0'])
    rec = start(py + ['robot_training.ros.recorder_node', '--ros-args', '--params-file',
                      str(REPO / 'config' / 'recorder.yaml'), '-p', f'dataset_dir:={dataset}',
                      '-p', f'interface_file:={INTERFACE}', '-p', 'use_sim_time:=true'])
    nav = start(py + ['robot_training.ros.navigator_node', '--ros-args', '-p', 'robot:=ugv',
                      '-p', f'missions:={episodes}'])
    nav.wait(timeout=1800)
    for proc in (rec, sim):
        proc.send_signal(2)
        proc.wait(timeout=60)


def checkpoints(workdir: Path, dataset: Path) -> dict:
    import torch

    from robot_training.config import Config
    from robot_training.policies.train_policy import PolicyTrainer
    from robot_training.reinforcement_learning.dreamer import DreamerAgent

    torch.set_num_threads(1)
    out = {}
    for kind, steps in (('ppo', 4096), ('sac', 1024)):
        cfg = Config().replace(policy=dict(hidden_dim=64), sac=dict(hidden_dim=64, learning_starts=256),
                               training=dict(tensorboard=False, progress_bar=False, checkpoint_every=0,
                                             log_dir=str(workdir / 'runs')))
        trainer = PolicyTrainer(kind, ENV_ID, config=cfg, checkpoint_dir=workdir / kind)
        trainer.learn(steps)
        trainer.close()
        out[kind] = trainer.final_checkpoint
    for name, lstm in (('bc', False), ('bc_lstm', True)):
        folder = workdir / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / 'config.yaml').write_text(f'bc: {{use_sequences: {str(lstm).lower()}, num_epochs: 5, sequence_length: 16}}\n'
                                            'training: {tensorboard: false}\n')
        subprocess.run([sys.executable, '-m', 'robot_training.train', '--mode', 'supervised', '--data', str(dataset),
                        '--interface', str(INTERFACE), '--checkpoint-dir', str(folder), '--no-progress',
                        '--config', str(folder / 'config.yaml')], check=True, stdout=subprocess.DEVNULL)
        out[name] = sorted(folder.rglob('*final*.pt'))[-1]
    cfg = Config().replace(world_model=dict(size='tiny'), training=dict(device='cpu', tensorboard=False))
    out['dreamer'] = DreamerAgent((78,), 2, cfg, action_low=[-0.5, -2.0], action_high=[1.0, 2.0]).save(workdir / 'dreamer.pt')
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--episodes', type=int, default=5)
    parser.add_argument('--workdir', default=None)
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix='bench_parity_'))
    dataset = workdir / 'dataset'
    record(args.episodes, dataset)
    bags = sorted(p for p in dataset.glob('episode_*') if (p / 'metadata.yaml').is_file())[: args.episodes]
    rows = []
    for kind, checkpoint in checkpoints(workdir, dataset).items():
        worst, ticks, missing = 0.0, 0, 0
        for bag in bags:
            report = workdir / f'{kind}_{bag.name}.json'
            subprocess.run([sys.executable, '-m', 'robot_training.bags', 'parity', str(bag), '--checkpoint',
                            str(checkpoint), '--interface', str(INTERFACE), '--json', str(report)],
                           env=ros_env(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            r = json.loads(report.read_text())
            worst, ticks, missing = max(worst, r['max_abs']), ticks + r['ticks'], missing + r['missing']
        rows.append((kind, len(bags), ticks, missing, worst))
        print(json.dumps({'kind': kind, 'episodes': len(bags), 'ticks': ticks, 'missing': missing, 'max_abs': worst}),
              flush=True)
    print('\n| checkpoint | episodes | ticks | actions missing | max abs diff |\n|---|---|---|---|---|')
    for kind, n, ticks, missing, worst in rows:
        print(f'| {kind} | {n} | {ticks} | {missing} | {worst:.3g} |')
    print(f'\n(workdir {workdir})')


if __name__ == '__main__':
    main()
