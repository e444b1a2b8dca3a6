"""RSSM world model: learning, shapes, straight-through gradients, checkpoints, bad shapes."""

import numpy as np
import pytest
import torch

from robot_training.checkpoint import CheckpointError
from robot_training.config import Config
from robot_training.data.trajectory import Trajectory
from robot_training.networks.encoders import ObservationShapeError
from robot_training.networks.heads import TwoHotHead, symexp, symlog, two_hot
from robot_training.world_models.replay import SequenceReplay, trajectory_to_steps
from robot_training.world_models.rssm import RSSM
from robot_training.world_models.train_world_model import WorldModelTrainer, train_world_model
from robot_training.world_models.world_model import kl_scales

torch.set_num_threads(1)


def tiny_config(**world_model) -> Config:
    wm = dict(size="tiny", batch_size=8, sequence_length=16, learning_rate=3e-3)
    wm.update(world_model)
    return Config().replace(world_model=wm, training={"device": "cpu", "seed": 0})


def linear_system(num_episodes=12, length=40, obs_dim=3, action_dim=2, seed=0, image=False):
    """x' = A x + B a (stable), reward = -|x|², observations x (or 8×8 images of x)."""
    rng = np.random.default_rng(seed)
    a_mat = 0.9 * np.linalg.qr(rng.normal(size=(obs_dim, obs_dim)))[0]
    b_mat = rng.normal(size=(obs_dim, action_dim)) * 0.5
    out = []
    for episode in range(num_episodes):
        x = rng.normal(size=obs_dim)
        xs, acts, rews = [], [], []
        for _ in range(length):
            a = rng.uniform(-1, 1, size=action_dim)
            xs.append(x)
            acts.append(a)
            x = a_mat @ x + b_mat @ a
            rews.append(-float(x @ x))
        obs = np.array(xs, np.float32)
        final = x.astype(np.float32)
        if image:
            obs, final = render(obs), render(final[None])[0]
        terminals = np.zeros(length, bool)
        terminals[-1] = episode % 3 == 0
        out.append(Trajectory(observations=obs, actions=np.array(acts), rewards=rews, terminals=terminals,
                              truncations=~terminals & (np.arange(length) == length - 1),
                              final_observation=final, episode_id=f"lin-{episode}"))
    return out


def render(states: np.ndarray) -> np.ndarray:
    """8×8×1 uint8 images: a blob whose position encodes the first two state dims."""
    grid = np.arange(8)
    cx = np.clip((states[:, 0] + 3) / 6 * 7, 0, 7)
    cy = np.clip((states[:, 1] + 3) / 6 * 7, 0, 7)
    img = np.exp(-((grid[None, :, None] - cy[:, None, None]) ** 2 + (grid[None, None, :] - cx[:, None, None]) ** 2) / 2)
    return (img[..., None] * 255).astype(np.uint8)


def test_symlog_two_hot_round_trip():
    x = torch.tensor([-1000.0, -3.0, 0.0, 0.5, 42.0])
    assert torch.allclose(symexp(symlog(x)), x, rtol=1e-5)
    head = TwoHotHead(4, 8, 1, num_bins=255)
    encoded = two_hot(symlog(x), head.bins)
    assert torch.allclose(encoded.sum(-1), torch.ones(5))
    decoded = symexp((encoded * head.bins).sum(-1))
    assert torch.allclose(decoded, x, rtol=1e-4, atol=1e-4)


def test_world_model_loss_falls_and_open_loop_shapes(tmp_path):
    data = linear_system()
    trainer = WorldModelTrainer((3,), 2, tiny_config())
    trainer.set_data(data)
    before = trainer.validation_loss()
    trainer.fit(150)
    after = trainer.validation_loss()
    assert after < 0.6 * before, (before, after)

    obs = np.stack([d.observations[:20] for d in data[:2]])
    acts = np.stack([d.actions[:20] for d in data[:2]])
    pred = trainer.open_loop_prediction(obs, acts, context=5)
    assert pred["observation"].shape == (2, 15, 3)
    assert pred["reward"].shape == (2, 15) and pred["continue"].shape == (2, 15)
    # the imagined states are better than predicting the mean observation
    error = np.mean((pred["observation"] - obs[:, 5:]) ** 2)
    assert error < np.mean((obs[:, 5:] - obs.mean((0, 1))) ** 2)

    path = trainer.save_checkpoint(tmp_path / "wm.pt")
    again = WorldModelTrainer.from_checkpoint(path)
    assert again.updates == trainer.updates
    again.set_data(data)
    assert again.validation_loss() == pytest.approx(after, rel=1e-5)
    other = WorldModelTrainer((4,), 2, tiny_config())
    with pytest.raises(CheckpointError, match="observations"):
        other.load_checkpoint(path)


