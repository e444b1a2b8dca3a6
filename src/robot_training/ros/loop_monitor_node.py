"""Loop monitor: follows a running learning loop and says, in a few lines, how it is going.

    loop_monitor --ros-args -p loop_dir:=loop -p until_balanced:=true -p max_minutes:=30

Listens to the loop's own topics (``/episode_event``, ``/learner/checkpoints``,
``/learner/progress``, ``/policy_server/status``, ``/sim/status``; a fleet's robot topics in
each of the ``robot_namespaces``), prints a progress line every
``print_period_s`` (episodes, last / best return, learner updates, reloads, missed ticks) and
keeps ``<loop_dir>/loop_summary.json`` up to date (every episode and checkpoint with its time,
the evaluations, the actor's and the simulator's counters) for the final report and the plot.

With ``eval_env`` set, the newest checkpoint is evaluated in that Gymnasium env (deterministic,
``eval_episodes``, through the deploy loader the actor uses) whenever a training episode
returns at least ``threshold``, every ``eval_period_s``, and at once for each new checkpoint
after a good evaluation; with ``until_balanced`` the monitor exits (status 0) once
``confirmations`` checkpoints in a row evaluate at ``threshold`` or more (one good
evaluation of an early, still unstable policy is not enough). The best-evaluated checkpoint
is kept as ``<loop_dir>/best_policy.pt`` (the learner deletes old checkpoints). ``max_minutes`` ends it (status 0)
when the budget is spent. The learning loop's script stops the graph when the monitor exits.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node

from robot_training.ros._common import ANY_NUMBER, declare_parameters, run_node

PARAMETERS = {
    'loop_dir': ('loop', 'the loop folder (loop_summary.json is written there)'),
    'interface_file': ('', "the robot's interface description (for evaluations)"),
    'eval_env': ('', 'Gymnasium id to evaluate checkpoints in (empty: no evaluations)'),
    'eval_episodes': (5, 'episodes per evaluation', (1, None)),
    'eval_period_s': (120.0, 'evaluate the newest checkpoint at least this often (0: only after good episodes)'),
    'threshold': (900.0, 'a return that counts as solved', ANY_NUMBER),
    'until_balanced': (False, 'exit once `confirmations` evaluations in a row reach threshold'),
    'confirmations': (2, 'consecutive checkpoints that must evaluate at threshold or more', (1, None)),
    'max_minutes': (0.0, 'exit after this long (0: no limit)'),
    'print_period_s': (15.0, 'period of the progress line'),
    'learner_name': ('learner', 'node name of the learner (its ~/progress and ~/checkpoints)'),
    'actor_name': ('policy_server', 'node name of the actor (its ~/status)'),
    'sim_name': ('sim', 'node name of the simulator (its ~/status)'),
    'robot_namespaces': ('', 'a fleet: the robots\' namespaces, comma-separated (robot1,robot2); empty: one robot '
                             'in the root namespace'),
}

#: counters of the robots' status summed over a fleet (the rest: the worst robot's value)
SUMMED = ('steps', 'held_steps', 'episodes', 'commands', 'reloads', 'refused', 'timer_ticks_missed')


def _is_counter(key: str) -> bool:
    return key in SUMMED or key.startswith('ticks_')


def _status_values(msg) -> dict:
    return {kv.key: kv.value for st in msg.status for kv in st.values}


def fleet_total(statuses) -> dict:
    """A fleet's status: counters summed, everything else (costs, gaps) the worst robot's."""
    out: dict = {}
    for status in statuses:
        for key, value in status.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                out.setdefault(key, value)
                continue
            if _is_counter(key):
                out[key] = out.get(key, 0.0) + number
            else:
                out[key] = max(float(out.get(key, number)), number)
    return {k: (int(v) if _is_counter(k) else v) for k, v in out.items()}


class LoopMonitorNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__('loop_monitor', **kwargs)
        from robot_training_msgs.msg import Checkpoint, EpisodeEvent, TrainingProgress

        p = declare_parameters(self, PARAMETERS)
        self.p = p
        import os
        os.nice(10)  # evaluations run beside the robot's control loop, never ahead of it
        self.loop_dir = Path(p['loop_dir'])
        self.loop_dir.mkdir(parents=True, exist_ok=True)
        self.started = time.time()
        self._event_cls = EpisodeEvent
        self.summary = {'started_unix': self.started, 'episodes': [], 'checkpoints': [], 'evaluations': [],
                        'actor': {}, 'sim': {}, 'learner': {}, 'stopped': ''}
        self.lock = threading.Lock()
        self._eval_busy = threading.Event()
        self._last_eval = time.monotonic()
        self._evaluated = set()
        self._done_reason = ''
        self._eval_thread = None
        self._streak = 0
        self._best = float('-inf')
        self.interface = None
        if p['eval_env']:
            from robot_training.interface.description import load_interface
            if not p['interface_file']:
                raise ValueError('eval_env needs interface_file (the interface the checkpoints were trained for)')
            self.interface = load_interface(p['interface_file'])
        self.robots = [ns.strip().strip('/') for ns in p['robot_namespaces'].split(',') if ns.strip()] or ['']
        if len(self.robots) > 1:
            self.summary['robots'] = {ns: {'actor': {}, 'sim': {}} for ns in self.robots}
        for ns in self.robots:
            prefix = f'/{ns}' if ns else ''
            self.create_subscription(EpisodeEvent, f'{prefix}/episode_event',
                                     lambda m, ns=ns: self._on_event(m, ns), 50)
            self.create_subscription(DiagnosticArray, f"{prefix}/{p['actor_name']}/status",
                                     lambda m, ns=ns: self._store_robot(ns, 'actor', _status_values(m)), 10)
            self.create_subscription(DiagnosticArray, f"{prefix}/{p['sim_name']}/status",
                                     lambda m, ns=ns: self._store_robot(ns, 'sim', _status_values(m)), 10)
        self.create_subscription(Checkpoint, f"/{p['learner_name']}/checkpoints", self._on_checkpoint, 50)
        self.create_subscription(TrainingProgress, f"/{p['learner_name']}/progress", self._on_progress, 10)
        self.create_timer(float(p['print_period_s']), self._print)
        self.create_timer(1.0, self._check)

    # ---------------------------------------------------------------- inputs
    def _t(self) -> float:
        return round(time.time() - self.started, 3)

    def _store(self, key: str, values: dict) -> None:
        with self.lock:
            self.summary[key] = values

    def _store_robot(self, ns: str, key: str, values: dict) -> None:
        """One robot's status; a fleet's summary also holds every robot's and their sum."""
        if len(self.robots) == 1:
            return self._store(key, values)
        with self.lock:
            self.summary['robots'][ns][key] = values
            self.summary[key] = fleet_total([r[key] for r in self.summary['robots'].values()])

    def _on_event(self, msg, robot: str = '') -> None:
        if msg.event not in (self._event_cls.EVENT_END, self._event_cls.EVENT_RESET):
            return
        with self.lock:
            self.summary['episodes'].append([self._t(), float(msg.episode_return), int(msg.length), bool(msg.success),
                                             robot])
        if self.interface is not None and msg.episode_return >= self.p['threshold']:
            self._evaluate_newest('a training episode returned %.0f' % msg.episode_return)

    def _on_checkpoint(self, msg) -> None:
        with self.lock:
            self.summary['checkpoints'].append([self._t(), int(msg.step), msg.path])

    def _on_progress(self, msg) -> None:
        self._store('learner', {m.name: m.value for m in msg.metrics if m.name.startswith('loop/')})

    # ---------------------------------------------------------------- evaluation
    def _evaluate_newest(self, why: str) -> None:
        with self.lock:
            if not self.summary['checkpoints'] or self._eval_busy.is_set():
                return
            _, step, path = self.summary['checkpoints'][-1]
        if path in self._evaluated:
            return
        self._evaluated.add(path)
        self._eval_busy.set()
        self._last_eval = time.monotonic()
        self._eval_thread = threading.Thread(target=self._evaluate, args=(path, step, why), daemon=True)
        self._eval_thread.start()

    def _evaluate(self, path: str, step: int, why: str) -> None:
        from robot_training.deploy import DeployError, load_policy
        from robot_training.envs.collection import evaluate_policy

        from robot_training.utils.files import atomic_write

        try:
            # evaluate a copy: the learner prunes old checkpoints, and a long evaluation (a
            # Dreamer policy that balances: 10 x 1000 steps) outlives the file it started from
            snapshot = Path(path).read_bytes()
            candidate = self.loop_dir / '.evaluating.pt'
            candidate.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(candidate) as f:
                f.write(snapshot)
            policy = load_policy(candidate, interface=self.interface, deterministic=True)
            value = evaluate_policy(policy, self.p['eval_env'], int(self.p['eval_episodes']))
        except (DeployError, OSError) as err:  # pruned before it could be read, or refused
            self.get_logger().warning(f'could not evaluate {path}: {err}')
            self._eval_busy.clear()
            return
        with self.lock:
            self.summary['evaluations'].append([self._t(), step, path, value])
        self.get_logger().info(f'evaluated {Path(path).name} (update {step}, {why}): mean return {value:.1f} '
                               f"over {self.p['eval_episodes']} deterministic episodes")
        if value > self._best:
            self._keep_best(path, step, value, snapshot)
        self._streak = self._streak + 1 if value >= self.p['threshold'] else 0
        if self.p['until_balanced'] and self._streak >= max(1, self.p['confirmations']):
            self._done_reason = (f'solved: {self._streak} checkpoints in a row evaluated at '
                                 f'{self.p["threshold"]:g} or more (last {value:.1f})')
        self._eval_busy.clear()

    def _keep_best(self, path: str, step: int, value: float, snapshot: bytes) -> None:
        from robot_training.utils.files import atomic_write

        try:
            with atomic_write(self.loop_dir / 'best_policy.pt') as dst:
                dst.write(snapshot)  # the bytes evaluated, even if the learner pruned the file since
        except OSError as err:
            self.get_logger().warning(f'could not keep {path} as the best policy: {err}')
            return
        self._best = value
        with self.lock:
            self.summary['best'] = [self._t(), step, path, value]

    # ---------------------------------------------------------------- output
    def line(self) -> str:
        with self.lock:
            eps = self.summary['episodes']
            actor, sim, learner = self.summary['actor'], self.summary['sim'], self.summary['learner']
            evals = self.summary['evaluations']
        minutes, seconds = divmod(int(time.time() - self.started), 60)
        recent = [e[1] for e in eps[-10:]]
        text = f'[loop {minutes:02d}:{seconds:02d}] episodes {len(eps)}'
        if eps:
            text += (f', return last {eps[-1][1]:.0f} / mean of 10 {sum(recent) / len(recent):.0f} / '
                     f'best {max(e[1] for e in eps):.0f}')
        text += f", env steps {sum(e[2] for e in eps)}, learner updates {int(float(learner.get('loop/updates', 0)))}"
        text += f", reloads {actor.get('reloads', 0)}"
        if sim.get('steps'):
            text += f", ticks missed {sim.get('held_steps', 0)}/{sim.get('steps')}"
        if evals:
            text += f', last evaluation {evals[-1][3]:.0f}'
        return text

    def _print(self) -> None:
        print(self.line(), flush=True)
        self.write_summary()

    def write_summary(self) -> None:
        from robot_training.utils.files import atomic_write

        with self.lock:
            text = json.dumps(self.summary)
        with atomic_write(self.loop_dir / 'loop_summary.json', 'w') as f:
            f.write(text)

    def _check(self) -> None:
        if self.interface is not None and self._streak > 0:
            self._evaluate_newest('to confirm the last good evaluation')
        elif self.interface is not None and self.p['eval_period_s'] > 0 \
                and time.monotonic() - self._last_eval >= self.p['eval_period_s']:
            self._evaluate_newest(f"every {self.p['eval_period_s']:g} s")
        if not self._done_reason and self.p['max_minutes'] > 0 \
                and time.time() - self.started >= 60 * self.p['max_minutes']:
            self._done_reason = f"budget of {self.p['max_minutes']:g} minutes spent"
        if self._done_reason:
            self.summary['stopped'] = self._done_reason
            print(f'[loop] {self._done_reason}', flush=True)
            raise SystemExit(0)


def main(args=None) -> None:
    def cleanup(node, cause):
        thread = getattr(node, '_eval_thread', None)
        if thread is not None:  # a thread still inside torch when Python exits aborts the process
            thread.join(timeout=120)
        if not node.summary['stopped']:
            node.summary['stopped'] = cause
        print(node.line(), flush=True)
        node.write_summary()

    run_node('loop_monitor', LoopMonitorNode, (ValueError, OSError), cleanup=cleanup, args=args)


if __name__ == '__main__':
    main()
