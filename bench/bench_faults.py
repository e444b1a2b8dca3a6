"""Fault benchmark: SIGKILL at random moments, real processes, figures per trial and in total.

    source scripts/env.sh
    python bench/bench_faults.py                          # 20 recorder + 20 trainer trials
    python bench/bench_faults.py --trainer-trials 0       # the recorder only

Recorder: a recorder core in its own process writes episodes of known values (one message
every 2 ms, flushed every 0.1 s, as the node's timer does) and is SIGKILLed after a random
0.3-2.5 s. Every finished episode must read back message for message; the open one is
repaired (``repair_bag``) and must hold the first messages written, losing at most those of
the last flush period ("lost age": how long before the kill the first lost message was
written).

Trainer: ``train --mode policy --algorithm ppo`` checkpointing every 128 steps is SIGKILLed after
a random 1-6 s of training; every checkpoint left on disk must load (``weights_only=True``) and
``--resume`` must continue from the newest one at its step.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'test'))

from test_faults import FLUSH_PERIOD_S, recorder_kill_trial  # noqa: E402

SMALL = ("policy: {hidden_dim: 16, num_envs: 2, num_steps: 64, update_epochs: 1, num_minibatches: 1}\n"
         "training: {checkpoint_every: 128, eval_episodes: 1, tensorboard: false, torch_threads: 1}\n")


def recorder_trials(n: int, rng: random.Random, root: Path) -> bool:
    print(f'recorder: {n} SIGKILL trials (flush period {FLUSH_PERIOD_S * 1000:.0f} ms)')
    print(f"{'trial':>5}  {'kill s':>6}  {'finished':>8}  {'exact':>5}  {'open written':>12}  "
          f"{'recovered':>9}  {'prefix':>6}  {'lost age ms':>11}")
    results = []
    for i in range(n):
        r = recorder_kill_trial(root / f'recorder{i}', rng.uniform(0.3, 2.5))
        results.append(r)
        print(f'{i:5d}  {r.killed_after_s:6.2f}  {r.finished:8d}  {r.finished_exact:5d}  {r.open_written:12d}  '
              f'{r.open_recovered:9d}  {str(r.open_prefix_ok):>6}  {r.open_lost_age_s * 1000:11.1f}', flush=True)
    finished = sum(r.finished for r in results)
    exact = sum(r.finished_exact for r in results)
    worst = max(r.open_lost_age_s for r in results)
    ok = exact == finished and all(r.open_prefix_ok for r in results)
    print(f'finished episodes read back message for message: {exact}/{finished} '
          f'({100.0 * exact / max(finished, 1):.0f} %); open episodes a prefix of what was written: '
          f'{sum(r.open_prefix_ok for r in results)}/{n}; worst lost age {worst * 1000:.0f} ms '
          f'(flush period {FLUSH_PERIOD_S * 1000:.0f} ms)\n')
    return ok


def trainer_trials(n: int, rng: random.Random, root: Path) -> bool:
    from robot_training.checkpoint import CheckpointError, load_checkpoint
    from robot_training.policies.common import latest_checkpoint

    env = dict(os.environ, PYTHONPATH=str(REPO / 'src') + os.pathsep + os.environ.get('PYTHONPATH', ''),
               OMP_NUM_THREADS='1')
    print(f'trainer: {n} SIGKILL trials of train --mode policy (checkpoint every 128 steps)')
    print(f"{'trial':>5}  {'kill s':>6}  {'on disk':>7}  {'load':>4}  {'resumed at':>10}  {'resume ok':>9}")
    all_ok = True
    for i in range(n):
        folder = root / f'trainer{i}'
        folder.mkdir(parents=True)
        (folder / 'small.yaml').write_text(SMALL)
        common = ['--mode', 'policy', '--algorithm', 'ppo', '--env', 'CartPole-v1', '--config', 'small.yaml',
                  '--checkpoint-dir', str(folder), '--no-progress', '--seed', str(i)]
        ckpt_dir = folder / 'policies' / 'checkpoints' / 'ppo'
        proc = subprocess.Popen([sys.executable, '-m', 'robot_training.train', *common, '--total-timesteps',
                                 '100000000'], cwd=folder, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline and not list(ckpt_dir.glob('*.pt')) and proc.poll() is None:
            time.sleep(0.05)
        delay = rng.uniform(1.0, 6.0)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        files = sorted(ckpt_dir.glob('*.pt'))
        loaded = 0
        for f in files:
            try:
                load_checkpoint(f, kind='ppo')
                loaded += 1
            except CheckpointError as err:
                print(f'       {err}')
        newest = latest_checkpoint(ckpt_dir, 'policy_ppo')
        step = load_checkpoint(newest, kind='ppo')['num_timesteps'] if newest else -1
        out = subprocess.run([sys.executable, '-m', 'robot_training.train', *common, '--resume',
                              '--total-timesteps', str(step + 128)], cwd=folder, env=env, capture_output=True,
                             text=True, timeout=300)
        found = re.search(r'at step (\d+)', out.stdout)
        resumed_ok = out.returncode == 0 and found is not None and int(found.group(1)) == step
        ok = bool(files) and loaded == len(files) and resumed_ok
        all_ok &= ok
        print(f"{i:5d}  {delay:6.2f}  {len(files):7d}  {loaded:4d}  {found.group(1) if found else '-':>10}  "
              f'{str(resumed_ok):>9}', flush=True)
    print(f'trainer: every checkpoint loads and resume continues from the newest in '
          f'{"all" if all_ok else "NOT all"} {n} trials\n')
    return all_ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--recorder-trials', type=int, default=20)
    parser.add_argument('--trainer-trials', type=int, default=20)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix='bench_faults_') as tmp:
        ok = True
        if args.recorder_trials:
            ok &= recorder_trials(args.recorder_trials, rng, Path(tmp))
        if args.trainer_trials:
            ok &= trainer_trials(args.trainer_trials, rng, Path(tmp))
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
