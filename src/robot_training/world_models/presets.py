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

PRESETS = {
    "tiny": dict(world_model=dict(state_dim=32, hidden_dim=32, stoch_dim=4, num_classes=4, mlp_layers=1,
                                  cnn_depth=4, encoder_hidden_dim=32, encoder_layers=1),
                 dreamer=dict(hidden_dim=32, mlp_layers=1)),
    "small": dict(world_model=dict(state_dim=128, hidden_dim=128, stoch_dim=16, num_classes=16, mlp_layers=2,
                                   cnn_depth=16, encoder_hidden_dim=128, encoder_layers=2),
                  dreamer=dict(hidden_dim=128, mlp_layers=2)),
    "medium": dict(world_model=dict(state_dim=256, hidden_dim=256, stoch_dim=32, num_classes=32, mlp_layers=2,
                                    cnn_depth=32, encoder_hidden_dim=256, encoder_layers=2),
                   dreamer=dict(hidden_dim=256, mlp_layers=2)),
    "dreamerv3_s": dict(world_model=dict(state_dim=512, hidden_dim=512, stoch_dim=32, num_classes=32, mlp_layers=2,
                                         cnn_depth=32, encoder_hidden_dim=1024, encoder_layers=5),
                        dreamer=dict(hidden_dim=512, mlp_layers=2)),
}


def resolve_size(cfg: Config) -> Config:
    """``cfg`` with ``world_model.size`` applied (unchanged when it is null)."""
    name = cfg.world_model.size
    if name is None:
        return cfg
    if name not in PRESETS:
        raise ConfigError(f"world_model.size: unknown preset {name!r}; one of {sorted(PRESETS)}")
    return cfg.replace(**PRESETS[name])
