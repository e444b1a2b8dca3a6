"""Deploying policies without a ROS graph: load_policy for every actor kind, refusals,
and PolicyRunner (staleness, clipping, atomic swaps)."""

import types

import numpy as np
import pytest
import torch

from robot_training.checkpoint import load_checkpoint, save_checkpoint
from robot_training.config import Config
from robot_training.interface.description import load_interface
from robot_training.deploy import DeployError, PolicyRunner, load_policy
from robot_training.envs.ros_sim import EVENT_END, EVENT_START, InterfaceSim, SimError

torch.set_num_threads(1)
ENV = "InvertedPendulum-v5"


@pytest.fixture(scope="module")
def interface(repo_root):
    return load_interface(repo_root / "config" / "interface_inverted_pendulum.yaml")


def tiny_policy(tmp, algorithm="ppo", steps=256):
    """A PPO/SAC checkpoint on the pendulum, trained for a few hundred steps."""
    from robot_training.policies.train_policy import PolicyTrainer

    cfg = Config().replace(
        policy=dict(hidden_dim=16, num_envs=2, num_steps=64, num_minibatches=1, update_epochs=1),
        sac=dict(hidden_dim=16, batch_size=16, learning_starts=64, buffer_size=1000),
        training=dict(tensorboard=False, progress_bar=False, checkpoint_every=0, log_dir=str(tmp / "runs")))
    trainer = PolicyTrainer(algorithm, ENV, config=cfg, checkpoint_dir=tmp, env_name=ENV)
    trainer.learn(steps)
    trainer.close()
    return trainer.final_checkpoint


def tiny_bc(tmp, use_sequences=False, observation_dim=4):
    from robot_training.supervised_learning.bc import BehavioralCloning
    from robot_training.utils.data_collection import create_synthetic_dataset

    demos = create_synthetic_dataset(6, observation_dim=observation_dim, action_dim=1, episode_length=20, seed=0)
    cfg = Config().replace(bc=dict(hidden_dim=16, lstm_hidden=8, sequence_length=8, use_sequences=use_sequences),
                           training=dict(tensorboard=False, progress_bar=False, log_dir=str(tmp / "runs")))
    bc = BehavioralCloning(cfg)
    bc.learn(demos, num_epochs=3)
    return bc.save(tmp / f"bc_{'lstm' if use_sequences else 'mlp'}_{observation_dim}.pt")


def tiny_dreamer(tmp):
    """An (untrained) Dreamer agent of the pendulum's sizes: loading and acting are what is tested."""
    from robot_training.reinforcement_learning.dreamer import DreamerAgent

    cfg = Config().replace(world_model=dict(size="tiny"), training=dict(device="cpu", tensorboard=False))
    agent = DreamerAgent((4,), 1, cfg, action_low=[-3.0], action_high=[3.0])
    return agent.save(tmp / "dreamer.pt")


@pytest.fixture(scope="module")
def ppo_path(tmp_path_factory):
    return tiny_policy(tmp_path_factory.mktemp("ppo"))


# ------------------------------------------------------------------------------ load_policy


def test_ppo_and_sac_load_and_act(ppo_path, interface, tmp_path, monkeypatch):
    """Deploying builds an actor, not a trainer: no optimiser is made while loading; and the
    PyTorch path (an actor the NumPy copy does not take) acts like the NumPy one."""
    from robot_training.deploy import policy as deploy_policy

    def no_optimiser(*_a, **_k):
        raise AssertionError("load_policy built an optimiser")

    for path in (ppo_path, tiny_policy(tmp_path, "sac", steps=100)):
        with monkeypatch.context() as m:
            m.setattr(torch.optim, "Adam", no_optimiser)
            policy = load_policy(path, interface=interface)
            m.setattr(deploy_policy, "numpy_actor", lambda *_a: None)
            through_torch = load_policy(path, interface=interface)
        assert policy.backend == "numpy" and through_torch.backend == "torch"
        obs = np.linspace(-1, 1, 4).astype(np.float32)
        np.testing.assert_allclose(policy.act(obs), through_torch.act(obs), atol=1e-5)
        assert policy.observation_shape == (4,) and policy.action_dim == 1 and not policy.recurrent
        a = policy.act(np.zeros(4, np.float32))
        assert a.shape == (1,) and np.isfinite(a).all()
        assert len(policy.sha256) == 64


