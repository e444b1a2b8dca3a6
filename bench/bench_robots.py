"""Robots benchmark: policies trained on the embedded ugv and uav, judged on waypoint missions.

    source scripts/env.sh
    python bench/bench_robots.py --train sac:ugv:200000                  # SAC defaults: 100 % of the waypoints
    python bench/bench_robots.py --train dreamer:ugv:40000               # Dreamer defaults, online, from state
    python bench/bench_robots.py --train ppo:uav:300000 sac:ugv:100000   # model-free, from state
    python bench/bench_robots.py --train ppo:ugv:1000000:ugv              # with config/presets/ugv.yaml
    python bench/bench_robots.py --bc 50                                  # BC from 50 recorded demos
    python bench/bench_robots.py --bc 50 --bc-seeds 0 3 7 11              # four demo sets, and their mean
    python bench/bench_robots.py --speed                                  # lock-step rate over ROS, camera

Each ``--train ALGORITHM:ROBOT:STEPS`` trains with the package defaults (``PolicyTrainer``, the
seed's API; ``train_dreamer`` online for ``dreamer``) and evaluates the final checkpoint through the deploy path on 50 seeded missions
(``WaypointNavigator``, seeds 1000..1049, never seen in training: training missions are
drawn from the env's own RNG). ``--bc N`` records N scripted missions over ROS (simulator in
lock-step, the navigator's scripted controller, the recorder, one bag per mission), trains
behavioral cloning on the bags (``train --mode supervised --preset ugv --data``) and evaluates it the same
way. ``--speed`` measures the simulator's lock-step rate with the ugv's lidar over ROS (a
scripted mission: simulated seconds per wall-clock second) and the camera's render cost.

Targets (issue "Robots that look like robots"): ugv ≥ 90 % of waypoints with ≤ 5 % collisions
(PPO or SAC), BC ≥ 80 %; uav ≥ 90 %; lock-step ≥ 20x real time.
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
EVAL_SEED, EVAL_MISSIONS = 1000, 50
DEMO_DISTURBANCE = 0.5
"""Demonstrations recorded with the simulator pushing the robot off its path (README, "Robots")."""


def evaluate(robot: str, checkpoint) -> dict:
    from robot_training.scenarios import WaypointNavigator

    navigator = WaypointNavigator(robot, policy=checkpoint)
    report = navigator.run(EVAL_MISSIONS, seed=EVAL_SEED)
    navigator.close()
    return {'waypoints_pct': 100 * report.waypoint_rate, 'collisions_pct': 100 * report.collision_rate,
            'complete_pct': 100 * report.success_rate}


def train(algorithm: str, robot: str, steps: int, workdir: Path, preset: str = '') -> dict:
    import torch

    from robot_training.config import load_config
    from robot_training.envs import ROBOT_ENV_IDS
    from robot_training.policies.train_policy import PolicyTrainer

    torch.set_num_threads(1)
    start = time.time()
    config, name = load_config(preset=preset or None), f'{algorithm}_{robot}{"_" + preset if preset else ""}'
    if algorithm == 'dreamer':  # online, from the robot's state vector (scan + odometry + IMU + goal)
        from robot_training.reinforcement_learning.train_dreamer import train_dreamer

        trainer = train_dreamer(env_factory=ROBOT_ENV_IDS[robot], num_steps=steps, config=config)
        checkpoint = trainer.save_checkpoint(workdir / f'{name}.pt')
    else:
        trainer = PolicyTrainer(algorithm, ROBOT_ENV_IDS[robot], config=config, checkpoint_dir=workdir / name,
                                progress_bar=False)
        trainer.learn(steps)
        trainer.close()
        checkpoint = trainer.final_checkpoint
    row = {'run': f'{algorithm} {robot}' + (f' (preset {preset})' if preset else ''), 'env_steps': steps,
           'train_min': (time.time() - start) / 60}
    row.update(evaluate(robot, checkpoint))
    return row


def run(cmd, env, **kw):
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: __import__('signal').signal(2, 0), **kw)


def ros_env() -> dict:
    return dict(os.environ, ROS_DOMAIN_ID=os.environ.get('ROS_DOMAIN_ID', str(150 + os.getpid() % 50)),
                ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')


def record_demonstrations(missions: int, dataset: Path, seed: int = 0, record: bool = True,
                          disturbance: float = 0.0) -> float:
    """Scripted ugv missions over ROS into one bag each (``record``), the simulator's actuator
    disturbance at ``disturbance``; returns the wall-clock seconds."""
    env = ros_env()
    py = [sys.executable, '-m']
    sim = run(py + ['robot_training.ros.sim_node', '--ros-args', '-p', 'env:=robot_training/Ugv-v0',
                    '-p', f"env_kwargs:='{{disturbance: {disturbance}}}'",
                    '-p', 'step_mode:=command', '-p', f'seed:={seed}',
                    '-p', f'wait_for_subscribers:={2 if record else 1}',
                    '-p', 'status_period_s:=0.0'], env)
    dataset.parent.mkdir(parents=True, exist_ok=True)
    rec = None if not record else run(py + ['robot_training.ros.recorder_node', '--ros-args', '--params-file',
                    str(REPO / 'config' / 'recorder.yaml'), '-p', f'dataset_dir:={dataset}',
                    '-p', f"interface_file:={REPO / 'config' / 'interface_ugv.yaml'}", '-p', 'use_sim_time:=true',
                    '-p', 'discovery_period_s:=0.2'], env)
    start = time.time()
    nav = run(py + ['robot_training.ros.navigator_node', '--ros-args', '-p', 'robot:=ugv',
                    '-p', f'missions:={missions}', '-p', f'report_file:={dataset.parent / "demos.json"}'], env)
    out, _ = nav.communicate(timeout=3600)
    wall = time.time() - start
    for proc in (p for p in (rec, sim) if p is not None):
        proc.send_signal(2)
        proc.wait(timeout=60)
    if nav.returncode != 0:
        raise RuntimeError(f'navigator failed:\n{out[-3000:]}')
    return wall


def behavioral_cloning(missions: int, workdir: Path, disturbance: float, seed: int = 0) -> dict:
    dataset = workdir / f'demos_seed{seed}' / 'dataset'
    wall = record_demonstrations(missions, dataset, seed=seed, disturbance=disturbance)
    demos = json.loads((dataset.parent / 'demos.json').read_text())['missions']
    start = time.time()
    out = workdir / f'bc_seed{seed}'
    subprocess.run([sys.executable, '-m', 'robot_training.train', '--mode', 'supervised', '--data', str(dataset),
                    '--interface', str(REPO / 'config' / 'interface_ugv.yaml'), '--checkpoint-dir', str(out),
                    '--preset', 'ugv'], check=True)
    checkpoint = sorted(out.rglob('*final*.pt'))[-1]
    row = {'run': f'bc ugv --preset ugv ({missions} demos, disturbance {disturbance:g}, demo seed {seed})', 'env_steps': sum(m['steps'] for m in demos),
           'train_min': (time.time() - start) / 60, 'record_min': wall / 60,
           'demo_waypoints_pct': 100 * sum(m['waypoints_reached'] for m in demos) / sum(m['num_waypoints'] for m in demos)}
    row.update(evaluate('ugv', checkpoint))
    return row


def speed(workdir: Path) -> list:
    rows = []
    for record in (False, True):
        folder = workdir / f'speed_{"recorded" if record else "plain"}'
        wall = record_demonstrations(5, folder / 'dataset', seed=500, record=record)
        demos = json.loads((folder / 'demos.json').read_text())['missions']
        simulated = sum(m['time_s'] for m in demos)
        rows.append({'run': f'ugv lock-step over ROS, 5 missions{", recorder on" if record else ""}',
                     'realtime_factor': simulated / sum(m['wall_s'] for m in demos),  # start-up excluded
                     'realtime_factor_incl_startup': simulated / wall})
    from robot_training.envs import make_env

    env = make_env('robot_training/Ugv-v0', camera=True)
    env.reset(seed=0)
    env.unwrapped.robot_state()
    timings = []
    for _ in range(20):
        env.step(env.action_space.sample())
        start = time.perf_counter()
        env.unwrapped.robot_state()
        timings.append(time.perf_counter() - start)
    env.close()
    rows.append({'run': 'ugv camera 64x64 (robot_state with the frame)', 'camera_ms_per_frame': 1000 * sorted(timings)[10]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--train', nargs='*', default=[], metavar='ALGORITHM:ROBOT:STEPS[:PRESET]')
    parser.add_argument('--bc', type=int, default=0, metavar='MISSIONS')
    parser.add_argument('--disturbance', type=float, default=DEMO_DISTURBANCE,
                        help='the simulator\'s actuator disturbance while the demonstrations are recorded '
                             f'(UgvEnv(disturbance=...); default {DEMO_DISTURBANCE}, 0: clean demonstrations)')
    parser.add_argument('--bc-seeds', type=int, nargs='+', default=[0], metavar='SEED',
                        help='one demonstration set per seed (the simulator\'s mission seeds), each cloned and '
                             'judged on its own, then their mean: which 50 missions are demonstrated moves the '
                             'result by several points')
    parser.add_argument('--speed', action='store_true')
    parser.add_argument('--workdir', default=None)
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix='bench_robots_'))
    rows = []
    for spec in args.train:
        algorithm, robot, steps, *preset = spec.split(':')
        rows.append(train(algorithm, robot, int(steps), workdir, *preset))
        print(json.dumps(rows[-1]), flush=True)
    if args.bc:
        bc_rows = []
        for seed in args.bc_seeds:
            bc_rows.append(behavioral_cloning(args.bc, workdir, args.disturbance, seed))
            print(json.dumps(bc_rows[-1]), flush=True)
        rows += bc_rows
        if len(bc_rows) > 1:
            judged = ('waypoints_pct', 'collisions_pct', 'complete_pct')
            rows.append({'run': f'bc ugv, mean of {len(bc_rows)} demonstration sets',
                         **{k: sum(r[k] for r in bc_rows) / len(bc_rows) for k in judged}})
    if args.speed:
        rows += speed(workdir)
        print(json.dumps(rows[-3:]), flush=True)
    keys = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    print('\n| ' + ' | '.join(keys) + ' |\n|' + '---|' * len(keys))
    for row in rows:
        print('| ' + ' | '.join(f'{row[k]:.1f}' if isinstance(row.get(k), float) else str(row.get(k, ''))
                                for k in keys) + ' |')
    print(f'\n(workdir {workdir})')


if __name__ == '__main__':
    main()
