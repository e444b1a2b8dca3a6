"""Trainer node: one run of the ``train`` command line in a worker thread, reported over ROS.

    trainer --ros-args -p mode:=policy -p algorithm:=ppo -p total_timesteps:=20000

Parameters are the command line's options (``mode``, ``algorithm``, ``config``, ``preset``,
``env``, ``total_timesteps``, ``data``, ``interface``, ``checkpoint_dir``, ``log_dir``, ``seed``):
:func:`run_from_parameters` turns their values into the run's Config and RunRequest through the
command line's own :func:`robot_training.train.prepare_run` (no argv, no argparse), and the run
is the same function ``train --mode <mode>`` calls (:data:`robot_training.train.MODES`).

Publishes on ``~/progress`` (robot_training_msgs/TrainingProgress) every ``progress_period_s``
and on every status change: STARTING → RUNNING (first logged step) → FINISHED or FAILED, with
step / total steps, elapsed time, an ETA from the step rate, and the latest scalar of each
TensorBoard tag (followed through :meth:`RunLogger.add_listener`). Publishes on
``~/checkpoints`` (robot_training_msgs/Checkpoint) once for every checkpoint file (``*.pt``)
written under the checkpoint directory during the run, with its sha256 and the interface
fingerprint stored in it. With ``exit_when_done`` the node exits after the final status
(status 0 when finished, 1 when failed); otherwise it keeps publishing the final status.
SIGINT or SIGTERM stops the run cooperatively (:func:`robot_training.train.stop_between_updates`):
the training thread stops at its next update and saves a checkpoint there (``policy_<algo>_step<N>.pt``,
``world_model_<N>.pt``, ``dreamer_<N>.pt``, ``bc_epoch<N>.pt``; ``--resume`` continues from it), the node logs one line naming what it saved and exits
0. A run that reaches no update within ``stop_timeout_s`` is left (the node exits 1, naming
its newest checkpoint; every checkpoint on disk is whole, as the writes are atomic).

``mode:=online`` is the learner of the robot's learning loop (``train --mode online``): it
follows the recorder's dataset folder (``data``), trains ``algorithm`` (dreamer or sac) on every
finished episode and announces each checkpoint on ``~/checkpoints`` the moment it is written
(the policy server hot-reloads it); ``~/progress`` carries the loop's figures (episodes, env
steps, updates, last / best / mean return). A signal stops it cooperatively: it writes a last
checkpoint, says where, and exits 0. Restarted (after a crash too), it resumes from its newest
checkpoint and rebuilds its replay from the dataset folder.
"""

from __future__ import annotations

import re
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from rclpy.node import Node

from robot_training.ros._common import declare_parameters, run_node

PARAMETERS = {
    # name: (default, description)
    'mode': ('policy', 'train --mode: policy, supervised, world_model, dreamer, online or all'),
    'algorithm': ('', 'train --algorithm (policy: ppo or sac; online: dreamer or sac; empty: the default)'),
    'config': ('', 'train --config: YAML overriding config/default_config.yaml'),
    'preset': ('', 'train --preset: a named configuration of config/presets/ (e.g. dreamerv3)'),
    'env': ('', 'train --env: Gymnasium id (empty: training.env)'),
    'total_timesteps': (0, 'train --total-timesteps (0: the config value)'),
    'data': ('', 'train --data: bags or a trajectory file (offline modes)'),
    'interface': ('', 'train --interface: interface description for --data bags'),
    'checkpoint_dir': ('', 'train --checkpoint-dir (empty: training.checkpoint_dir)'),
    'log_dir': ('', 'train --log-dir: TensorBoard folder (empty: training.log_dir)'),
    'seed': (-1, 'train --seed (-1: the config value)', (-1, None)),
    'run_id': ('', 'run id in the messages (empty: <env>__<mode>__<algorithm>__<unix time>)'),
    'progress_period_s': (1.0, 'period of ~/progress'),
    'nice': (0, 'raise the process niceness by this much (a learner beside a robot\'s control loop: 10)', (0, 19)),
    'exit_when_done': (False, 'exit after publishing the final status'),
    'stop_timeout_s': (60.0, 'on SIGINT / SIGTERM, wait this long for the run to reach an update and save'),
}

STEP_RE = re.compile(r'(?:step|_)0*(\d+)$')