def test_numpy_actor_acts_as_the_trainer(ppo_path, interface, tmp_path):
    """The deployed PPO/SAC actor is a NumPy copy of the trained one: the same mode for
    observations far outside the normalisation and action ranges, the same sampling
    distribution, and a clear error on a wrong-sized observation."""
    from robot_training.policies.train_policy import PolicyTrainer

    rng = np.random.default_rng(0)
    obs = rng.normal(0.0, 5.0, (300, 4)).astype(np.float32)
    for kind, path in (("ppo", ppo_path), ("sac", tiny_policy(tmp_path, "sac", steps=100))):
        trainer = PolicyTrainer(kind).load(path, load_replay=False)
        policy = load_policy(path, interface=interface)
        assert policy.backend == "numpy"
        got = np.stack([policy.act(o) for o in obs])
        np.testing.assert_allclose(got[:, 0], trainer.predict(obs, deterministic=True)[:, 0], atol=1e-5)
        sampling = load_policy(path, interface=interface, deterministic=False)
        torch.manual_seed(0)
        ref = trainer.predict(np.repeat(obs[:1], 4000, 0), deterministic=False)[:, 0]
        mine = np.array([sampling.act(obs[0])[0] for _ in range(4000)])
        assert abs(mine.mean() - ref.mean()) < 0.1 * max(ref.std(), 1e-3) + 1e-3
        assert abs(mine.std() - ref.std()) < 0.1 * max(ref.std(), 1e-3) + 1e-3
        with pytest.raises(ValueError, match="expected \\(4,\\)"):
            policy.act(np.zeros(5, np.float32))


def test_numpy_actor_refuses_layers_it_does_not_reproduce(ppo_path):
    """An actor with a layer the NumPy copy does not know acts through PyTorch instead."""
    from robot_training.deploy.numpy_actor import numpy_actor
    from robot_training.policies.train_policy import PolicyTrainer

    algo = PolicyTrainer("ppo").load(ppo_path, load_replay=False).algo
    assert numpy_actor("ppo", algo) is not None
    algo.model.actor.append(torch.nn.Dropout(0.1))
    assert numpy_actor("ppo", algo) is None
    assert numpy_actor("bc", algo) is None


def test_bc_feed_forward_and_lstm(interface, tmp_path):
    obs = np.linspace(-0.1, 0.1, 4).astype(np.float32)
    mlp = load_policy(tiny_bc(tmp_path), interface=interface)
    assert not mlp.recurrent
    np.testing.assert_allclose(mlp.act(obs), mlp.act(obs))
    lstm = load_policy(tiny_bc(tmp_path, use_sequences=True), interface=interface)
    assert lstm.recurrent
    first = lstm.act(obs)
    later = [lstm.act(obs) for _ in range(3)][-1]
    lstm.reset()
    np.testing.assert_allclose(lstm.act(obs), first, rtol=1e-5)  # reset gives the first step back
    assert not np.allclose(later, first)                           # the state does carry over


def test_dreamer_is_stateful(interface, tmp_path):
    policy = load_policy(tiny_dreamer(tmp_path), interface=interface)
    assert policy.recurrent and policy.kind == "dreamer"
    obs = np.array([0.0, 0.05, 0.1, -0.1], np.float32)
    first = policy.act(obs)
    assert first.shape == (1,) and -3.0 <= first[0] <= 3.0
    policy.act(obs)
    policy.reset()
    np.testing.assert_allclose(policy.act(obs), first, rtol=1e-5)


