"""``online_loop``: the learning loop's graph from the installed executables, for set-ups
without ``ros2 launch`` (the pip-only one). The same nodes, names and parameters file
(``config/online_loop.yaml``) as ``train_dreamer.launch.py``::

    online_loop                                   # Dreamer on the embedded pendulum, until Ctrl-C
    online_loop --algorithm sac --until-balanced --max-minutes 15
    online_loop --use-sim false --interface-file robot.yaml --loop-dir runs/robot1
    online_loop --algorithm sac --robots 2        # a fleet: two simulated robots, one learner

It starts ``sim`` (with ``--use-sim true``), ``policy_server``, ``recorder``, ``trainer`` (as
``learner``, mode online) and a ``loop_monitor`` that prints progress. Ctrl-C stops all of
them (every node finishes what it holds: the open bag, the learner's last checkpoint). When
the monitor ends the run (``--until-balanced`` and solved, or ``--max-minutes`` spent) the
graph is stopped the same way. Then the newest checkpoint is evaluated and a table of the
run is printed; ``<loop-dir>/learning_curve.png`` shows return against wall-clock time and
env steps. With ``--robots N`` (N > 1) each robot's ``sim``, ``policy_server`` and
``recorder`` run in the namespace ``robot1`` … ``robotN`` (:mod:`robot_training.online.fleet`),
each recorder writes ``<loop-dir>/dataset/robotI/``, and the one learner trains on all of them.
A node that dies (other than the learner, whose death the actor rides out with
the last good policy) stops the graph with one line naming it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

#: node name → (console script, module): what train_dreamer.launch.py starts
NODES = {
    'sim': ('sim', 'robot_training.ros.sim_node'),
    'policy_server': ('policy_server', 'robot_training.ros.policy_server_node'),
    'recorder': ('recorder', 'robot_training.ros.recorder_node'),
    'learner': ('trainer', 'robot_training.ros.trainer_node'),
    'loop_monitor': ('loop_monitor', 'robot_training.ros.loop_monitor_node'),
}


def share_dir() -> Path:
    """The installed share/robot_training (the source tree when not installed)."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory('robot_training'))
    except Exception:  # noqa: BLE001 - not installed through ament
        return Path(__file__).resolve().parents[3]


def executable(name: str) -> List[str]:
    script, module = NODES[name]
    try:
        from ament_index_python.packages import get_package_prefix

        path = Path(get_package_prefix('robot_training')) / 'lib' / 'robot_training' / script
        if os.access(path, os.X_OK):
            return [str(path)]
    except Exception:  # noqa: BLE001
        pass
    return [sys.executable, '-m', module]


