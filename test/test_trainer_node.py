"""Trainer node as a real process: TrainingProgress until FINISHED, one Checkpoint message per
file with the file's sha256; a failing run reports FAILED. Plus RunLogger's listener hook."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from ros_helpers import node_cmd, spin_until, stop

from robot_training.utils.logging import RunLogger


def test_run_logger_listeners_see_every_scalar():
    seen = []
    listener = lambda tag, value, step: seen.append((tag, value, step))  # noqa: E731
    failing = lambda *a: 1 / 0  # noqa: E731  (logged, never raised into training)
    RunLogger.add_listener(listener)
    try:
        logger = RunLogger(None)
        logger.scalar('losses/actor', 0.5, 10)
        logger.scalars({'a': 1, 'b': 2}, step=11, prefix='charts/')
        RunLogger.add_listener(failing)
        logger.scalar('x', 3, 12)
    finally:
        RunLogger.remove_listener(listener)
        RunLogger.remove_listener(failing)
    logger.scalar('after', 4, 13)
    assert seen == [('losses/actor', 0.5, 10), ('charts/a', 1.0, 11), ('charts/b', 2.0, 11), ('x', 3.0, 12)]


def small_config(tmp_path: Path) -> Path:
    cfg = {'policy': dict(hidden_dim=16, num_envs=2, num_steps=64, num_minibatches=1, update_epochs=1),
           'training': dict(checkpoint_every=128, eval_episodes=1, log_dir=str(tmp_path / 'runs'),
                            env='InvertedPendulum-v5')}
    path = tmp_path / 'small.yaml'
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_trainer_reports_progress_and_checkpoints(tmp_path, procs, ros_node):
    from robot_training_msgs.msg import Checkpoint, TrainingProgress

    progress, checkpoints = [], []
    ros_node.create_subscription(TrainingProgress, '/trainer/progress', progress.append, 50)
    ros_node.create_subscription(Checkpoint, '/trainer/checkpoints', checkpoints.append, 50)
    trainer = procs.start(node_cmd('trainer_node', 'mode:=policy', 'algorithm:=ppo',
                                   f'config:={small_config(tmp_path)}', 'total_timesteps:=384',
                                   f'checkpoint_dir:={tmp_path / "ckpt"}', 'progress_period_s:=0.3',
                                   'exit_when_done:=true'))
    spin_until(ros_node, lambda: any(p.status == TrainingProgress.STATUS_FINISHED for p in progress), 120,
               'status FINISHED')
    trainer.wait(timeout=30)
    out = '\n'.join(trainer.lines)
    assert trainer.returncode == 0, out
    spin_until(ros_node, lambda: any(c.path.endswith('policy_ppo_final.pt') for c in checkpoints), 10,
               'the final checkpoint message')
    statuses = [p.status for p in progress]
    assert statuses[-1] == TrainingProgress.STATUS_FINISHED
    assert TrainingProgress.STATUS_RUNNING in statuses or TrainingProgress.STATUS_STARTING in statuses
    final = progress[-1]
    assert final.total_steps == 384 and final.step >= 384 and final.mode == 'policy' and final.algorithm == 'ppo'
    assert final.elapsed_sec > 0 and final.remaining_sec == 0.0
    assert any(m.name.startswith('losses/') for m in final.metrics)
    running = [p for p in progress if p.status == TrainingProgress.STATUS_RUNNING]
    assert all(0 < p.step <= 384 for p in running)
    paths = {c.path for c in checkpoints}
    assert len(paths) == len(checkpoints)  # each file once
    for c in checkpoints:
        assert hashlib.sha256(Path(c.path).read_bytes()).hexdigest() == c.sha256
        assert c.algorithm == 'ppo' and c.run_id == final.run_id
    assert any('step' in Path(c.path).name and c.step > 0 for c in checkpoints)


def test_trainer_reports_failure(tmp_path, procs, ros_node):
    from robot_training_msgs.msg import TrainingProgress

    progress = []
    ros_node.create_subscription(TrainingProgress, '/trainer/progress', progress.append, 50)
    trainer = procs.start(node_cmd('trainer_node', 'mode:=policy', 'env:=NoSuchEnv-v0',
                                   f'checkpoint_dir:={tmp_path}', 'progress_period_s:=0.3'))
    spin_until(ros_node, lambda: any(p.status == TrainingProgress.STATUS_FAILED for p in progress), 60,
               'status FAILED')
    out = stop(trainer)
    assert trainer.returncode == 0 and 'NoSuchEnv-v0' in out


def test_budget_of_every_mode_and_the_step_of_checkpoint_names():
    """The documented default commands report a real total (not 0) and checkpoints their own step."""
    from robot_training.ros.trainer_node import STEP_RE
    from robot_training.train import DREAMER_ONLINE_STEPS, build_parser, mode_budget, prepare_run

    def budget(*argv):
        return mode_budget(*prepare_run(vars(build_parser().parse_args(list(argv)))))

    assert budget('--mode', 'dreamer') == DREAMER_ONLINE_STEPS
    assert budget('--mode', 'dreamer', '--data', 'bags/') == prepare_run({})[0].dreamer.offline_updates
    assert budget('--mode', 'dreamer', '--total-timesteps', '5000') == 5000
    assert budget('--mode', 'policy') == 1000 * 2048
    assert budget('--mode', 'online') == 0  # runs until stopped
    steps = {name: (m.group(1) if (m := STEP_RE.search(name)) else None)
             for name in ('dreamer_200', 'policy_ppo_step000000128', 'dreamer_online_000000050', 'dreamer_final')}
    assert steps == {'dreamer_200': '200', 'policy_ppo_step000000128': '128', 'dreamer_online_000000050': '50',
                     'dreamer_final': None}


def test_parameters_make_the_run_the_command_line_makes(tmp_path, capsys):
    """The node's parameters and the equivalent ``train`` options give equal Configs and
    RunRequests (through the same prepare_run, no argv in between), and bad input the same line."""
    from robot_training import train
    from robot_training.ros.trainer_node import PARAMETERS, command_line, run_from_parameters, train_options

    defaults = {name: entry[0] for name, entry in PARAMETERS.items()}
    config = small_config(tmp_path)
    cases = [
        ({}, ['--mode', 'policy']),
        ({'mode': 'dreamer', 'preset': 'dreamerv3', 'seed': 0}, ['--mode', 'dreamer', '--preset', 'dreamerv3',
                                                                  '--seed', '0']),
        ({'mode': 'world_model', 'config': str(config), 'env': 'Pendulum-v1', 'total_timesteps': 5000, 'seed': 3,
          'data': str(tmp_path / 'bags'), 'interface': str(tmp_path / 'i.yaml'),
          'checkpoint_dir': str(tmp_path / 'ckpt'), 'log_dir': str(tmp_path / 'tb')},
         ['--mode', 'world_model', '--config', str(config), '--env', 'Pendulum-v1', '--total-timesteps', '5000',
          '--seed', '3', '--data', str(tmp_path / 'bags'), '--interface', str(tmp_path / 'i.yaml'),
          '--checkpoint-dir', str(tmp_path / 'ckpt'), '--log-dir', str(tmp_path / 'tb')]),
        ({'mode': 'online', 'algorithm': 'sac', 'preset': 'robot_loop', 'config': str(config)},
         ['--mode', 'online', '--algorithm', 'sac', '--preset', 'robot_loop', '--config', str(config)]),
    ]
    for parameters, argv in cases:
        argv = [*argv, '--no-progress']
        node_cfg, node_request = run_from_parameters({**defaults, **parameters})
        cli_cfg, cli_request = train.prepare_run(vars(train.build_parser().parse_args(argv)))
        assert node_cfg == cli_cfg, argv
        assert node_request == cli_request, argv
        assert train.build_parser().parse_args(command_line(train_options({**defaults, **parameters})).split()[1:]) \
            == train.build_parser().parse_args(argv)  # the node logs the command it stands for
    assert run_from_parameters({**defaults, 'seed': 0})[0].training.seed == 0
    assert run_from_parameters(defaults)[0].training.progress_bar is False

    bad = tmp_path / 'bad.yaml'
    bad.write_text('policy:\n  gama: 0.9\n')
    assert train.main(['--mode', 'policy', '--config', str(bad)]) == 2
    cli_line = capsys.readouterr().err.strip()
    for parameters, says in (({'config': str(bad)}, cli_line.removeprefix('train: error: ')),
                             ({'mode': 'nope'}, "mode must be one of ['all', 'dreamer', 'online', 'policy', "
                                                "'supervised', 'world_model'], got 'nope'"),
                             ({'algorithm': 'nope'}, "algorithm must be one of ")):
        try:
            run_from_parameters({**defaults, **parameters})
        except ValueError as err:
            assert str(err).startswith(says) and '\n' not in str(err), err
        else:
            raise AssertionError(f'{parameters} accepted')
    assert "unknown key 'policy.gama'" in cli_line


def _wait_for_line(proc, predicate, timeout: float) -> str:
    import queue
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = proc.queue.get(timeout=0.5)
        except queue.Empty:
            continue
        if line is None:
            raise AssertionError('the node exited:\n' + '\n'.join(proc.lines))
        if predicate(line):
            return line
    raise AssertionError(f'timed out after {timeout} s:\n' + '\n'.join(proc.lines))


def test_sigint_twice_stops_an_offline_run_cooperatively_and_saves(tmp_path, procs):
    """Ctrl-C as ros2 launch plus a terminal deliver it (two SIGINTs within milliseconds) on a
    running PPO run: the training thread stops at its next update, saves a checkpoint that loads
    with weights_only and holds the step it names, the node says so in one line and exits 0."""
    import re
    import signal
    import time

    from robot_training.checkpoint import load_checkpoint

    cfg = yaml.safe_load(small_config(tmp_path).read_text())
    cfg['training']['checkpoint_every'] = 0  # the only checkpoint is the one saved at the stop
    (tmp_path / 'small.yaml').write_text(yaml.safe_dump(cfg))
    trainer = procs.start(node_cmd('trainer_node', 'mode:=policy', 'algorithm:=ppo',
                                   f'config:={tmp_path / "small.yaml"}', 'total_timesteps:=10000000',
                                   f'checkpoint_dir:={tmp_path / "ckpt"}', 'progress_period_s:=0.2'))
    _wait_for_line(trainer, lambda line: 'status running at step' in line, 120)
    time.sleep(0.5)
    trainer.send_signal(signal.SIGINT)
    time.sleep(0.01)
    trainer.send_signal(signal.SIGINT)
    trainer.wait(timeout=60)
    trainer.pump.join(timeout=5)
    out = '\n'.join(trainer.lines)
    assert trainer.returncode == 0, out
    assert 'Traceback' not in out and 'terminate called' not in out and 'Aborted' not in out, out
    saved = [line for line in trainer.lines if 'saved checkpoint' in line]
    assert len(saved) == 1, out
    found = re.search(r'stopped at step (\d+): saved checkpoint (\S+)$', saved[0])
    assert found, saved[0]
    path = Path(found.group(2))
    assert path.parent == tmp_path / 'ckpt' / 'policies' / 'checkpoints' / 'ppo'
    data = load_checkpoint(path, kind='ppo')
    assert data['num_timesteps'] == int(found.group(1)) > 0
    assert data['num_timesteps'] % (2 * 64) == 0  # stopped between two updates, not inside a rollout
    assert [p.name for p in path.parent.glob('*.pt')] == [path.name]