def test_numpy_dreamer_acts_as_the_agent(tmp_path):
    """The deployed Dreamer agent (vector observations) is a NumPy copy of the torch one: the
    same actions and recurrent state step after step, for both latent kinds, with LayerNorm
    weights away from their initial values; sampling draws from the same distribution; an
    image agent keeps acting through PyTorch."""
    from robot_training.deploy.numpy_actor import numpy_dreamer
    from robot_training.reinforcement_learning.dreamer import DreamerAgent

    rng = np.random.default_rng(0)
    for latent in ("categorical", "gaussian"):
        cfg = Config().replace(world_model=dict(size="tiny", latent=latent), training=dict(device="cpu", tensorboard=False))
        agent = DreamerAgent((4,), 2, cfg, action_low=[-3.0, -1.0], action_high=[3.0, 2.0])
        torch.manual_seed(1)
        with torch.no_grad():
            for p in list(agent.world_model.parameters()) + list(agent.behavior.parameters()):
                p.add_(0.3 * torch.randn_like(p))
        path = agent.save(tmp_path / f"dreamer_{latent}.pt")
        policy = load_policy(path)
        assert policy.backend == "numpy" and policy.recurrent
        carry = None
        for _ in range(40):
            obs = rng.normal(0.0, 3.0, 4).astype(np.float32)
            expected, carry = agent.policy(carry, obs, deterministic=True)
            np.testing.assert_allclose(policy.act(obs), expected, atol=1e-5)
            np.testing.assert_allclose(policy._state["deter"], carry["deter"][0].numpy(), atol=1e-5)
        obs = np.array([0.2, -0.1, 0.5, 1.0], np.float32)
        step, initial = numpy_dreamer(agent)
        mine = np.stack([step(None, obs, False)[0] for _ in range(3000)])
        ref = np.stack([agent.policy(None, obs, deterministic=False)[0] for _ in range(3000)])
        np.testing.assert_allclose(mine.mean(0), ref.mean(0), atol=0.1 * ref.std(0).max() + 0.02)
        np.testing.assert_allclose(mine.std(0), ref.std(0), atol=0.1 * ref.std(0).max() + 0.02)
        assert initial()["deter"].shape == (32,)
    image = DreamerAgent({"image": (16, 16, 3), "state": (4,)}, 1,
                         Config().replace(world_model=dict(size="tiny"), training=dict(device="cpu")))
    assert numpy_dreamer(image) is None
    assert load_policy(image.save(tmp_path / "image.pt")).backend == "torch"


def test_dreamer_state_carries_over_a_reload_of_the_same_backend_only(tmp_path, interface):
    """A hot reload continues the episode's recurrent state into the new policy; a state of
    the other backend (a NumPy carry into a PyTorch agent) is not adopted."""
    from robot_training.deploy import policy as deploy_policy

    path = tiny_dreamer(tmp_path)
    old, new = load_policy(path, interface=interface), load_policy(path, interface=interface)
    obs = np.array([0.0, 0.05, 0.1, -0.1], np.float32)
    for _ in range(5):
        old.act(obs)
    assert new.adopt_state(old)
    np.testing.assert_allclose(new.act(obs), old.act(obs), atol=1e-6)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(deploy_policy, "numpy_dreamer", lambda *_a: None)
        through_torch = load_policy(path, interface=interface)
    assert through_torch.backend == "torch" and not through_torch.adopt_state(old)


