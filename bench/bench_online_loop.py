"""Learning-loop benchmark: the embedded InvertedPendulum robot over ROS, in real time at its
interface's control rate (25 Hz, simulator in timer mode), learning from random weights with
the loop's default settings (``online_loop``, the graph of ``train_dreamer.launch.py``).

    source scripts/env.sh
    python bench/bench_online_loop.py --algorithms sac dreamer          # 12 and 30 minute budgets
    python bench/bench_online_loop.py --algorithms sac --minutes 10
    python bench/bench_online_loop.py --pendulum                        # Dreamer defaults, in-process
    python bench/bench_online_loop.py --algorithms sac --robots 1 2     # a fleet: 1 robot against 2

For each algorithm the loop runs until a checkpoint evaluates at ``--threshold`` (mean of 5
deterministic episodes in Gymnasium, through the deploy loader) or the budget is spent. The
table gives the time from the start of the graph until the learner wrote the first such
checkpoint, the env steps and learner updates it had by then, the control ticks the robot
had to run without a fresh command (simulator ``held_steps`` / steps), the longest gap
between two published actions (hot reloads included; pauses at episode resets excluded) and
the actor's cost per tick (observation build + policy + publish) p50 / p99.

``--robots 1 2`` runs each loop with one robot and then with a fleet of two (each in its
namespace, one learner): "env steps/s" is the steps of all robots' finished episodes per
second of wall clock from the start of the graph to the last episode's end.

``--pendulum`` also trains Dreamer with its default settings through the seed API on
Pendulum-v1 for 20,000 env steps in-process (no ROS) and reports the evaluated return.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUDGET_MINUTES = {'sac': 12.0, 'dreamer': 30.0}
TARGET_MINUTES = {'sac': 8.0, 'dreamer': 20.0}


def run_loop(algorithm: str, minutes: float, threshold: float, workdir: Path, robots: int = 1) -> dict:
    loop = workdir / f'loop_{algorithm}_{robots}'
    cmd = [sys.executable, '-m', 'robot_training.online.graph', '--algorithm', algorithm, '--loop-dir', str(loop),
           '--robots', str(robots),
           '--until-balanced', '--threshold', str(threshold), '--max-minutes', str(minutes),
           '--eval-period', '60', '--print-period', '30', '--eval-episodes', '10']
    env = dict(os.environ, ROS_DOMAIN_ID=os.environ.get('ROS_DOMAIN_ID', str(100 + os.getpid() % 100)),
               ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')
    start = time.time()
    proc = subprocess.run(cmd, env=env, text=True)
    wall = time.time() - start
    summary = json.loads((loop / 'loop_summary.json').read_text())
    row = figures(algorithm, summary, threshold, wall, proc.returncode)
    episodes = summary['episodes']
    row.update(robots=robots, env_steps_per_s=sum(e[2] for e in episodes) / episodes[-1][0] if episodes else 0.0)
    return row


def figures(algorithm: str, summary: dict, threshold: float, wall: float, code: int) -> dict:
    episodes, checkpoints = summary['episodes'], summary['checkpoints']
    announced = {path: (t, step) for t, step, path in checkpoints}
    solved = next((e for e in summary['evaluations'] if e[3] >= threshold), None)
    row = {'algorithm': algorithm, 'wall_s': wall, 'exit': code, 'evaluations': len(summary['evaluations']),
           'best_evaluation': max((e[3] for e in summary['evaluations']), default=float('nan'))}
    if solved is not None:
        t_ckpt, updates = announced.get(solved[2], (solved[0], solved[1]))
        row.update(time_to_threshold_s=t_ckpt, updates=updates, evaluated_return=solved[3],
                   env_steps=sum(e[2] for e in episodes if e[0] <= t_ckpt))
    sim, actor = summary.get('sim', {}), summary.get('actor', {})
    steps, held = int(sim.get('steps', 0)), int(sim.get('held_steps', 0))
    row.update(steps=steps, held_steps=held, missed_pct=100 * held / max(steps, 1),
               gap_max_ms=float(actor.get('gap_max_ms', 'nan')), gap_p99_ms=float(actor.get('gap_p99_ms', 'nan')),
               cost_p50_ms=float(actor.get('cost_p50_ms', 'nan')), cost_p99_ms=float(actor.get('cost_p99_ms', 'nan')),
               compute_p50_ms=float(actor.get('compute_p50_ms', 'nan')),
               compute_p99_ms=float(actor.get('compute_p99_ms', 'nan')),
               reloads=int(actor.get('reloads', 0)), episodes=len(episodes))
    return row


def pendulum_defaults(steps: int = 20_000, seed: int = 0) -> dict:
    import gymnasium as gym
    import torch

    from robot_training.reinforcement_learning.train_dreamer import train_dreamer

    torch.set_num_threads(1)
    start = time.time()
    trainer = train_dreamer(env_factory=lambda: gym.make('Pendulum-v1'), observation_shape=(3,), num_steps=steps,
                            seed=seed)
    return {'env_steps': trainer.env_steps, 'updates': trainer.updates, 'wall_s': time.time() - start,
            'eval_return': trainer.evaluate(10)}


def print_table(rows) -> None:
    period_ms = 40.0
    print(f"\n{'loop':8s} {'robots':>6s} {'steps/s':>7s} {'to >= thr':>10s} {'target':>7s} {'env steps':>9s} {'updates':>8s} {'eval':>7s} "
          f"{'missed':>12s} {'max gap':>13s} {'cost p50/p99 ms':>16s} {'policy p50/p99':>15s} {'reloads':>7s}")
    for r in rows:
        t = r.get('time_to_threshold_s')
        when = f"{t / 60:.1f} min" if t is not None else 'not met'
        print(f"{r['algorithm']:8s} {r.get('robots', 1):>6d} {r.get('env_steps_per_s', 0):>7.1f} {when:>10s} {TARGET_MINUTES[r['algorithm']]:>5.0f} m "
              f"{r.get('env_steps', '-')!s:>9s} {r.get('updates', '-')!s:>8s} "
              f"{r.get('evaluated_return', r['best_evaluation']):>7.1f} "
              f"{r['missed_pct']:>6.2f} % {r['held_steps']:>3d} "
              f"{r['gap_max_ms']:>6.0f} ms {r['gap_max_ms'] / period_ms:>3.1f} P "
              f"{r['cost_p50_ms']:>7.2f}/{r['cost_p99_ms']:<7.2f} {r['compute_p50_ms']:>6.2f}/{r['compute_p99_ms']:<7.2f} "
              f"{r['reloads']:>7d}")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--algorithms', nargs='+', default=['sac', 'dreamer'], choices=['sac', 'dreamer'])
    parser.add_argument('--minutes', type=float, default=None, help='budget per loop (default: 12 sac, 30 dreamer)')
    parser.add_argument('--threshold', type=float, default=900.0)
    parser.add_argument('--pendulum', action='store_true', help='also: Dreamer defaults on Pendulum-v1, 20k steps')
    parser.add_argument('--robots', nargs='+', type=int, default=[1], help='robots per loop (1 2: side by side)')
    parser.add_argument('--workdir', default=None)
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix='bench_loop_'))
    rows = []
    for algorithm in args.algorithms:
        for robots in args.robots:
            rows.append(run_loop(algorithm, args.minutes or BUDGET_MINUTES[algorithm], args.threshold, workdir, robots))
            print(json.dumps(rows[-1]), flush=True)
    if rows:
        print_table(rows)
    if args.pendulum:
        result = pendulum_defaults()
        print(f"\nDreamer defaults, Pendulum-v1, seed API: {result['env_steps']} env steps, {result['updates']} "
              f"updates, {result['wall_s']:.0f} s: eval return {result['eval_return']:.1f} (target >= -250)")
    print(f'runs in {workdir}')


if __name__ == '__main__':
    main()
