"""SAC: learning on Pendulum, twin-Q ensemble, squashed Gaussian, replay buffer, checkpoints."""


import gymnasium as gym
import numpy as np
import pytest
import torch

from robot_training.config import Config
from robot_training.utils.data_collection import evaluate_policy
from robot_training.data.replay import ReplayBatch, ReplayBuffer
from robot_training.networks.distributions import tanh_gaussian_sample
from robot_training.policies.sac import SAC, EnsembleLinear
from robot_training.policies.train_policy import PolicyTrainer, replay_path, train_policy

torch.set_num_threads(1)


def evaluate(policy, env_id="Pendulum-v1", episodes=3, seed=1000):
    return evaluate_policy(policy, env_id, episodes, seed)


def small_config(tmp_path, **sac):
    base = dict(hidden_dim=64, learning_starts=500, batch_size=128, policy_frequency=1)
    base.update(sac)
    return Config().replace(sac=base, training=dict(log_dir=str(tmp_path / "runs"), checkpoint_every=0,
                                                    progress_bar=False))


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_sac_improves_pendulum(tmp_path, precision):
    torch.manual_seed(0)  # network initialisation: independent of the tests run before
    env = gym.make("Pendulum-v1")
    algo = SAC(env.observation_space, env.action_space, small_config(tmp_path, precision=precision),
               env="Pendulum-v1", seed=0)
    before = evaluate(algo)
    # bfloat16 rounds differently on AMX (Intel) and AVX512-BF16 (AMD) kernels; on AMX 4k steps
    # left it at -807 for this seed: it gets the longer budget
    algo.learn(4_000 if precision == "float32" else 6_000)
    after = evaluate(algo)
    assert after > before + 300 and after > -700, (precision, before, after)


def test_unknown_precision_is_named(tmp_path):
    env = gym.make("Pendulum-v1")
    with pytest.raises(ValueError, match="sac.precision must be one of auto, float32, bfloat16"):
        SAC(env.observation_space, env.action_space, small_config(tmp_path, precision="float16"))


def test_ensemble_linear_is_independent_layers():
    layer = EnsembleLinear(2, 5, 3)
    x = torch.randn(2, 7, 5)
    out = layer(x)
    for i in range(2):
        torch.testing.assert_close(out[i], x[i] @ layer.weight[i] + layer.bias[i])


def test_tanh_gaussian_log_prob_matches_change_of_variables():
    torch.manual_seed(0)
    mean, log_std = torch.randn(1000, 2), torch.randn(1000, 2).clamp(-1, 0.5)
    a, logp = tanh_gaussian_sample(mean, log_std)
    base = torch.distributions.Normal(mean, log_std.exp())
    u = torch.atanh(a.clamp(-1 + 1e-6, 1 - 1e-6))
    expected = (base.log_prob(u) - torch.log(1 - a.pow(2) + 1e-12)).sum(-1)
    ok = a.abs().max(-1).values < 0.999  # away from saturation, where atanh is exact enough
    torch.testing.assert_close(logp[ok], expected[ok], rtol=1e-3, atol=1e-3)
    assert a.abs().max() < 1.0


def test_replay_buffer_grows_samples_typed_batches_and_round_trips(tmp_path):
    buf = ReplayBuffer(capacity=50, observation_shape=(3,), action_dim=2, initial_size=4, seed=0)
    for i in range(60):
        buf.add(np.full(3, i), np.full(2, -i), float(i), np.full(3, i + 1), i % 7 == 0)
    assert len(buf) == 50
    batch = buf.sample(32)
    assert isinstance(batch, ReplayBatch)
    assert batch.observations.shape == (32, 3) and batch.actions.shape == (32, 2) and batch.rewards.shape == (32,)
    # transitions stay aligned: next obs = obs + 1, reward = obs, oldest 10 overwritten
    torch.testing.assert_close(batch.next_observations, batch.observations + 1)
    torch.testing.assert_close(batch.rewards, batch.observations[:, 0])
    assert batch.observations.min() >= 10
    buf.save(tmp_path / "r.npz")
    other = ReplayBuffer(capacity=50, observation_shape=(3,), action_dim=2)
    other.load(tmp_path / "r.npz")
    assert (other.size, other.pos) == (buf.size, buf.pos)
    for f in ReplayBatch._fields:
        torch.testing.assert_close(getattr(buf.sample(16), f), getattr(other.sample(16), f))


def test_sac_checkpoint_resume_restores_everything(tmp_path):
    cfg = small_config(tmp_path, learning_starts=100, batch_size=32).replace(training={"checkpoint_every": 300})
    trainer = train_policy("Pendulum-v1", "sac", total_timesteps=400, config=cfg, seed=2, checkpoint_dir=tmp_path)
    step_ckpt = tmp_path / "policies" / "checkpoints" / "sac" / "policy_sac_step000000300.pt"
    assert step_ckpt.is_file() and replay_path(step_ckpt).is_file()
    final = tmp_path / "policies" / "checkpoints" / "sac" / "policy_sac_final.pt"
    resumed = PolicyTrainer("sac", "Pendulum-v1", checkpoint_dir=tmp_path)
    assert resumed.resume() == final  # the newest checkpoint
    assert resumed.num_timesteps == 400 and len(resumed.algo.replay) == 400
    assert resumed.algo.num_updates == trainer.algo.num_updates
    a, b = trainer.algo.q_optimizer.state_dict(), resumed.algo.q_optimizer.state_dict()
    for k in a["state"]:
        assert torch.equal(a["state"][k]["exp_avg_sq"], b["state"][k]["exp_avg_sq"])
        assert float(a["state"][k]["step"]) == float(b["state"][k]["step"])
    torch.testing.assert_close(trainer.algo.log_alpha, resumed.algo.log_alpha)
    obs = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    np.testing.assert_array_equal(trainer.predict(obs), resumed.predict(obs))
    resumed.config = resumed.config.replace(training={"checkpoint_every": 0})
    resumed.learn(500)
    assert resumed.num_timesteps == 500 and resumed.algo.num_updates == trainer.algo.num_updates + 100


def test_sac_refuses_discrete_actions():
    env = gym.make("CartPole-v1")
    with pytest.raises(ValueError, match="continuous"):
        SAC(env.observation_space, env.action_space)


def test_auto_precision_keeps_narrow_networks_in_float32(tmp_path):
    """``auto`` is bfloat16 only where it pays: never below 256 units, the hardware's choice
    from 256 on; an explicit precision is taken as given at any width."""
    from robot_training.utils.precision import AUTO_BFLOAT16_MIN_WIDTH, resolve_precision

    env = gym.make("Pendulum-v1")
    native = resolve_precision("auto", "cpu")
    for width, expected in ((64, "float32"), (128, "float32"), (AUTO_BFLOAT16_MIN_WIDTH, native), (512, native)):
        algo = SAC(env.observation_space, env.action_space, small_config(tmp_path, hidden_dim=width), seed=0)
        with algo._autocast():
            dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else torch.float32
        assert dtype == getattr(torch, expected), (width, expected)
    narrow = SAC(env.observation_space, env.action_space, small_config(tmp_path, hidden_dim=64, precision="bfloat16"))
    with narrow._autocast():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