def test_refusals(ppo_path, interface, tmp_path):
    with pytest.raises(DeployError, match="not found"):
        load_policy(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(DeployError, match="junk.pt"):
        load_policy(junk)
    wm = save_checkpoint(tmp_path / "wm.pt", "world_model", {"model": {}})
    with pytest.raises(DeployError, match="world-model checkpoint has no actor"):
        load_policy(wm)
    with pytest.raises(DeployError, match="observes"):
        load_policy(tiny_bc(tmp_path, observation_dim=6), interface=interface)
    data = load_checkpoint(ppo_path)
    data["interface_fingerprint"] = "0" * 64
    other = tmp_path / "other_interface.pt"
    torch.save(data, other)
    with pytest.raises(DeployError, match="trained with interface 000000000000"):
        load_policy(other, interface=interface)
    data["interface_fingerprint"] = interface.fingerprint
    same = tmp_path / "same_interface.pt"
    torch.save(data, same)
    assert load_policy(same, interface=interface).interface_fingerprint == interface.fingerprint


# ------------------------------------------------------------------------------ PolicyRunner


def joint_state(values):
    msg = types.SimpleNamespace(name=["slider", "hinge"], position=list(values[:2]), velocity=list(values[2:]))
    return msg


class Constant:
    """A stand-in DeployedPolicy returning a fixed action."""

    def __init__(self, value):
        self.value, self.resets, self.seen = np.array([value], float), 0, []

    def act(self, obs):
        self.seen.append(np.array(obs))
        return self.value

    def reset(self):
        self.resets += 1


def test_runner_waits_refuses_stale_and_clips(interface):
    policy = Constant(10.0)
    runner = PolicyRunner(interface, policy)
    assert runner.tick(0).status == "waiting"
    runner.on_message("/joint_states", joint_state([0.1, 0.2, 0.3, 0.4]), now_ns=1_000_000_000)
    tick = runner.tick(1_050_000_000)
    assert tick.status == "ok" and tick.action.tolist() == [3.0]          # clipped to high
    np.testing.assert_allclose(policy.seen[-1], [0.1, 0.2, 0.3, 0.4], rtol=1e-6)
    stale = runner.tick(1_000_000_000 + int(0.2e9))                       # max_staleness_s 0.1
    assert stale.action is None and stale.status == "stale" and "/joint_states" in stale.detail
    safe = PolicyRunner(interface, policy, safe_action=[0.0])
    safe.on_message("/joint_states", joint_state([0, 0, 0, 0]), now_ns=0)
    t = safe.tick(int(1e9))
    assert t.status == "safe_action" and t.action.tolist() == [0.0]
    runner.reset()
    assert policy.resets == 1


def test_runner_swaps_atomically(ppo_path, interface, tmp_path):
    runner = PolicyRunner(interface)
    assert runner.tick(0).status == "no_policy"
    first = runner.load(ppo_path)
    junk = tmp_path / "junk.pt"
    junk.write_text("junk")
    with pytest.raises(DeployError):
        runner.load(junk)
    assert runner.policy is first
    runner.on_message("/joint_states", joint_state([0, 0.01, 0, 0]), now_ns=0)
    assert runner.tick(1000).acted


# ------------------------------------------------------------------------------ InterfaceSim


def test_sim_round_trips_the_observation_and_ends_episodes(interface):
    from std_msgs.msg import Float64MultiArray  # plain message classes, no graph
    from sensor_msgs.msg import JointState

    sim = InterfaceSim(interface, ENV, message_factories={"/joint_states": JointState}, max_episode_steps=30)
    out = sim.reset()
    assert [e.event for e in out.events] == [EVENT_START]
    np.testing.assert_allclose(interface.build_observation(out.observations), out.observation, rtol=1e-6)
    cmd = Float64MultiArray(data=[50.0])
    assert sim.set_action(cmd).tolist() == [3.0]
    ends = []
    for _ in range(40):
        out = sim.step()
        ends += [e for e in out.events if e.event == EVENT_END]
        if ends:
            break
    assert ends and ends[0].reason in ("terminated", "truncated") and ends[0].length == sim.length
    assert out.sim_time_ns == sim.steps * 40_000_000
    assert [e.event for e in sim.step().events] == [EVENT_START]
    sim.close()
    with pytest.raises(SimError):
        InterfaceSim(interface, "Pendulum-v1")
