"""The Dreamer agent: a world model plus an actor-critic, acting with an explicit carry.

``policy(carry, observation) -> (action, carry)`` is pure: the recurrent state lives in the
carry (a dict of tensors: ``deter``, ``stoch``, ``stats`` and the previous ``action``), so one
process can serve many robots, each with its own carry. ``act(observation)`` is the stateful
convenience for one robot (``reset()`` at episode start)::

    agent = DreamerAgent.from_checkpoint("dreamer_final.pt")
    agent.reset()
    action = agent.act(observation)                 # every control tick

    carry = agent.initial_carry()                   # several robots: one carry each
    action, carry = agent.policy(carry, observation)

    carry = agent.initial_carry(4)                  # or one batch of 4 (vector envs)
    actions, carry = agent.policy(carry, observations)     # (4, *obs_shape) -> (4, A)
    carry = agent.reset_carry(carry, done)          # the rows whose episode ended start fresh

Actions are returned in the environment's units (the actor works in ``[-1, 1]`` and the
bounds saved with the agent map it back).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import numpy as np
import torch

from robot_training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from robot_training.config import Config, config_from_dict
from robot_training.networks.encoders import ObservationShape, ObservationShapeError, split_observation_shape
from robot_training.reinforcement_learning.behavior import ActorCritic
from robot_training.world_models.replay import denormalize_action
from robot_training.world_models.train_world_model import ModelSpec, shape_from_plain
from robot_training.world_models.world_model import WorldModel

Carry = Dict[str, torch.Tensor]
CHECKPOINT_KIND = "dreamer"


class DreamerAgent(ModelSpec):
    def __init__(self, observation_shape: ObservationShape, action_dim: int, config: Optional[Config] = None,
                 device: Optional[str] = None, action_low=None, action_high=None):
        super().__init__(observation_shape, action_dim, config, device, action_low, action_high)
        if self.action_low is None:  # the actor's own [-1, 1]
            self.action_low = np.full(self.action_dim, -1.0, np.float32)
        if self.action_high is None:
            self.action_high = np.full(self.action_dim, 1.0, np.float32)
        self.world_model = WorldModel(self.observation_shape, self.action_dim, self.config).to(self.device)
        self.interface_fingerprint: Optional[str] = None
        """The interface description of the data it learned from (bags), kept in checkpoints."""
        self.behavior = ActorCritic(self.world_model.rssm.feature_dim, self.action_dim, self.config).to(self.device)
        self._carry: Optional[Carry] = None

    # ------------------------------------------------------------------ acting
    def initial_carry(self, batch_size: int = 1) -> Carry:
        carry = self.world_model.rssm.initial_state(batch_size, self.device)
        carry["action"] = torch.zeros(batch_size, self.action_dim, device=self.device)
        return carry

    @torch.no_grad()
    def reset_carry(self, carry: Carry, done) -> Carry:
        """``carry`` (batch ``N``) with the rows where ``done`` (``(N,)`` booleans) back at the
        initial state: the robots (envs) whose episode ended start the next one fresh, the
        others keep theirs."""
        done = torch.as_tensor(np.asarray(done, bool), device=self.device)
        initial = self.initial_carry(len(done))
        return {k: torch.where(done.view(-1, *[1] * (v.dim() - 1)), initial[k], v) for k, v in carry.items()}

    @torch.no_grad()
    def policy(self, carry: Optional[Carry], observation, deterministic: bool = True) -> Tuple[np.ndarray, Carry]:
        """One control step: update the latent state with ``observation``, choose an action.

        ``observation`` is one observation (``obs_shape`` or a dict) for a carry of batch 1, or a
        batch ``(N, *obs_shape)`` for a carry of batch ``N``. ``deterministic`` uses the
        posterior's mode and the actor's mean; otherwise both are sampled (torch's RNG).
        Returns the action in environment units (``(A,)`` or ``(N, A)``) and the new carry.
        """
        obs, batched = self._as_batch(observation)
        if carry is None:
            carry = self.initial_carry(self._batch_size(obs))
        model = self.world_model
        state = {k: carry[k] for k in ("deter", "stoch", "stats")}
        # acting stays float32 whatever the training precision: at batch 1 on a CPU, autocast's
        # casts cost more than they save (about 6.5 ms against 0.9 ms per step, measured)
        embed = model.encoder(obs)
        posterior, _ = model.rssm.observe_step(state, carry["action"], embed, deterministic=deterministic)
        dist = self.behavior.actor.distribution(model.rssm.feature(posterior))
        action = (dist.mean if deterministic else dist.sample()).clamp(-1, 1).float()
        new_carry = {k: v.float() for k, v in posterior.items()}
        new_carry["action"] = action
        env_action = denormalize_action(action.cpu().numpy(), self.action_low, self.action_high)
        return (env_action if batched else env_action[0]), new_carry

    def act(self, observation, deterministic: bool = True) -> np.ndarray:
        """Stateful :meth:`policy` for one robot: the carry is kept between calls."""
        action, self._carry = self.policy(self._carry, observation, deterministic)
        return action

    def reset(self) -> None:
        """Forget the recurrent state (call at the start of every episode)."""
        self._carry = None

    def _as_batch(self, observation) -> Tuple[Any, bool]:
        images, vectors = split_observation_shape(self.observation_shape)
        shapes = {**images, **vectors}
        obs = observation if isinstance(observation, Mapping) else {"obs": observation}
        if isinstance(self.observation_shape, Mapping) != isinstance(observation, Mapping):
            raise ObservationShapeError(f"expected an observation of shape {self.observation_shape}, "
                                        f"got a {type(observation).__name__}")
        out, batched = {}, None
        for key, shape in shapes.items():
            if key not in obs:
                raise ObservationShapeError(f"observation has no key {key!r} (expected {sorted(shapes)})")
            value = np.asarray(obs[key])
            if value.shape == shape:
                value, this_batched = value[None], False
            elif value.shape[1:] == shape:
                this_batched = True
            else:
                raise ObservationShapeError(f"observation {key!r} has shape {value.shape}, expected {shape} "
                                            f"or (N, *{shape})")
            if batched is not None and batched != this_batched:
                raise ObservationShapeError("observation mixes batched and unbatched entries")
            batched = this_batched
            dtype = torch.uint8 if len(shape) == 3 else torch.float32
            out[key] = torch.as_tensor(value, dtype=dtype, device=self.device)
        return (out if isinstance(self.observation_shape, Mapping) else out["obs"]), bool(batched)

    @staticmethod
    def _batch_size(obs) -> int:
        first = next(iter(obs.values())) if isinstance(obs, dict) else obs
        return int(first.shape[0])

    # ------------------------------------------------------------------ files
    def state_dict(self) -> Dict[str, Any]:
        return {
            "world_model": self.world_model.state_dict(),
            "behavior": self.behavior.state_dict(),
            **self.spec_state(),
        }

    def load_state_dict(self, data: Mapping[str, Any], source: str = "<state>") -> None:
        self.check_spec(data, source, "agent", "agent")
        try:
            self.world_model.load_state_dict(data["world_model"])
            self.behavior.load_state_dict(data["behavior"])
        except RuntimeError as exc:
            raise CheckpointError(f"{source}: weights do not fit this agent's sizes ({exc})") from None
        self.action_low = data["action_low"].numpy()
        self.action_high = data["action_high"].numpy()
        self.interface_fingerprint = data.get("interface_fingerprint")
        self.reset()

    def save(self, path: Union[str, os.PathLike]) -> Path:
        """Weights, shapes, action bounds and config (enough to rebuild and act)."""
        return save_checkpoint(path, CHECKPOINT_KIND, self.state_dict(), config=self.config.to_dict(),
                               interface_fingerprint=self.interface_fingerprint)

    def load(self, path: Union[str, os.PathLike]) -> None:
        """Load an agent or a full trainer checkpoint of the same sizes."""
        self.load_state_dict(load_checkpoint(path, kind=CHECKPOINT_KIND, map_location=self.device), str(path))

    @classmethod
    def from_checkpoint(cls, path: Union[str, os.PathLike], device: str = "cpu") -> "DreamerAgent":
        data = load_checkpoint(path, kind=CHECKPOINT_KIND, map_location=device)
        cfg = config_from_dict(data["config"], source=str(path))
        agent = cls(shape_from_plain(data["observation_shape"]), int(data["action_dim"]), cfg, device)
        agent.load_state_dict(data, str(path))
        return agent