#: the parameters that are ``train`` options, with the value that leaves the option out
OPTION_UNSET = {'algorithm': '', 'config': '', 'preset': '', 'env': '', 'data': '', 'interface': '',
                'checkpoint_dir': '', 'log_dir': '', 'total_timesteps': 0, 'seed': -1}


def train_options(parameters: Mapping[str, Any]) -> Dict[str, Any]:
    """The ``train`` options (:data:`robot_training.train.OPTIONS`) that these parameter values
    stand for: ``mode``, no progress bars, and every option parameter not at its unset value."""
    options: Dict[str, Any] = {'mode': parameters['mode'], 'no_progress': True}
    options.update({name: parameters[name] for name, unset in OPTION_UNSET.items() if parameters[name] != unset})
    return options


def run_from_parameters(parameters: Mapping[str, Any]):
    """``(Config, RunRequest)`` of the run these parameter values ask for (plain Python, no node):
    what ``train`` builds from the same options. Bad input raises one-line ``ValueError``."""
    from robot_training.config import ConfigError
    from robot_training.train import UsageError, prepare_run

    try:
        return prepare_run(train_options(parameters))
    except (ConfigError, UsageError) as err:
        raise ValueError(str(err)) from None


def command_line(options: Mapping[str, Any]) -> str:
    """The ``train`` command with these options (for the log)."""
    words = ['train']
    for name, value in options.items():
        flag = '--' + name.replace('_', '-')
        words += [flag] if value is True else [flag, str(value)]
    return ' '.join(words)


class TrainingRun:
    """The run's state as the worker thread and the listener update it (plain Python)."""

    def __init__(self, checkpoint_root: Path, total_steps: int):
        self.checkpoint_root = checkpoint_root
        self.total_steps = int(total_steps)
        self.lock = threading.Lock()
        self.status = 'starting'
        self.step = 0
        self.epoch = 0
        self.metrics: Dict[str, float] = {}
        self.error = ''
        self.started = time.monotonic()
        self.started_wall = time.time()
        self.finished_at: Optional[float] = None
        self._seen: Dict[Path, tuple] = {}

    def on_scalar(self, tag: str, value: float, step: int) -> None:
        with self.lock:
            if self.status == 'starting':
                self.status = 'running'
            self.step = max(self.step, int(step))
            self.metrics[tag] = float(value)
            if tag.split('/')[-1] == 'epoch':
                self.epoch = int(value)

    def finish(self, error: str = '') -> None:
        with self.lock:
            self.status = 'failed' if error else 'finished'
            self.error = error
            self.finished_at = time.monotonic()
            if not error and self.total_steps and self.step < self.total_steps:
                self.step = max(self.step, self.total_steps)

    def snapshot(self) -> dict:
        with self.lock:
            end = self.finished_at or time.monotonic()
            elapsed = end - self.started
            remaining = -1.0
            if self.finished_at is not None:
                remaining = 0.0
            elif self.step > 0 and self.total_steps > self.step:
                remaining = elapsed * (self.total_steps - self.step) / self.step
            return dict(status=self.status, step=self.step, total=self.total_steps, epoch=self.epoch,
                        elapsed=elapsed, remaining=remaining, metrics=dict(self.metrics))

    def new_checkpoints(self) -> List[Path]:
        """Checkpoint files written (or rewritten) during the run and not reported yet."""
        out = []
        if not self.checkpoint_root.is_dir():
            return out
        for path in sorted(self.checkpoint_root.rglob('*.pt')):
            try:
                st = path.stat()
            except OSError:
                continue
            key = (st.st_mtime_ns, st.st_size)
            if st.st_mtime < self.started_wall - 1 or self._seen.get(path) == key:
                continue
            self._seen[path] = key
            out.append(path)
        return out


class TrainerNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__('trainer', **kwargs)
        p = declare_parameters(self, PARAMETERS)
        from robot_training.train import MODES, UsageError, check_output_folders, mode_budget
        from robot_training_msgs.msg import Checkpoint, MetricValue, TrainingProgress

        self._msgs = (Checkpoint, MetricValue, TrainingProgress)
        self.cfg, self.request = run_from_parameters(p)
        try:
            check_output_folders(self.cfg)
        except UsageError as err:
            raise ValueError(str(err)) from None
        self.mode_fn = MODES[self.request.mode]
        self.mode = self.request.mode
        if p['nice'] > 0:
            import os
            os.nice(int(p['nice']))
        default_algorithm = {'policy': 'ppo', 'all': 'ppo', 'online': self.cfg.online.algorithm}
        self.algorithm = self.request.algorithm or default_algorithm.get(self.mode, self.mode)
        self.run = TrainingRun(Path(self.cfg.training.checkpoint_dir).resolve(), mode_budget(self.cfg, self.request))
        self.stop_event = threading.Event()
        self.learner = None
        self.exit_code = 0
        """2 after a run refused for bad input (the node exits once FAILED went out)."""
        self.run_id = p['run_id'] or (f"{self.cfg.training.env.replace('/', '_')}__{self.mode}__"
                                      f"{self.algorithm}__{int(time.time())}")
        self.exit_when_done = bool(p['exit_when_done'])
        self.stop_timeout_s = float(p['stop_timeout_s'])
        self.stopped_line = ''
        """What a stopped offline run saved (set by the worker, printed at shutdown)."""
        self.progress_pub = self.create_publisher(TrainingProgress, '~/progress', 10)
        self.checkpoint_pub = self.create_publisher(Checkpoint, '~/checkpoints', 10)
        self.create_timer(float(p['progress_period_s']), self._report)
        self._last_status = None
        self._final_reports = 0
        self.done = threading.Event()
        from robot_training.utils.logging import RunLogger
        RunLogger.add_listener(self.run.on_scalar)
        self.worker = threading.Thread(target=self._train, name='training', daemon=True)
        self.worker.start()
        self.get_logger().info(f'run {self.run_id}: {command_line(train_options(p))} (checkpoints under '
                               f'{self.run.checkpoint_root})')
        self._report()

    def _train(self) -> None:
        import torch

        from robot_training.train import TrainingStopped, describe_stop, stop_between_updates

        if self.cfg.training.torch_threads > 0:
            torch.set_num_threads(self.cfg.training.torch_threads)
        try:
            if self.mode == 'online':
                rows = self.mode_fn(self.cfg, self.request, stop=self.stop_event, on_checkpoint=self._announce,
                                    on_learner=self._set_learner)
            else:
                with stop_between_updates(self.stop_event):
                    rows = self.mode_fn(self.cfg, self.request)
        except TrainingStopped as stopped:  # asked to stop: what the run holds is saved
            self.stopped_line = describe_stop(stopped, self.run.checkpoint_root, self.run.started_wall)
            self.run.finish()
        except BaseException as exc:  # reported as FAILED, never raised into the executor
            from robot_training.train import _user_errors

            text = f'{type(exc).__name__}: {exc}'
            say = self._say if self.context.ok() else (lambda t: print(f'[{self.get_name()}] {t}', flush=True))
            if isinstance(exc, _user_errors()):  # bad input: one line, no traceback
                say(f'training failed: {exc}')
                if self.mode == 'online':  # the learner cannot run as configured: end, like the CLI does
                    self.exit_code = 2
            else:
                say(f'training failed: {text}\n{traceback.format_exc(limit=5)}')
            self.run.finish(text or 'failed')
        else:
            for row in rows or []:
                self.get_logger().info(f'{row[0]}: {row[2]} ({row[1]})')
            self.run.finish()
        self.done.set()

    # ---------------------------------------------------------------- publishing
    def _metrics(self, values: Dict[str, float]) -> list:
        MetricValue = self._msgs[1]
        return [MetricValue(name=k, value=float(v)) for k, v in sorted(values.items())]

    def _say(self, text: str) -> None:
        self.get_logger().error(text)

    def _set_learner(self, learner) -> None:
        self.learner = learner

    def _announce(self, path: Path, updates: int, sha256: str, fingerprint: str, kind: str) -> None:
        """The online learner wrote a checkpoint: tell the actor at once (from the worker thread)."""
        if not self.context.ok():  # shutting down: the file is written; nobody is left to tell
            print(f'[{self.get_name()}] checkpoint {path} (update {updates}) written at shutdown', flush=True)
            return
        Checkpoint = self._msgs[0]
        figures = self.learner.figures() if self.learner is not None else {}
        msg = Checkpoint(run_id=self.run_id, algorithm=kind, step=int(updates), path=str(path), sha256=sha256,
                         interface_fingerprint=fingerprint, metrics=self._metrics(_finite(figures)))
        msg.header.stamp = self.get_clock().now().to_msg()
        self.checkpoint_pub.publish(msg)
        self.get_logger().info(f'checkpoint {path.name}: update {updates}, env steps {figures.get("env_steps", 0)}, '
                               f'episodes {figures.get("episodes", 0)} (sha256 {sha256[:12]})')

    def _publish_checkpoints(self, snap: dict) -> None:
        from robot_training.checkpoint import CheckpointError, file_sha256, load_checkpoint

        if self.mode == 'online':
            return  # announced by the learner itself, the moment each is written
        Checkpoint = self._msgs[0]
        for path in self.run.new_checkpoints():
            try:
                data = load_checkpoint(path)
            except (CheckpointError, Exception) as err:  # not ours, or being replaced
                self.get_logger().warning(f'skipped {path}: {err}')
                continue
            found = STEP_RE.search(path.stem)
            msg = Checkpoint(run_id=self.run_id, algorithm=str(data.get('kind') or self.algorithm),
                             step=int(found.group(1)) if found else int(snap['step']), path=str(path),
                             sha256=file_sha256(path), interface_fingerprint=data.get('interface_fingerprint') or '',
                             metrics=self._metrics(snap['metrics']))
            msg.header.stamp = self.get_clock().now().to_msg()
            self.checkpoint_pub.publish(msg)
            self.get_logger().info(f'checkpoint {path} (sha256 {msg.sha256[:12]})')

    def _report(self) -> None:
        TrainingProgress = self._msgs[2]
        finished = self.done.is_set()
        snap = self.run.snapshot()
        self._publish_checkpoints(snap)
        codes = {'starting': TrainingProgress.STATUS_STARTING, 'running': TrainingProgress.STATUS_RUNNING,
                 'finished': TrainingProgress.STATUS_FINISHED, 'failed': TrainingProgress.STATUS_FAILED}
        metrics = snap['metrics']
        if self.learner is not None:
            figures = self.learner.figures()
            metrics = {**metrics, **{f'loop/{k}': v for k, v in _finite(figures).items()}}
            snap['step'] = max(snap['step'], int(figures['env_steps']))
            if snap['status'] == 'starting':
                snap['status'] = 'running'
        msg = TrainingProgress(run_id=self.run_id, algorithm=self.algorithm, mode=self.mode, step=int(snap['step']),
                               total_steps=int(snap['total']), epoch=int(snap['epoch']),
                               elapsed_sec=float(snap['elapsed']), remaining_sec=float(snap['remaining']),
                               status=codes[snap['status']], metrics=self._metrics(metrics))
        msg.header.stamp = self.get_clock().now().to_msg()
        self.progress_pub.publish(msg)
        if snap['status'] != self._last_status:
            self._last_status = snap['status']
            self.get_logger().info(f"status {snap['status']} at step {snap['step']}/{snap['total']}")
        self._final_reports += finished
        if self._final_reports >= 3 and (self.exit_when_done or self.exit_code):  # the final status went out
            raise SystemExit(self.exit_code or (0 if snap['status'] == 'finished' else 1))

    def stop_training(self, timeout: Optional[float] = None) -> None:
        """Ask the run to stop at its next update, wait for what it saves, say what it saved."""
        timeout = self.stop_timeout_s if timeout is None else timeout
        self.stop_event.set()
        if not self.worker.is_alive():
            return
        self.worker.join(timeout)
        if self.mode == 'online':
            last = getattr(self.learner, 'last_checkpoint', None)
            print(f'[{self.get_name()}] stopped: {self.learner.figures() if self.learner else {}}; '
                  f'latest checkpoint {last}', flush=True)
            return
        if self.worker.is_alive():  # inside a long step (data loading, evaluation): leave it
            from robot_training.train import newest_checkpoint

            newest = newest_checkpoint(self.run.checkpoint_root, self.run.started_wall)
            print(f'[{self.get_name()}] the run reached no update within {timeout:g} s: exiting without a new '
                  f'checkpoint (the run\'s newest: {newest or "none"})', flush=True)
            import os
            os._exit(1)  # a thread inside torch must not meet the interpreter's exit
        print(f'[{self.get_name()}] {self.stopped_line or "training had already ended"}', flush=True)

    def destroy_node(self):
        from robot_training.utils.logging import RunLogger
        RunLogger.remove_listener(self.run.on_scalar)
        return super().destroy_node()


def _finite(values: dict) -> dict:
    return {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and v == v and abs(v) != float('inf')}


def main(args=None) -> None:
    run_node('trainer', TrainerNode, (ValueError, OSError),  # parameters, config file
             cleanup=lambda node, _cause: node.stop_training(), args=args)


if __name__ == '__main__':
    main()
