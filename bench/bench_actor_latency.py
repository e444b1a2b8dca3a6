"""Actor latency beside a learner: how the learner's CPU scheduling changes the robot's
control loop on a 2-core machine, measured side by side in one run.

    source scripts/env.sh
    python bench/bench_actor_latency.py --checkpoint policy.pt --seconds 60

For each variant the embedded robot (simulator node, timer mode, real time), the policy
server (``act_on: observation``) and the recorder run as in the learning loop, beside two
processes that train an MLP as fast as they can (standing in for the learner and the loop
monitor's evaluations, one PyTorch thread each). The variants differ only in how those two
load processes are scheduled:

* ``quiet``: no load at all (the floor);
* ``nice10``: niceness 10;
* ``idle``: ``SCHED_IDLE`` (the kernel lets any normal task preempt them at once);
* ``pinned``: load on CPU 1, robot processes on CPU 0.

A ``+pmqos`` suffix (``quiet+pmqos``, ``nice10+pmqos``) runs that variant while this script
holds a CPU latency request of 0 us (``/dev/cpu_dma_latency``, Linux PM QoS; needs root): idle
CPUs then poll instead of halting, what the policy server's ``cpu_latency_us`` parameter asks for.
A ``+batch`` suffix starts the simulator and the recorder under ``SCHED_BATCH`` (``chrt -b``):
their wake-ups on the actor's command no longer preempt the actor. A ``+fifo`` suffix runs the
three robot nodes with ``realtime_priority:=10`` (every thread under ``SCHED_FIFO``, the loop's
default; root or ``rtprio`` in ``/etc/security/limits.conf``): they preempt the load the moment
they wake. Without it they run with ``realtime_priority:=0`` (normal priority).

The table gives the actor's cost per tick (observation build + policy + publish) p50 / p99,
its compute part (observation + policy) p99, the longest gap between two published actions,
the simulator's steps held without a fresh command and the load's training throughput
(updates/s, summed), so the price of each variant for the learner is on the same line.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INTERFACE = REPO / 'config' / 'interface_inverted_pendulum.yaml'
PARAMS = REPO / 'config' / 'online_loop.yaml'

LOAD = r'''
import os, sys, time, torch
torch.set_num_threads(1)
if sys.argv[1] == 'idle':
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
elif sys.argv[1] == 'nice10':
    os.nice(10)
net = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ELU(), torch.nn.Linear(256, 256), torch.nn.ELU(),
                          torch.nn.Linear(256, 1))
opt = torch.optim.Adam(net.parameters(), 3e-4)
x, y = torch.randn(256, 64), torch.randn(256, 1)
n, start = 0, time.monotonic()
deadline = start + float(sys.argv[2])
while time.monotonic() < deadline:
    loss = ((net(x) - y) ** 2).mean()
    opt.zero_grad(); loss.backward(); opt.step(); n += 1
print(f'UPDATES {n / (time.monotonic() - start):.1f}', flush=True)
'''


def node(module: str, name: str, *params: str, cpus: str = '') -> list:
    cmd = [sys.executable, '-m', f'robot_training.ros.{module}', '--ros-args', '-r', f'__node:={name}',
           '--params-file', str(PARAMS)]
    for p in params:
        cmd += ['-p', p]
    return (['taskset', '-c', cpus] if cpus else []) + cmd


def run_variant(variant: str, checkpoint: str, seconds: float, tmp: Path, run: int = 0) -> dict:
    from robot_training.utils.priority import hold_cpu_latency

    name = variant
    variant, *flags = name.split('+')
    held = hold_cpu_latency(0) if 'pmqos' in flags else None
    if 'pmqos' in flags and held is None:
        raise SystemExit(f'{name}: /dev/cpu_dma_latency cannot be written (needs root)')
    try:
        row = _run_variant(variant, checkpoint, seconds, tmp, run, batch='batch' in flags, fifo='fifo' in flags)
    finally:
        if held is not None:
            os.close(held)
    row['variant'] = name
    return row


def _run_variant(variant: str, checkpoint: str, seconds: float, tmp: Path, run: int, batch: bool = False,
                 fifo: bool = False) -> dict:
    robot_cpus = '0' if variant == 'pinned' else ''
    out = tmp / f'{run}_{variant}'
    out.mkdir()
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
               ROS_DOMAIN_ID=str(150 + (os.getpid() + run) % 60))
    robot = {
        'sim': node('sim_node', 'sim', f'interface_file:={INTERFACE}', cpus=robot_cpus),
        'policy_server': node('policy_server_node', 'policy_server', f'interface_file:={INTERFACE}',
                              f'checkpoint:={checkpoint}', 'deterministic:=true', 'random_until_loaded:=false',
                              'use_sim_time:=true', cpus=robot_cpus),
        'recorder': node('recorder_node', 'recorder', f'interface_file:={INTERFACE}',
                         f'dataset_dir:={out / "dataset"}', 'use_sim_time:=true', cpus=robot_cpus),
    }
    if batch:
        for name in ('sim', 'recorder'):
            robot[name] = ['chrt', '-b', '0'] + robot[name]
    for cmd in robot.values():  # after the params file, so this value wins
        cmd += ['-p', f'realtime_priority:={10 if fifo else 0}']
    procs = {name: subprocess.Popen(cmd, env=env, stdout=open(out / f'{name}.log', 'w'), stderr=subprocess.STDOUT)
             for name, cmd in robot.items()}
    time.sleep(8.0)  # discovery and imports, before the load starts
    loads = []
    if variant != 'quiet':
        policy = {'pinned': 'none'}.get(variant, variant)
        for i in range(2):
            cmd = [sys.executable, '-c', LOAD, policy, str(seconds)]
            if variant == 'pinned':
                cmd = ['taskset', '-c', '1'] + cmd
            loads.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
    time.sleep(seconds + 1.0)
    rate = 0.0
    for load in loads:
        text = load.communicate(timeout=60)[0]
        rate += float(re.search(r'UPDATES ([\d.]+)', text).group(1))
    for proc in procs.values():
        proc.send_signal(signal.SIGINT)
    for proc in procs.values():
        proc.wait(timeout=60)
    server = (out / 'policy_server.log').read_text()
    sim = (out / 'sim.log').read_text()
    row = {'variant': variant, 'load_updates_per_s': rate}
    m = re.search(r'tick cost p50 ([\d.]+) ms p99 ([\d.]+) ms \(observation \+ policy p50 ([\d.]+) ms p99 ([\d.]+) ms\)'
                  r', longest gap ([\d.]+) ms', server)
    if m:
        row.update(cost_p50=float(m[1]), cost_p99=float(m[2]), compute_p99=float(m[4]), gap_max=float(m[5]))
    m = re.search(r'\[sim\] stopped: (\{.*\})', sim)
    if m:
        status = ast.literal_eval(m[1])
        steps, held = int(status.get('steps', 0)), int(status.get('held_steps', 0))
        row.update(steps=steps, held_pct=100 * held / max(steps, 1))
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--checkpoint', required=True, help='an MLP policy checkpoint for InvertedPendulum-v5')
    p.add_argument('--seconds', type=float, default=60.0)
    p.add_argument('--variants', nargs='+', default=['quiet', 'nice10', 'idle', 'pinned'])
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for run, variant in enumerate(args.variants):  # a variant named twice is measured twice
            rows.append(run_variant(variant, args.checkpoint, args.seconds, Path(tmp), run))
            print(rows[-1], flush=True)
    cols = ['variant', 'cost_p50', 'cost_p99', 'compute_p99', 'gap_max', 'steps', 'held_pct', 'load_updates_per_s']
    print('\n' + ' | '.join(f'{c:>18}' for c in cols))
    for r in rows:
        print(' | '.join(f'{r.get(c, float("nan")):>18.3f}' if isinstance(r.get(c), float) else f'{str(r.get(c, "-")):>18}'
                         for c in cols))


if __name__ == '__main__':
    main()