def build_parser() -> argparse.ArgumentParser:
    config = share_dir() / 'config'
    p = argparse.ArgumentParser(prog='online_loop', description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--algorithm', default='dreamer', help='the learner: dreamer or sac (ppo is refused)')
    p.add_argument('--use-sim', default='true', choices=['true', 'false'],
                   help='true: the embedded simulated robot; false: your robot (set --interface-file)')
    p.add_argument('--interface-file', default=str(config / 'interface_inverted_pendulum.yaml'))
    p.add_argument('--loop-dir', default='loop', help='the run folder: dataset/, checkpoints, runs/')
    p.add_argument('--params-file', default=str(config / 'online_loop.yaml'))
    p.add_argument('--env', default='InvertedPendulum-v5', help='the simulated robot (--use-sim true)')
    p.add_argument('--robots', type=int, default=1,
                   help='robots feeding the one learner, each with its own robot, actor and recorder in the '
                        'namespace robot1 ... robotN (1: the root namespace)')
    p.add_argument('--config', default='', help="the learner's YAML overriding config/default_config.yaml")
    p.add_argument('--preset', default='robot_loop',
                   help="the learner's named configuration of config/presets/ ('' for none)")
    p.add_argument('--seed', type=int, default=-1)
    p.add_argument('--total-timesteps', type=int, default=0, help='learner budget in recorded env steps (0: none)')
    p.add_argument('--until-balanced', action='store_true',
                   help='stop once --confirmations checkpoints in a row evaluate at --threshold or more')
    p.add_argument('--confirmations', type=int, default=2)
    p.add_argument('--threshold', type=float, default=900.0)
    p.add_argument('--eval-env', default=None, help='Gymnasium id to evaluate checkpoints in (default: --env '
                                                     'with the embedded robot, none with yours)')
    p.add_argument('--eval-episodes', type=int, default=10, help='deterministic episodes of every evaluation')
    p.add_argument('--max-minutes', type=float, default=0.0, help='stop after this long (0: no limit)')
    p.add_argument('--print-period', type=float, default=15.0, help='seconds between progress lines')
    p.add_argument('--eval-period', type=float, default=120.0,
                   help='evaluate the newest checkpoint at least this often, in seconds (0: only after good episodes)')
    return p


#: the nodes each robot of a fleet has (the learner and the monitor are the fleet's)
ROBOT_NODES = ('sim', 'policy_server', 'recorder')


def node_commands(args) -> Dict[str, List[str]]:
    """Process name (``sim``, or ``robot1/sim`` in a fleet) → command line."""
    from robot_training.interface.description import load_interface
    from robot_training.online.fleet import robot_namespaces, robot_seed, ros_arguments

    loop = Path(args.loop_dir)
    sim_time = args.use_sim
    eval_env = args.eval_env if args.eval_env is not None else (args.env if args.use_sim == 'true' else '')
    namespaces = robot_namespaces(args.robots)
    robot = {
        'sim': lambda ns: {'interface_file': args.interface_file, 'env': args.env, 'seed': robot_seed(ns)},
        'policy_server': lambda ns: {'interface_file': args.interface_file, 'use_sim_time': sim_time,
                                     'seed': robot_seed(ns)},
        'recorder': lambda ns: {'interface_file': args.interface_file, 'use_sim_time': sim_time,
                                'dataset_dir': str(loop / 'dataset' / ns if ns else loop / 'dataset')},
    }
    fleet = {
        'learner': {'algorithm': args.algorithm, 'data': str(loop / 'dataset'), 'interface': args.interface_file,
                    'checkpoint_dir': str(loop), 'log_dir': str(loop / 'runs'), 'config': args.config,
                    'preset': args.preset, 'seed': args.seed, 'total_timesteps': args.total_timesteps},
        'loop_monitor': {'loop_dir': str(loop), 'interface_file': args.interface_file, 'eval_env': eval_env or '',
                         'eval_episodes': args.eval_episodes, 'confirmations': args.confirmations,
                         'threshold': args.threshold, 'until_balanced': args.until_balanced,
                         'max_minutes': args.max_minutes, 'print_period_s': args.print_period,
                         'eval_period_s': args.eval_period, 'robot_namespaces': ','.join(namespaces)},
    }
    interface = load_interface(args.interface_file) if len(namespaces) > 1 else None
    out = {}
    for ns in namespaces:
        for name in ROBOT_NODES:
            if name == 'sim' and args.use_sim != 'true':
                continue
            out[f'{ns}/{name}' if ns else name] = _command(name, args.params_file, robot[name](ns),
                                                           ros_arguments(ns, interface))
    for name, values in fleet.items():
        out[name] = _command(name, args.params_file, values)
    return out


def _command(name: str, params_file: str, values: dict, ros_args: List[str] = ()) -> List[str]:
    cmd = executable(name) + ['--ros-args', '-r', f'__node:={name}', *ros_args, '--params-file', params_file]
    for key, value in values.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        cmd += ['-p', f'{key}:={text}' if text != '' else f'{key}:=""']
    return cmd


def run_graph(args) -> int:
    """Start the nodes, wait for Ctrl-C, the monitor's end or a node's death; stop them all."""
    Path(args.loop_dir).mkdir(parents=True, exist_ok=True)
    logs = Path(args.loop_dir) / 'logs'
    logs.mkdir(exist_ok=True)
    procs: Dict[str, subprocess.Popen] = {}
    interrupted = []
    signal.signal(signal.SIGTERM, lambda *_: interrupted.append('SIGTERM'))
    signal.signal(signal.SIGINT, lambda *_: interrupted.append('SIGINT'))
    for name, cmd in node_commands(args).items():
        if name == 'loop_monitor':
            procs[name] = subprocess.Popen(cmd)  # its progress lines go to the terminal
        else:
            out = open(logs / f"{name.replace('/', '_')}.log", 'a', encoding='utf-8')
            procs[name] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    print(f"online_loop: {', '.join(procs)} started (logs in {logs}); Ctrl-C stops the loop", flush=True)
    reason = ''
    while not reason:
        time.sleep(0.2)
        if interrupted:
            reason = f'stopped by {interrupted[0]}'
            break
        for name, proc in procs.items():
            code = proc.poll()
            if code is None or name == 'learner' and code == 0:
                continue
            if name == 'loop_monitor':
                reason = 'the monitor ended the run'
            elif name != 'learner':
                reason = f"{name} exited with status {code} (see {logs / (name.replace('/', '_') + '.log')})"
            elif not getattr(proc, 'reported', False):
                proc.reported = True
                print(f'online_loop: the learner exited with status {code} (see {logs / "learner.log"}); '
                      'the actor keeps acting with the last policy', flush=True)
            if reason:
                break
        if reason and reason != 'the monitor ended the run':
            # a terminal's Ctrl-C reaches the nodes and this script together, and a node at real-time
            # priority can be gone before this script runs its handler: a node's exit then is the stop
            time.sleep(0.5)
            if interrupted:
                reason = f'stopped by {interrupted[0]}'
    print(f'online_loop: {reason}; stopping the graph', flush=True)
    # The robots first (the recorders finish their open episodes), then the learner, whose last
    # look at the dataset then takes those episodes into its final checkpoint. A terminal's
    # Ctrl-C reached every node at once already (SIGINT is idempotent); then a restart of the
    # learner takes in what its last look missed.
    _stop({n: p for n, p in procs.items() if n != 'learner'})
    _stop({n: p for n, p in procs.items() if n == 'learner'})
    failed = [n for n, p in procs.items() if p.returncode not in (0, -signal.SIGINT)]
    if failed:
        print(f"online_loop: {', '.join(failed)} did not exit cleanly (see {logs})", flush=True)
    return 1 if failed and not interrupted else 0


def _stop(procs: Dict[str, subprocess.Popen], timeout_s: float = 60.0) -> None:
    """SIGINT each process, wait up to ``timeout_s`` for all of them, kill the ones left."""
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + timeout_s
    for name, proc in procs.items():
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f'online_loop: {name} did not stop in time; killed', flush=True)
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- report


