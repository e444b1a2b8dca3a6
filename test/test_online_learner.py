"""The learner of the learning loop without a ROS graph: episodes written by the recorder core
as the simulator stamps them are handed over once each, exactly (every step, the terminal
observation included), open or failed bags are not; the learner trains at its train ratio,
checkpoints, and a new learner resumes at the saved update count with every episode in its
replay; PPO is refused with one line."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from robot_training.config import Config
from robot_training.interface.description import load_interface
from robot_training.online.episodes import EpisodeFeed
from robot_training.online.learner import OnlineError, OnlineLearner, check_algorithm

torch.set_num_threads(1)
INTERFACE = Path(__file__).resolve().parents[1] / 'config' / 'interface_inverted_pendulum.yaml'
DT = 40_000_000


class SimRecording:
    """Writes episodes into a DatasetRecorder the way the sim node and the actor produce them:
    clock first, then the stamped observation, the reward of the step that led to it, END
    stamped with the last observation; the actor's command 1 ms after each observation."""

    def __init__(self, dataset: Path, interface):
        from robot_training.data.bag_dataset import make_typestore
        from robot_training.interface.converters import rosbags_message_factory
        from robot_training.recording import DatasetRecorder, RecorderConfig

        self.rec = DatasetRecorder(RecorderConfig(dataset_dir=str(dataset), interface_fingerprint=interface.fingerprint,
                                                  interface_yaml=interface.to_yaml()))
        self.types = dict(interface.streams())
        for topic, msgtype in self.types.items():
            self.rec.add_topic(topic, msgtype)
        self.rec.start()
        self.ts = make_typestore()
        self.msgs = {t: rosbags_message_factory(self.ts, m)() for t, m in self.types.items()}
        self.msgs['/joint_states'].name = ['slider', 'hinge']
        self.t = 0
        self.episode = 0

    def write(self, topic, t, stamped):
        from robot_training.interface.converters import set_stamp

        if stamped:
            set_stamp(self.msgs[topic], t)
        raw = self.ts.serialize_cdr(self.msgs[topic], self.types[topic])
        self.rec.write(topic, self.types[topic], raw, t, t if stamped else None)

    def obs(self, k):
        js = self.msgs['/joint_states']
        js.position = np.array([0.01 * k, -0.01 * k])
        js.velocity = np.array([0.1 * k, 0.2])
        self.write('/joint_states', self.t, True)

    def episode_of(self, length: int, close: bool = True, actions: bool = True):
        ev = self.msgs['/episode_event']
        if self.episode:
            self.t += DT  # a reset takes one control period
        ev.event, ev.episode_id, ev.reason, ev.length, ev.episode_return = 0, self.episode, '', 0, 0.0
        self.write('/episode_event', self.t, True)
        self.obs(0)
        for k in range(length):
            if actions:  # False: the actor was not up yet (a loop's first episodes)
                self.msgs['/cmd'].data = np.array([0.1 * k])
                self.write('/cmd', self.t + 1_000_000, False)
            self.t += DT
            self.obs(k + 1)
            self.msgs['/reward'].data = 1.0
            self.write('/reward', self.t, False)
        if close:
            ev.event, ev.reason, ev.length, ev.episode_return = 1, 'terminated', length, float(length)
            self.write('/episode_event', self.t, True)
        self.episode += 1


@pytest.fixture
def interface():
    return load_interface(INTERFACE)


def small_config(tmp_path, algorithm='sac'):
    return Config().replace(
        online=dict(algorithm=algorithm, learning_starts=40, checkpoint_every=10, keep_checkpoints=3),
        sac=dict(hidden_dim=32, batch_size=32),
        world_model=dict(size='tiny', batch_size=4, sequence_length=8),
        training=dict(tensorboard=False, progress_bar=False, checkpoint_dir=str(tmp_path / 'loop'), seed=0))