def test_train_world_model_from_images_and_dicts():
    images = linear_system(num_episodes=4, length=20, image=True)
    trainer = train_world_model(images, observation_shape=(8, 8, 1), num_epochs=2, config=tiny_config())
    assert trainer.updates >= 2
    pred = trainer.open_loop_prediction(images[0].observations, images[0].actions, context=4)
    assert pred["observation"].shape == (1, 16, 8, 8, 1) and pred["observation"].dtype == np.uint8

    vectors = linear_system(num_episodes=4, length=20)
    mixed = [Trajectory(observations={"camera": i.observations, "joints": v.observations}, actions=v.actions,
                        rewards=v.rewards, terminals=v.terminals, truncations=v.truncations,
                        final_observation={"camera": i.final_observation, "joints": v.final_observation})
             for i, v in zip(images, vectors)]
    shape = {"camera": (8, 8, 1), "joints": (3,)}
    trainer = train_world_model(mixed, observation_shape=shape, num_epochs=1, config=tiny_config())
    assert np.isfinite(trainer.validation_loss())


def test_bad_observation_shape_is_a_clear_error():
    data = linear_system(num_episodes=2, length=10)
    with pytest.raises(ObservationShapeError, match=r"observation_shape=\(5,\)"):
        train_world_model(data, observation_shape=(5,), num_epochs=1, config=tiny_config())
    with pytest.raises(ObservationShapeError, match="channels-first|power of two"):
        WorldModelTrainer((3, 64, 64), 2, tiny_config())
    with pytest.raises(ObservationShapeError, match="not supported"):
        WorldModelTrainer((4, 4), 2, tiny_config())


@pytest.mark.parametrize("latent", ["categorical", "gaussian"])
def test_gradients_flow_through_the_latent_sample(latent):
    torch.manual_seed(0)
    rssm = RSSM(action_dim=2, embed_dim=5, state_dim=8, hidden_dim=8, stoch_dim=4, num_classes=3, latent=latent)
    state = rssm.initial_state(6)
    embed = torch.randn(6, 5)
    posterior, _ = rssm.observe_step(state, torch.zeros(6, 2), embed)
    if latent == "categorical":  # the forward value is an exact one-hot sample
        stoch = posterior["stoch"].view(6, 4, 3)
        assert torch.allclose(stoch.sum(-1), torch.ones(6, 4))
        assert torch.allclose(stoch, stoch.round(), atol=1e-6)
    # a loss on the *next* deterministic state reaches the posterior network only via the sample
    following = rssm.imagine_step(posterior, torch.zeros(6, 2))
    following["deter"].square().sum().backward()
    grad = rssm.posterior_net[-1].weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_replay_order_and_sampling():
    traj = linear_system(num_episodes=1, length=5)[0]
    steps = trajectory_to_steps(traj)
    assert steps["observation"].shape == (6, 3)
    np.testing.assert_allclose(steps["action"][1:], traj.actions)
    assert steps["is_first"].tolist() == [True] + [False] * 5
    replay = SequenceReplay(capacity=8)
    for _ in range(3):
        replay.add_steps(steps["observation"], steps["action"], steps["reward"], steps["is_first"],
                         steps["is_terminal"])
    assert len(replay) == 8  # ring buffer keeps the newest steps
    batch = replay.sample(4, 7, np.random.default_rng(0))
    assert batch["observation"].shape == (4, 7, 3) and batch["is_first"][:, 0].all()


def test_kl_balance_maps_onto_scales():
    assert kl_scales(Config()) == pytest.approx((0.48, 0.12))
    cfg = Config().replace(world_model={"kl_dyn_scale": 0.5, "kl_rep_scale": 0.1})
    assert kl_scales(cfg) == (0.5, 0.1)
    assert kl_scales(Config().replace(dreamer={"kl_balance": 0.5})) == pytest.approx((0.3, 0.3))
