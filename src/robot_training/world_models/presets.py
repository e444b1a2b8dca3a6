"""Named size presets for the world model and the agent (``world_model.size``).

A preset replaces the architecture keys; everything else (batch, sequence length, learning
rates, loss scales) stays as configured.

=============  =====  ======  ==========  =========  =========================  ==========
preset         deter  hidden  latents     cnn depth  vector encoder / decoder   actor/critic
=============  =====  ======  ==========  =========  =========================  ==========
tiny           32     32      4 × 4       4          1 × 32                     1 × 32
small          128    128     16 × 16     16         2 × 128                    2 × 128
medium         256    256     32 × 32     32         2 × 256                    2 × 256
dreamerv3_s    512    512     32 × 32     32         5 × 1024                   2 × 512
=============  =====  ======  ==========  =========  =========================  ==========

``dreamerv3_s`` is the configuration of NM512/dreamerv3-torch's ``dmc_proprio`` /
``dmc_vision`` (used by ``bench/bench_dreamer.py`` to compare update costs).
"""

from __future__ import annotations

from robot_training.config import Config, ConfigError


def _preset(width: int, latents: int, cnn_depth: int, encoder_layers: int, encoder_width: int,
            mlp_layers: int) -> dict:
    """One row of the table above: ``width`` is deter, hidden and actor/critic width,
    ``latents`` both the number of latent variables and their classes."""
    return dict(world_model=dict(state_dim=width, hidden_dim=width, stoch_dim=latents, num_classes=latents,
                                 mlp_layers=mlp_layers, cnn_depth=cnn_depth, encoder_hidden_dim=encoder_width,
                                 encoder_layers=encoder_layers),
                dreamer=dict(hidden_dim=width, mlp_layers=mlp_layers))


PRESETS = {  # width, latents, cnn depth, encoder layers x width, mlp layers
    "tiny": _preset(32, 4, 4, 1, 32, 1),
    "small": _preset(128, 16, 16, 2, 128, 2),
    "medium": _preset(256, 32, 32, 2, 256, 2),
    "dreamerv3_s": _preset(512, 32, 32, 5, 1024, 2),
}


def resolve_size(cfg: Config) -> Config:
    """``cfg`` with ``world_model.size`` applied (unchanged when it is null)."""
    name = cfg.world_model.size
    if name is None:
        return cfg
    if name not in PRESETS:
        raise ConfigError(f"world_model.size: unknown preset {name!r}; one of {sorted(PRESETS)}")
    return cfg.replace(**PRESETS[name])