# evaluate_policy's first seed for the final check (the monitor's evaluations start at 10_000)
HELD_OUT_SEED = 50_000


def newest_checkpoint(loop_dir: Path) -> Optional[Path]:
    files = [p for p in loop_dir.glob('*/checkpoints/*/*_online_*.pt') if p.is_file()]
    return max(files, key=lambda p: p.stat().st_mtime_ns) if files else None


def report(args) -> dict:
    """The run's table (and the learning-curve PNG) from the monitor's summary."""
    loop = Path(args.loop_dir)
    path = loop / 'loop_summary.json'
    summary = json.loads(path.read_text()) if path.is_file() else {'episodes': [], 'evaluations': []}
    episodes = summary.get('episodes', [])
    rate = None
    try:
        from robot_training.interface.description import load_interface

        interface = load_interface(args.interface_file)
        rate = interface.control_rate_hz
    except Exception:  # noqa: BLE001 - reported without the rate
        interface = None
    rows = []
    first = next((i for i, e in enumerate(episodes) if e[1] >= args.threshold), None)
    if first is not None:
        t = episodes[first][0]
        steps = sum(e[2] for e in episodes[:first + 1])
        rows.append(('time to the first successful episode',
                     f'{int(t // 60)} min {int(t % 60)} s (episode {first + 1}, return {episodes[first][1]:.0f}, '
                     f'{steps} env steps)'))
    else:
        rows.append(('time to the first successful episode', f'none yet (no episode returned {args.threshold:g})'))
    eval_env = args.eval_env if args.eval_env is not None else (args.env if args.use_sim == 'true' else '')
    # The policy to deploy is the best one the monitor evaluated (kept as best_policy.pt): the
    # learner goes on updating after it, and an off-policy learner's newest weights can be worse
    # than the ones that balanced. It is evaluated again here on seeds the monitor never used,
    # so the figure is a held-out check, not the number that chose it.
    best = summary.get('best')
    kept = loop / 'best_policy.pt'
    newest = newest_checkpoint(loop)
    target, what = ((kept, f'best_policy.pt, from {Path(best[2]).name}') if best is not None and kept.is_file()
                    else (newest, f'the newest checkpoint {newest.name}' if newest is not None else ''))
    final = None
    if target is not None and eval_env and interface is not None:
        from robot_training.deploy import DeployError, load_policy
        from robot_training.envs.collection import evaluate_policy

        try:
            final = evaluate_policy(load_policy(target, interface=interface), eval_env, args.eval_episodes,
                                    seed=HELD_OUT_SEED)
            rows.append(('final evaluated return', f'{final:.1f} ({args.eval_episodes} deterministic episodes '
                                                     f'in {eval_env} on unseen seeds, {what})'))
        except DeployError as err:
            rows.append(('final evaluated return', f'not evaluated: {err}'))
    elif target is None:
        rows.append(('final evaluated return', 'no checkpoint yet (the learner had too little data)'))
    solved = next((e for e in summary.get('evaluations', []) if e[3] >= args.threshold), None)
    if solved is not None:
        t = solved[0]
        rows.append(('first checkpoint evaluated >= threshold',
                     f'{Path(solved[2]).name} (update {solved[1]}): {solved[3]:.1f}, evaluated at '
                     f'{int(t // 60)} min {int(t % 60)} s'))
    if best is not None and kept.is_file():
        rows.append(('best policy (deploy this one)', f"{kept}: {Path(best[2]).name} "
                                                       f"(update {best[1]}), evaluated {best[3]:.1f}"))
    sim, actor, learner = summary.get('sim', {}), summary.get('actor', {}), summary.get('learner', {})
    if sim.get('steps'):
        held, steps = int(sim.get('held_steps', 0)), int(sim['steps'])
        rows.append(('control ticks missed', f'{100 * held / max(steps, 1):.2f} % ({held} of {steps} steps)'))
    if actor.get('gap_max_ms'):
        gap = float(actor['gap_max_ms'])
        periods = f' ({gap * rate / 1000:.1f} control periods)' if rate else ''
        rows.append(('longest gap between two actions', f'{gap:.0f} ms{periods}'))
        rows.append(('actor cost per tick p50 / p99',
                     f"{float(actor.get('cost_p50_ms', 0)):.2f} / {float(actor.get('cost_p99_ms', 0)):.2f} ms "
                     f"(observation + policy {float(actor.get('compute_p50_ms', 0)):.2f} / "
                     f"{float(actor.get('compute_p99_ms', 0)):.2f} ms; the rest is publishing)"))
        rows.append(('hot reloads', f"{actor.get('reloads', 0)} ({actor.get('refused', 0)} refused)"))
    if episodes and episodes[-1][0] > 0:
        count = len(summary.get('robots', {})) or 1
        rows.append(('env steps per second', f'{sum(e[2] for e in episodes) / episodes[-1][0]:.1f} (finished '
                                             f"episodes of {'1 robot' if count == 1 else f'{count} robots'}, "
                                             'start to the last episode end)'))
    for ns, status in summary.get('robots', {}).items():
        mine = [e for e in episodes if len(e) > 4 and e[4] == ns]
        held, steps = int(status['sim'].get('held_steps', 0)), int(status['sim'].get('steps', 0))
        rows.append((f'  {ns}', f"{len(mine)} episodes, {sum(e[2] for e in mine)} env steps, ticks missed "
                                f"{100 * held / max(steps, 1):.2f} %, reloads {status['actor'].get('reloads', 0)}"))
    if learner:
        rows.append(('learner', f"{int(float(learner.get('loop/updates', 0)))} updates on "
                                f"{int(float(learner.get('loop/env_steps', 0)))} env steps of "
                                f"{int(float(learner.get('loop/episodes', 0)))} episodes"))
    if summary.get('stopped'):
        rows.append(('ended', summary['stopped']))
    width = max(len(k) for k, _ in rows)
    print('-' * 78)
    robots = f' x {args.robots} robots' if getattr(args, 'robots', 1) > 1 else ''
    print(f'learning loop: {args.algorithm} on {args.env if args.use_sim == "true" else args.interface_file}{robots}')
    for k, v in rows:
        print(f'  {k.ljust(width)}  {v}')
    png = plot_curve(summary, loop / 'learning_curve.png', args.algorithm)
    if png is not None:
        print(f'  {"learning curve".ljust(width)}  {png}')
    print('-' * 78, flush=True)
    return {'rows': rows, 'final_return': final, 'summary': summary}


