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

Learner: ``train --mode online`` (SAC and Dreamer, alternating) on a dataset folder of recorded
episodes, checkpointing every few updates so that many kills land inside a checkpoint write, is
SIGKILLed after a random 0.2-4 s past its first checkpoint. Two episodes are then recorded
"while it is down", and the restarted learner must resume at the update count of the newest
checkpoint that loads, with every episode of the folder (old and new) in its replay.

Launched recording: the simulator and the recorder as ``ros2 launch`` or the pip-only graph
start them (one process group), run for a random 3-8 s, then get two SIGINTs 5 ms apart, the
way a terminal's Ctrl-C and ros2 launch both forward one. Every episode must be finalised
(``metadata.yaml`` written, readable) and no process may print a traceback.
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
from test_online_learner import INTERFACE, SimRecording  # noqa: E402

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


def kill_after_first_checkpoint(args, folder: Path, env: dict, ckpt_dir: Path, delay: float) -> float:
    """Run ``train *args``, SIGKILL it ``delay`` s after its first checkpoint appears; ``delay``."""
    proc = subprocess.Popen([sys.executable, '-m', 'robot_training.train', *args], cwd=folder, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list(ckpt_dir.glob('*.pt')) and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return delay


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
        delay = kill_after_first_checkpoint([*common, '--total-timesteps', '100000000'], folder, env, ckpt_dir,
                                            rng.uniform(1.0, 6.0))
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


LEARNER = {
    'sac': ("online: {learning_starts: 40, checkpoint_every: 10, keep_checkpoints: 3}\n"
            "sac: {hidden_dim: 32, batch_size: 32}\n", 'policies/checkpoints/sac', 'sac', 'num_updates'),
    'dreamer': ("online: {learning_starts: 40, checkpoint_every: 3, keep_checkpoints: 3}\n"
                "world_model: {size: tiny, batch_size: 4, sequence_length: 8}\n",
                'reinforcement_learning/checkpoints/dreamer', 'dreamer', 'updates'),
}


def record_episodes(dataset: Path, lengths) -> None:
    from robot_training.interface.description import load_interface

    sim = SimRecording(dataset, load_interface(INTERFACE))
    sim.episode = len([p for p in dataset.glob('episode_*') if p.is_dir()]) if dataset.is_dir() else 0
    for n in lengths:
        sim.episode_of(n)
    sim.rec.close()


def learner_trials(n: int, rng: random.Random, root: Path) -> bool:
    from robot_training.checkpoint import CheckpointError, load_checkpoint

    env = dict(os.environ, PYTHONPATH=str(REPO / 'src') + os.pathsep + os.environ.get('PYTHONPATH', ''),
               OMP_NUM_THREADS='1')
    print(f'learner: {n} SIGKILL trials of train --mode online (sac / dreamer, checkpoint every 10 / 3 updates)')
    print(f"{'trial':>5}  {'algo':>7}  {'kill s':>6}  {'on disk':>7}  {'load':>4}  {'newest at':>9}  "
          f"{'resumed at':>10}  {'episodes':>8}  {'ok':>5}")
    all_ok = True
    for i in range(n):
        algorithm = ('sac', 'dreamer')[i % 2]
        extra, folder_name, kind, key = LEARNER[algorithm]
        folder = root / f'learner{i}'
        dataset = folder / 'dataset'
        record_episodes(dataset, [rng.randint(20, 60) for _ in range(30)])
        (folder / 'learner.yaml').write_text(extra + "training: {tensorboard: false, progress_bar: false}\n")
        common = ['--mode', 'online', '--algorithm', algorithm, '--data', str(dataset), '--interface', str(INTERFACE),
                  '--config', 'learner.yaml', '--checkpoint-dir', str(folder), '--seed', str(i)]
        ckpt_dir = folder / folder_name
        delay = kill_after_first_checkpoint(common, folder, env, ckpt_dir, rng.uniform(0.2, 4.0))
        files = sorted(ckpt_dir.glob('*.pt'))
        counts = []
        for f in files:
            try:
                counts.append(int(load_checkpoint(f, kind=kind)[key]))
            except CheckpointError as err:
                print(f'       {err}')
        newest = max(counts, default=0)
        record_episodes(dataset, [25, 35])  # recorded while the learner is down
        episodes = len([p for p in dataset.glob('episode_*') if p.is_dir()])
        steps = sum(len(t) for t in _trajectories(dataset))
        out = subprocess.run([sys.executable, '-m', 'robot_training.train', *common, '--total-timesteps', str(steps)],
                             cwd=folder, env=env, capture_output=True, text=True, timeout=300)
        resumed = re.search(r'resumed \S+ from \S+ at update (\d+)', out.stdout)
        row = re.search(r'online \(\w+, (\d+) episodes, (\d+) env steps, (\d+) updates\)', out.stdout)
        resumed_at = int(resumed.group(1)) if resumed else -1
        seen = int(row.group(1)) if row else -1
        ok = (out.returncode == 0 and bool(files) and len(counts) == len(files) and resumed_at == newest
              and seen == episodes)
        if not ok:
            print(f'       exit {out.returncode}: {out.stderr.strip()[-300:]}')
        all_ok &= ok
        print(f'{i:5d}  {algorithm:>7}  {delay:6.2f}  {len(files):7d}  {len(counts):4d}  {newest:9d}  '
              f'{resumed_at:10d}  {seen:>3d}/{episodes:<4d}  {str(ok):>5}', flush=True)
    print(f'learner: every checkpoint loads, the restart resumes at the newest and its replay holds every '
          f'episode in {"all" if all_ok else "NOT all"} {n} trials\n')
    return all_ok


def _trajectories(dataset: Path):
    from robot_training.data.bag_dataset import load_bag_dataset

    return list(load_bag_dataset(dataset, str(INTERFACE), cache=False))


def _default_sigint() -> None:
    """In the child: SIGINT as a terminal's ros2 launch gives it (a benchmark started with
    ``nohup ... &`` would otherwise hand its children an ignored SIGINT)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def launch_trials(n: int, rng: random.Random, root: Path) -> bool:
    from rosbags.rosbag2 import Reader

    from robot_training.recording import list_episode_dirs

    config = REPO / 'config'
    env = dict(os.environ, ROS_DOMAIN_ID=str(150 + os.getpid() % 50), ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
               PYTHONUNBUFFERED='1')
    print(f'launched recording: {n} trials of sim + policy_server + recorder in one process group, '
          'two SIGINTs 5 ms apart')
    print(f"{'trial':>5}  {'run s':>5}  {'episodes':>8}  {'finalised':>9}  {'readable':>8}  {'exit codes':>12}  "
          f"{'tracebacks':>10}")
    all_ok = True
    totals = [0, 0, 0]
    for i in range(n):
        folder = root / f'launch{i}'
        dataset = folder / 'dataset'
        folder.mkdir(parents=True)
        nodes = {
            'sim': ('sim_node', 'sim.yaml', [f'interface_file:={INTERFACE}', 'real_time_factor:=4.0']),
            'policy_server': ('policy_server_node', 'policy_server.yaml',
                              [f'interface_file:={INTERFACE}', 'random_until_loaded:=true', 'use_sim_time:=true']),
            'recorder': ('recorder_node', 'recorder.yaml',
                         [f'interface_file:={INTERFACE}', f'dataset_dir:={dataset}', 'use_sim_time:=true']),
        }
        procs, logs, group = {}, {}, 0
        for name, (module, params, extra) in nodes.items():
            cmd = [sys.executable, '-m', f'robot_training.ros.{module}', '--ros-args', '-r', f'__node:={name}',
                   '--params-file', str(config / params)]
            for p in extra:
                cmd += ['-p', p]
            logs[name] = folder / f'{name}.log'
            procs[name] = subprocess.Popen(cmd, env=env, stdout=logs[name].open('w'), stderr=subprocess.STDOUT,
                                           process_group=group, preexec_fn=_default_sigint)
            group = group or procs[name].pid
        run_s = rng.uniform(3.0, 8.0)
        time.sleep(run_s)
        os.killpg(group, signal.SIGINT)  # ros2 launch forwards one ...
        time.sleep(0.005)
        os.killpg(group, signal.SIGINT)  # ... and the terminal's Ctrl-C reaches the whole group
        codes = []
        for proc in procs.values():
            try:
                codes.append(proc.wait(timeout=30))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait())
        tracebacks = sum(log.read_text(errors='replace').count('Traceback') for log in logs.values())
        episodes = list_episode_dirs(dataset) if dataset.is_dir() else []
        finalised = sum((d / 'metadata.yaml').is_file() for d in episodes)
        readable = 0
        for d in episodes:
            try:
                with Reader(d) as reader:
                    for _ in reader.messages():
                        pass
                readable += 1
            except Exception:  # noqa: BLE001 - counted as not readable
                pass
        ok = finalised == readable == len(episodes) and tracebacks == 0 and all(c == 0 for c in codes)
        all_ok &= ok
        totals[0] += len(episodes)
        totals[1] += finalised
        totals[2] += tracebacks
        print(f'{i:5d}  {run_s:5.1f}  {len(episodes):8d}  {finalised:9d}  {readable:8d}  '
              f'{" ".join(str(c) for c in codes):>12}  {tracebacks:10d}', flush=True)
    print(f'launched recording: {totals[1]}/{totals[0]} episodes finalised '
          f'({100.0 * totals[1] / max(totals[0], 1):.0f} %), {totals[2]} tracebacks, '
          f'{"every" if all_ok else "NOT every"} process exited 0\n')
    return all_ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--recorder-trials', type=int, default=20)
    parser.add_argument('--trainer-trials', type=int, default=20)
    parser.add_argument('--learner-trials', type=int, default=20)
    parser.add_argument('--launch-trials', type=int, default=20)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix='bench_faults_') as tmp:
        ok = True
        if args.recorder_trials:
            ok &= recorder_trials(args.recorder_trials, rng, Path(tmp))
        if args.trainer_trials:
            ok &= trainer_trials(args.trainer_trials, rng, Path(tmp))
        if args.learner_trials:
            ok &= learner_trials(args.learner_trials, rng, Path(tmp))
        if args.launch_trials:
            ok &= launch_trials(args.launch_trials, rng, Path(tmp))
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