def test_feed_hands_each_finished_episode_over_once_and_exactly(tmp_path, interface):
    sim = SimRecording(tmp_path / 'ds', interface)
    lengths = [7, 12, 3]
    for n in lengths:
        sim.episode_of(n)
    sim.episode_of(5, close=False)  # the robot is still in this one
    feed = EpisodeFeed(tmp_path / 'ds', interface)
    sim.rec.flush()
    got = feed.poll()
    assert [e.steps for e in got] == lengths  # the open bag is not handed over (the END closes after grace)
    for e, n in zip(got, lengths):
        (traj,) = e.trajectories
        assert traj.terminals[-1] and traj.terminals.sum() == 1
        np.testing.assert_allclose(traj.actions[:, 0], 0.1 * np.arange(n), atol=1e-6)
        np.testing.assert_array_equal(traj.rewards, np.ones(n))
        np.testing.assert_allclose(traj.final_observation[0], 0.01 * n, atol=1e-6)  # the terminal observation
        assert e.episode_return == n
    assert feed.poll() == []
    sim.rec.close()  # Ctrl-C: the open episode is closed as a (truncated) bag
    (last,) = feed.poll()
    assert last.steps == 5 and not last.trajectories[0].terminals.any()
    assert feed.poll() == [] and len(feed) == 4 and feed.steps == sum(lengths) + 5


def test_feed_reads_each_robot_of_a_fleet_from_its_own_folder(tmp_path, interface):
    """A fleet's recorders write <dataset>/robot1, <dataset>/robot2: each robot's finished
    episodes are handed over once, keyed by their path, the open one of each robot held back."""
    robots = {ns: SimRecording(tmp_path / 'ds' / ns, interface) for ns in ('robot1', 'robot2')}
    for n in (4, 6):
        robots['robot1'].episode_of(n)
    robots['robot1'].episode_of(5, close=False)  # each robot is still in an episode
    robots['robot2'].episode_of(9)
    robots['robot2'].episode_of(3, close=False)
    for sim in robots.values():
        sim.rec.flush()
    feed = EpisodeFeed(tmp_path / 'ds', interface)
    got = feed.poll()
    assert {e.name: e.steps for e in got} == {'robot1/episode_000001': 4, 'robot1/episode_000002': 6,
                                              'robot2/episode_000001': 9}
    assert feed.poll() == []
    for sim in robots.values():  # Ctrl-C: the open episodes are closed
        sim.rec.close()
    assert sorted(e.name for e in feed.poll()) == ['robot1/episode_000003', 'robot2/episode_000002']
    assert len(feed) == 5 and feed.steps == 4 + 6 + 9 + 5 + 3 and not feed.problems


def test_feed_reports_failed_and_unfinished_bags_once(tmp_path, interface, caplog):
    from robot_training.recording.recorder import read_sidecar, write_sidecar

    sim = SimRecording(tmp_path / 'ds', interface)
    sim.episode_of(4)
    sim.episode_of(6)
    sim.rec.close()
    first = tmp_path / 'ds' / 'episode_000001'
    (first / 'metadata.yaml').rename(first / 'metadata.away')  # as if its recorder had been killed
    feed = EpisodeFeed(tmp_path / 'ds', interface)
    assert [e.name for e in feed.poll()] == ['episode_000002']
    assert 'bags repair' in feed.problems['episode_000001']
    assert feed.poll() == [] and sum('episode_000001' in r.message for r in caplog.records) == 1
    (first / 'metadata.away').rename(first / 'metadata.yaml')  # repaired
    assert [e.name for e in feed.poll()] == ['episode_000001'] and not feed.problems
    record = read_sidecar(tmp_path / 'ds' / 'episode_000002')
    record['status'] = 'failed'
    write_sidecar(tmp_path / 'ds' / 'episode_000002', record)
    assert feed.poll() == []  # taken already: never read twice