def plot_curve(summary: dict, path: Path, title: str) -> Optional[Path]:
    """Episode return against wall-clock minutes and against env steps (matplotlib, no display)."""
    episodes = summary.get('episodes', [])
    if not episodes:
        return None
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np

    t = np.array([e[0] for e in episodes]) / 60
    ret = np.array([e[1] for e in episodes])
    steps = np.cumsum([e[2] for e in episodes])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, x, label in ((axes[0], t, 'wall-clock time (min)'), (axes[1], steps, 'env steps')):
        ax.plot(x, ret, '.', alpha=0.4, label='episode return (exploring)')
        if len(ret) >= 5:
            k = min(20, len(ret))
            ax.plot(x[k - 1:], np.convolve(ret, np.ones(k) / k, mode='valid'), '-', label=f'mean of {k}')
        ax.set_xlabel(label)
        ax.set_ylabel('return')
        ax.grid(alpha=0.3)
    evals = summary.get('evaluations', [])
    if evals:
        axes[0].plot([e[0] / 60 for e in evals], [e[3] for e in evals], 's', color='k', label='evaluated checkpoint')
    axes[0].legend(loc='best', fontsize=8)
    fig.suptitle(f'learning loop ({title})')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.algorithm == 'ppo':
        print('online_loop: error: ppo is on-policy: it needs fresh rollouts of the policy being updated, not '
              'episodes recorded by earlier policies; use --algorithm sac or dreamer', file=sys.stderr)
        return 2
    if not Path(args.params_file).is_file() or not Path(args.interface_file).is_file():
        missing = args.params_file if not Path(args.params_file).is_file() else args.interface_file
        print(f'online_loop: error: {missing}: no such file', file=sys.stderr)
        return 2
    if args.robots < 1:
        print(f'online_loop: error: --robots must be 1 or more, got {args.robots}', file=sys.stderr)
        return 2
    code = run_graph(args)
    report(args)
    return code


if __name__ == '__main__':
    sys.exit(main())
