"""Train/deploy parity: recorded episodes played to the real policy server process (lock-step
on the bag's clock) answer with the actions the trainer's offline predict computes on the
same episodes' dataset tensors, for PPO, SAC, BC (feed-forward and LSTM) and Dreamer.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from ros_helpers import INTERFACE, REPO, node_cmd, stop
from test_deploy import tiny_bc, tiny_dreamer, tiny_policy

torch.set_num_threads(1)


def parity(bag, checkpoint, interface, out, episodes=5):
    proc = subprocess.run([sys.executable, '-m', 'robot_training.bags', 'parity', str(bag), '--checkpoint',
                           str(checkpoint), '--interface', str(interface), '--episodes', str(episodes),
                           '--json', str(out)], capture_output=True, text=True, timeout=300)
    assert out.is_file(), proc.stdout + proc.stderr
    return proc, json.loads(out.read_text())


def write_pendulum_bag(path, episodes=2, steps=200, rate_hz=100):
    """Episodes of pendulum joint states at 100 Hz swinging over the policies' input range (the
    interface acts at 25 Hz: the player must pick the one message in four the dataset did),
    commands 1 ms after each state, rewards, EpisodeEvent START / END."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from robot_training.data.bag_dataset import make_typestore
    from robot_training.interface.converters import rosbags_message_factory, set_stamp

    store = make_typestore()
    types = {'/joint_states': 'sensor_msgs/msg/JointState', '/cmd': 'std_msgs/msg/Float64MultiArray',
             '/reward': 'std_msgs/msg/Float64', '/episode_event': 'robot_training_msgs/msg/EpisodeEvent'}
    msgs = {t: rosbags_message_factory(store, m)() for t, m in types.items()}
    js, cmd, rew, ev = msgs.values()
    js.name = ['hinge', 'slider']  # not the interface's order: the converter reorders
    rew.data = 1.0
    dt = int(1e9 / rate_hz)
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {t: writer.add_connection(t, m, typestore=store) for t, m in types.items()}

        def write(topic, t):
            writer.write(conns[topic], t, store.serialize_cdr(msgs[topic], types[topic]))

        t0 = 1_700_000_000_000_000_000
        for e in range(episodes):
            start = t0 + e * (steps + 50) * dt
            set_stamp(ev, start - dt // 2)
            ev.event, ev.episode_id, ev.reason = 0, e, ''
            write('/episode_event', start - dt // 2)
            for k in range(steps):
                t = start + k * dt
                phase = 0.07 * k + e
                set_stamp(js, t)
                js.position = np.array([0.3 * np.sin(phase), 0.5 * np.cos(1.3 * phase)])
                js.velocity = np.array([2.0 * np.cos(phase), -1.5 * np.sin(0.7 * phase)])
                js.effort = np.zeros(2)
                write('/joint_states', t + 300_000)
                cmd.data = np.array([np.sin(phase)])
                write('/cmd', t + 1_000_000)
                write('/reward', t + 2_000_000)
            set_stamp(ev, start + steps * dt)
            ev.event, ev.reason = 1, 'terminated'
            write('/episode_event', start + steps * dt)
    return path


@pytest.fixture(scope='module')
def pendulum_bag(tmp_path_factory):
    return write_pendulum_bag(tmp_path_factory.mktemp('parity') / 'bag')


@pytest.mark.parametrize('kind', ['ppo', 'sac', 'bc', 'bc_lstm', 'dreamer'])
def test_policy_server_acts_as_the_trainer_predicts(kind, pendulum_bag, tmp_path):
    from robot_training.interface.description import load_interface
    from robot_training.deploy.parity import offline_actions, plan_playback

    checkpoint = {'ppo': lambda: tiny_policy(tmp_path, 'ppo'), 'sac': lambda: tiny_policy(tmp_path, 'sac'),
                  'bc': lambda: tiny_bc(tmp_path), 'bc_lstm': lambda: tiny_bc(tmp_path, use_sequences=True),
                  'dreamer': lambda: tiny_dreamer(tmp_path)}[kind]()
    proc, report = parity(pendulum_bag, checkpoint, INTERFACE, tmp_path / 'report.json')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'PASS' in proc.stdout
    assert len(report['episodes']) == 2 and min(e['ticks'] for e in report['episodes']) >= 45
    assert report['missing'] == 0
    assert report['max_abs'] <= 1e-5, report
    # the check can fail: the actions change from tick to tick by far more than the tolerance,
    # so acting on the previous tick's observation (a one-step delay) would show
    plan = plan_playback(pendulum_bag, load_interface(INTERFACE), episodes=1)[0]
    offline = offline_actions(checkpoint, plan.observations)
    assert np.abs(np.diff(offline, axis=0)).max() > 1e-3


def test_parity_on_an_episode_the_recorder_wrote(procs, tmp_path):
    """The ugv (lidar, odometry, IMU, goal: four streams, the trigger last) recorded from the
    simulator by the recorder, then played back to the server with a briefly trained PPO."""
    from robot_training.config import Config
    from robot_training.policies.train_policy import PolicyTrainer

    interface = REPO / 'config' / 'interface_ugv.yaml'
    dataset = tmp_path / 'dataset'
    sim = procs.start(node_cmd('sim_node', 'env:=robot_training/Ugv-v0', f'interface_file:={interface}', 'seed:=4',
                               'step_mode:=command', 'max_episode_steps:=30', 'wait_for_subscribers:=2',
                               'status_period_s:=0.0'))
    recorder = procs.start([sys.executable, '-m', 'robot_training.ros.recorder_node', '--ros-args',
                            '--params-file', str(REPO / 'config' / 'recorder.yaml'), '-p', f'dataset_dir:={dataset}',
                            '-p', f'interface_file:={interface}', '-p', 'use_sim_time:=true',
                            '-p', 'discovery_period_s:=0.2'])
    nav = procs.start(node_cmd('navigator_node', 'robot:=ugv', f'interface_file:={interface}', 'missions:=2'))
    nav.wait(timeout=120)
    assert nav.returncode == 0, '\n'.join(nav.lines)
    stop(recorder, signal.SIGINT, timeout=30)
    stop(sim, signal.SIGTERM)
    bags = sorted(p for p in dataset.iterdir() if p.is_dir())
    assert len(bags) >= 2, '\n'.join(recorder.lines)  # (and the one the SIGINT closed)

    cfg = Config().replace(policy=dict(hidden_dim=16, num_envs=2, num_steps=64, num_minibatches=1, update_epochs=1),
                           training=dict(tensorboard=False, progress_bar=False, checkpoint_every=0,
                                         log_dir=str(tmp_path / 'runs')))
    trainer = PolicyTrainer('ppo', 'robot_training/Ugv-v0', config=cfg, checkpoint_dir=tmp_path / 'ppo')
    trainer.learn(256)
    trainer.close()
    proc, report = parity(bags[0], trainer.final_checkpoint, interface, tmp_path / 'report.json')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report['ticks'] >= 25 and report['missing'] == 0 and report['max_abs'] <= 1e-5, report


def test_parity_refuses_what_it_cannot_check(pendulum_bag, tmp_path):
    junk = tmp_path / 'junk.pt'
    junk.write_bytes(b'not a checkpoint')
    proc = subprocess.run([sys.executable, '-m', 'robot_training.bags', 'parity', str(tmp_path / 'nothing'),
                           '--checkpoint', str(junk)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and 'nothing' in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