def test_feed_does_not_read_a_refused_bag_again(tmp_path, interface, monkeypatch):
    """An episode recorded before the actor published (no /cmd) is refused once and not read
    again at every poll while it is unchanged (600 episodes in, 7 such bags re-read every
    0.5 s took most of a SAC learner's time)."""
    import robot_training.online.episodes as episodes

    sim = SimRecording(tmp_path / 'ds', interface)
    sim.episode_of(5, actions=False)
    sim.episode_of(6)
    sim.rec.close()
    reads = []
    real = episodes.load_bag_dataset
    monkeypatch.setattr(episodes, 'load_bag_dataset', lambda folder, *a, **k: reads.append(folder.name) or real(folder, *a, **k))
    feed = EpisodeFeed(tmp_path / 'ds', interface)
    assert [e.name for e in feed.poll()] == ['episode_000002']
    assert '/cmd' in feed.problems['episode_000001']
    for _ in range(3):
        assert feed.poll() == []
    assert reads == ['episode_000001', 'episode_000002']


@pytest.mark.parametrize('algorithm', ['sac', 'dreamer'])
def test_learner_trains_checkpoints_and_resumes_with_every_episode(tmp_path, interface, algorithm):
    from robot_training.deploy import load_policy

    sim = SimRecording(tmp_path / 'ds', interface)
    for n in (20, 15, 25):
        sim.episode_of(n)
    sim.rec.close()
    announced = []
    cfg = small_config(tmp_path, algorithm)
    learner = OnlineLearner(algorithm, interface, tmp_path / 'ds', config=cfg,
                            on_checkpoint=lambda *a: announced.append(a))
    assert learner.resume() is None
    learner.ingest()
    assert learner.env_steps == 60 and learner.episodes == 3 and learner.algo.replay_steps >= 60
    ratio = learner.updates_per_step
    learner.train(max_seconds=60)
    assert learner.updates == int(ratio * 60) > 0  # the train ratio caps the updates
    assert learner.train(max_seconds=5) == 0  # nothing more until new data arrives
    path = learner.checkpoint()
    assert announced and announced[-1][0] == path and announced[-1][1] == learner.updates
    assert announced[-1][3] == interface.fingerprint and announced[-1][4] == algorithm
    assert len(learner.checkpoints()) <= cfg.online.keep_checkpoints
    policy = load_policy(path, interface=interface)  # the actor's loader takes it
    assert policy.act(np.zeros(4, np.float32)).shape == (1,)

    sim2 = SimRecording(tmp_path / 'ds', interface)  # the robot went on while the learner was down
    sim2.episode_of(10)
    sim2.rec.close()
    again = OnlineLearner(algorithm, interface, tmp_path / 'ds', config=cfg)
    assert again.resume() == path and again.updates == learner.updates
    again.ingest()
    assert again.episodes == 4 and again.env_steps == 70  # every finished episode, none twice
    again.train(max_seconds=60)
    assert again.updates == int(ratio * 70)


def test_ppo_is_refused_in_the_loop():
    with pytest.raises(OnlineError, match='ppo is on-policy'):
        check_algorithm('ppo')
    with pytest.raises(OnlineError, match='unknown loop algorithm'):
        check_algorithm('td3')


def test_training_thread_yields_the_cpu_to_the_control_loop(tmp_path, interface):
    """online.cpu_policy idle: the thread running the learner is SCHED_IDLE, the
    process's other threads are not; normal (the default) leaves it; an unknown value names the key."""
    import os
    import threading

    sim = SimRecording(tmp_path / 'ds', interface)
    sim.episode_of(20)
    sim.rec.close()
    seen = {}
    for policy in ('idle', 'normal'):
        cfg = small_config(tmp_path / policy).replace(online=dict(cpu_policy=policy))
        learner = OnlineLearner('sac', interface, tmp_path / 'ds', config=cfg)
        stop = threading.Event()
        thread = threading.Thread(target=learner.run, args=(stop,))
        thread.start()
        try:
            deadline = time.monotonic() + 20
            while learner.episodes == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            seen[policy] = os.sched_getscheduler(thread.native_id)
        finally:
            stop.set()
            thread.join(30)
    assert seen == {'idle': os.SCHED_IDLE, 'normal': os.SCHED_OTHER}
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the caller's own thread is untouched
    with pytest.raises(OnlineError, match='online.cpu_policy: unknown CPU policy'):
        OnlineLearner('sac', interface, tmp_path / 'ds', config=small_config(tmp_path).replace(
            online=dict(cpu_policy='fast')))
