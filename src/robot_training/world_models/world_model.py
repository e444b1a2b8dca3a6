"""The world model: encoder, RSSM, decoder, reward and continue heads, and their losses.

A training batch is a dict of ``(B, T, ...)`` tensors in *replay order* (see
:mod:`robot_training.world_models.replay`)::

    observation   (B, T, *obs_shape) or {key: (B, T, ...)}   o_t
    action        (B, T, A)     a_{t-1}, the action that led to o_t (zeros at episode starts)
    reward        (B, T)        r_{t-1}, received on arriving at o_t
    is_first      (B, T) bool   o_t starts an episode (the state is reset there)
    is_terminal   (B, T) bool   o_t is terminal (nothing follows it)

:meth:`WorldModel.loss` returns ``(total, losses, posterior, metrics)`` where ``losses`` holds
per-step tensors under the same keys as :attr:`WorldModel.loss_scales`:
``decoder``, ``reward``, ``continue``, ``dyn``, ``rep``.

KL balancing: ``dyn`` = KL(sg(q) ‖ p) trains the prior, ``rep`` = KL(q ‖ sg(p)) trains the
representation; both are clipped below at ``free_bits``. Their weights come from
``world_model.kl_dyn_scale`` / ``kl_rep_scale`` when set, otherwise from the seed's
``dreamer.kl_balance`` α and ``world_model.kl_scale`` w: ``dyn = α·w``, ``rep = (1 − α)·w``
(the DreamerV2 balance; α = 0.8, w = 0.6 gives 0.48 / 0.12, close to DreamerV3's 0.5 / 0.1).
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch
from torch import nn

from robot_training.config import Config
from robot_training.networks.encoders import MultiDecoder, MultiEncoder, ObservationShape
from robot_training.networks.heads import BernoulliHead, TwoHotHead
from robot_training.world_models.rssm import RSSM, State


def kl_scales(cfg: Config) -> Tuple[float, float]:
    """``(dyn_scale, rep_scale)`` (see the module docstring)."""
    wm = cfg.world_model
    balance = cfg.dreamer.kl_balance
    dyn = wm.kl_dyn_scale if wm.kl_dyn_scale is not None else balance * wm.kl_scale
    rep = wm.kl_rep_scale if wm.kl_rep_scale is not None else (1 - balance) * wm.kl_scale
    return float(dyn), float(rep)


class WorldModel(nn.Module):
    def __init__(self, observation_shape: ObservationShape, action_dim: int, cfg: Config):
        super().__init__()
        wm = cfg.world_model
        enc_dim = wm.encoder_hidden_dim or wm.hidden_dim
        enc_layers = wm.encoder_layers if wm.encoder_layers is not None else wm.mlp_layers
        self.observation_shape = observation_shape
        self.action_dim = action_dim
        self.encoder = MultiEncoder(observation_shape, wm.cnn_depth, enc_dim, enc_layers)
        self.rssm = RSSM(action_dim, self.encoder.out_dim, wm.state_dim, wm.hidden_dim, wm.stoch_dim,
                         wm.num_classes, wm.latent, wm.unimix)
        feature_dim = self.rssm.feature_dim
        self.decoder = MultiDecoder(feature_dim, observation_shape, wm.cnn_depth, enc_dim, enc_layers)
        self.reward_head = TwoHotHead(feature_dim, wm.hidden_dim, wm.mlp_layers, wm.num_bins)
        self.continue_head = BernoulliHead(feature_dim, wm.hidden_dim, wm.mlp_layers)
        dyn, rep = kl_scales(cfg)
        self.loss_scales = {"decoder": 1.0, "reward": 1.0, "continue": 1.0, "dyn": dyn, "rep": rep}
        self.free_bits = wm.free_bits

    def loss(self, batch: Dict[str, torch.Tensor], state: State = None
             ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], State, Dict[str, torch.Tensor]]:
        embed = self.encoder(batch["observation"])
        posterior, prior = self.rssm.observe(embed, batch["action"], batch["is_first"], state)
        feature = self.rssm.feature(posterior)
        dyn, rep, kl_value = self.rssm.kl(posterior, prior, self.free_bits)
        losses = {
            "decoder": self.decoder.loss(self.decoder(feature), batch["observation"]),
            "reward": self.reward_head.loss(self.reward_head(feature).float(), batch["reward"]),
            "continue": self.continue_head.loss(self.continue_head(feature).float(),
                                                1.0 - batch["is_terminal"].float()),
            "dyn": dyn,
            "rep": rep,
        }
        total = sum(self.loss_scales[k] * v.float().mean() for k, v in losses.items())
        metrics = {"kl": kl_value.mean(), "posterior_entropy": self.rssm.entropy(posterior).mean().detach(),
                   "prior_entropy": self.rssm.entropy(prior).mean().detach()}
        return total, losses, posterior, metrics

    @torch.no_grad()
    def open_loop(self, batch: Dict[str, torch.Tensor], context: int) -> Dict[str, object]:
        """Observe ``batch`` for ``context`` steps, then imagine the rest under its actions.

        Returns ``{"observation": reconstructions (B, T, ...) (posterior for the context, prior
        after it), "reward": (B, T), "continue": (B, T) probabilities}`` in observation space.
        """
        length = batch["action"].shape[1]
        if not 0 < context < length:
            raise ValueError(f"context must be between 1 and {length - 1}, got {context}")
        observed = {k: _time_slice(v, 0, context) for k, v in batch.items()}
        embed = self.encoder(observed["observation"])
        posterior, _ = self.rssm.observe(embed, observed["action"], observed["is_first"])
        last = {k: v[:, -1] for k, v in posterior.items()}
        imagined = self.rssm.imagine(last, batch["action"][:, context:])
        states = {k: torch.cat([posterior[k], imagined[k]], 1) for k in posterior}
        feature = self.rssm.feature(states)
        return {
            "observation": self.decoder.to_observation(self.decoder(feature)),
            "reward": self.reward_head.mean(self.reward_head(feature).float()),
            "continue": torch.sigmoid(self.continue_head(feature).float()),
        }


def _time_slice(value, start: int, stop: int):
    if isinstance(value, dict):
        return {k: v[:, start:stop] for k, v in value.items()}
    return value[:, start:stop]
