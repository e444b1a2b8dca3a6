"""Behavioral cloning: matches an expert on held-out episodes, sequences, save/load."""

import numpy as np
import pytest
import torch

from robot_training.config import Config
from robot_training.data.trajectory import save_trajectories
from robot_training.supervised_learning.bc import BehavioralCloning
from robot_training.supervised_learning.train_supervised import train_behavioral_cloning
from robot_training.utils.data_collection import create_synthetic_dataset

torch.set_num_threads(1)


def config(tmp_path, **bc):
    base = dict(num_epochs=15, hidden_dim=64, lstm_hidden=32, sequence_length=16)
    base.update(bc)
    return Config().replace(bc=base, training=dict(log_dir=str(tmp_path / "runs"), progress_bar=False))


def action_mse(policy, trajectories):
    obs = np.concatenate([t.observations for t in trajectories])
    act = np.concatenate([t.actions for t in trajectories])
    return float(np.mean((policy.predict(obs) - act) ** 2))


@pytest.mark.parametrize("loss", ["mse", "gaussian"])
def test_bc_matches_expert_on_held_out_episodes(tmp_path, loss):
    demos = create_synthetic_dataset(24, observation_dim=6, action_dim=2, episode_length=60, seed=0)
    held_out = create_synthetic_dataset(30, observation_dim=6, action_dim=2, episode_length=60, seed=0)[24:]
    trainer = train_behavioral_cloning(demos, config=config(tmp_path, loss=loss), checkpoint_dir=tmp_path, seed=0)
    mean_action = np.concatenate([t.actions for t in demos]).mean(0)
    baseline = float(np.mean((np.concatenate([t.actions for t in held_out]) - mean_action) ** 2))
    assert action_mse(trainer, held_out) < 0.25 * baseline, (action_mse(trainer, held_out), baseline)
    assert np.isfinite(trainer.validation_loss)
    assert len(trainer.history["val_loss"]) == 15
    assert (tmp_path / "supervised_learning" / "checkpoints" / "bc" / "bc_final.pt").is_file()


def test_bc_with_sequences_and_explicit_state(tmp_path):
    demos = create_synthetic_dataset(12, observation_dim=4, action_dim=1, episode_length=50, seed=1)
    path = save_trajectories(tmp_path / "demos.pkl.gz", demos)
    trainer = train_behavioral_cloning(str(path), use_sequences=True, config=config(tmp_path, num_epochs=20),
                                       checkpoint_dir=tmp_path, seed=0)
    assert trainer.config.bc.use_sequences
    assert trainer.history["val_loss"][-1] < trainer.history["val_loss"][0]
    # a step with explicit carry over an episode: shapes, and the carry changes the output
    state = trainer.initial_state(1)
    obs = demos[0].observations
    a0, state = trainer.step(obs[0], state)
    a1_carry, _ = trainer.step(obs[1], state)
    a1_fresh = trainer.predict(obs[1])
    assert a0.shape == (1,) and a1_carry.shape == (1,)
    assert not np.allclose(a1_carry, a1_fresh)


@pytest.mark.parametrize("use_sequences", [False, True])
def test_bc_save_load_identical_predictions(tmp_path, use_sequences):
    demos = create_synthetic_dataset(6, observation_dim=5, action_dim=3, episode_length=40, seed=2)
    trainer = train_behavioral_cloning(demos, use_sequences=use_sequences, config=config(tmp_path, num_epochs=3),
                                       checkpoint_dir=tmp_path, save=False)
    path = trainer.save(tmp_path / "bc.pt")
    loaded = BehavioralCloning().load(path)
    obs = demos[0].observations[:10]
    np.testing.assert_array_equal(trainer.predict(obs), loaded.predict(obs))
    assert loaded.epoch == 3 and loaded.config.bc.use_sequences == use_sequences
    # resuming continues the epoch count with the restored optimiser
    loaded.learn(demos, num_epochs=5)
    assert loaded.epoch == 5 and len(loaded.history["train_loss"]) == 5


def test_bc_rejects_unknown_loss(tmp_path):
    demos = create_synthetic_dataset(2, observation_dim=2, action_dim=1, episode_length=10)
    with pytest.raises(ValueError, match="unknown loss"):
        train_behavioral_cloning(demos, config=config(tmp_path, loss="huber"), save=False)


def test_observation_noise_perturbs_training_batches_only(tmp_path, monkeypatch):
    demos = create_synthetic_dataset(8, observation_dim=4, action_dim=1, episode_length=40, seed=3)
    seen = []
    original = BehavioralCloning._loss

    def recording_loss(self, batch, forward=None, count=None):
        seen.append((self.model.training, batch.observations.clone()))
        return original(self, batch, forward, count)

    monkeypatch.setattr(BehavioralCloning, "_loss", recording_loss)
    runs = {}
    for sigma in (0.0, 0.5):
        seen.clear()
        bc = BehavioralCloning(config(tmp_path, num_epochs=1, batch_size=10_000, observation_noise=sigma), seed=0)
        bc.learn(demos)
        runs[sigma] = [obs for training, obs in seen if training], [obs for training, obs in seen if not training]
    (clean_train,), (clean_val,) = runs[0.0]
    (noisy_train,), (noisy_val,) = runs[0.5]
    torch.testing.assert_close(noisy_val, clean_val)  # validation sees the recorded observations
    # same permutation (same seed); the noise is half of each dimension's spread
    spread = torch.as_tensor(np.concatenate([t.observations for t in demos]).std(0))
    ratio = (noisy_train - clean_train).std(0) / spread
    assert torch.all((ratio > 0.3) & (ratio < 0.7)), ratio
    with pytest.raises(ValueError, match="bc.observation_noise: must be 0 or more"):
        BehavioralCloning(config(tmp_path, observation_noise=-0.1))
