"""Typed configuration: dataclasses with defaults, loaded from YAML with validation.

The sections and keys of the seed's ``default_config.yaml`` (``world_model``, ``policy``,
``dreamer``, ``training``) are kept as they were; the algorithms add their own keys and the
``sac`` and ``bc`` sections. ``config/default_config.yaml`` mirrors these defaults (a test
checks that they agree). A user file overrides only the keys it sets::

    cfg = load_config("my.yaml")            # defaults, then my.yaml
    cfg = load_config(overrides={"training": {"seed": 3}})

An unknown key or a value of the wrong type raises :class:`ConfigError` naming the file and
the dotted key (``my.yaml: policy.gamma: expected float, got str 'high'``).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import yaml


class ConfigError(ValueError):
    """A configuration file or mapping that does not fit the schema."""


# --------------------------------------------------------------------------- sections


@dataclass
class WorldModelConfig:
    """RSSM world model (PlaNet / DreamerV3 style).

    ``size`` names a preset (``tiny``, ``small`` (default), ``medium``, ``dreamerv3_s``; see
    ``robot_training.world_models.presets``) that replaces the architecture keys
    (``state_dim``, ``hidden_dim``, ``stoch_dim``, ``num_classes``, ``mlp_layers``, ``cnn_depth``,
    ``encoder_*``); ``null`` uses the keys as written. Batch, sequence and optimiser keys are
    never touched by a preset.
    """

    state_dim: int = 256
    """Size of the deterministic (GRU) state."""
    action_dim: int = 4
    """Action size used when no environment or dataset says otherwise."""
    hidden_dim: int = 256
    """Width of the MLPs (decoder, heads, RSSM cells)."""
    learning_rate: float = 0.0006
    """Adam step of the world model (DreamerV3 publishes 1e-4 for its larger models and long
    budgets; 6e-4 learns the small CPU model in a few thousand updates)."""
    batch_size: int = 16
    sequence_length: int = 32
    stoch_dim: int = 32
    """Number of categorical latent variables (or Gaussian dimensions)."""
    num_classes: int = 32
    """Classes per categorical latent (ignored for ``latent: gaussian``)."""
    latent: str = "categorical"
    """``categorical`` (DreamerV3) or ``gaussian`` (PlaNet)."""
    unimix: float = 0.01
    """Uniform mix of categorical latents."""
    mlp_layers: int = 2
    cnn_depth: int = 32
    encoder_hidden_dim: Optional[int] = None
    """Width of the vector encoder and decoder MLPs (``null``: ``hidden_dim``)."""
    encoder_layers: Optional[int] = None
    """Layers of the vector encoder and decoder MLPs (``null``: ``mlp_layers``)."""
    free_bits: float = 1.0
    kl_dyn_scale: Optional[float] = None
    """Weight of KL(sg(posterior) || prior). ``null``: ``dreamer.kl_balance × kl_scale``."""
    kl_rep_scale: Optional[float] = None
    """Weight of KL(posterior || sg(prior)). ``null``: ``(1 − dreamer.kl_balance) × kl_scale``."""
    kl_scale: float = 0.6
    """Total KL weight split by ``dreamer.kl_balance`` (0.8 → 0.48 / 0.12, near DreamerV3's 0.5 / 0.1)."""
    grad_clip: float = 1000.0
    num_bins: int = 255
    """Bins of the two-hot symlog reward and value heads."""
    validation_fraction: float = 0.1
    num_epochs: int = 20
    """Epochs of ``train.py --mode world_model`` (one epoch ≈ the dataset's steps once)."""
    size: Optional[str] = "small"
    """Named size preset (see the class docstring). The default ``small`` is CPU-friendly and
    replaces the seed's 256-wide sizes; ``null`` uses the keys above as written."""
    precision: str = "auto"
    """``auto`` (bfloat16 where the CPU or GPU computes it natively, else float32), ``float32`` or
    ``bfloat16`` (autocast; about 2-4x faster updates on CPUs with AVX512-BF16/AMX and on GPUs)."""


@dataclass
class PolicyConfig:
    """Model-free policy training (PPO; shared keys also used by SAC)."""

    hidden_dim: int = 256
    ppo_clip: float = 0.2
    gamma: float = 0.99
    learning_rate: float = 0.0003
    gae_lambda: float = 0.95
    num_envs: int = 4
    """Vectorized environments collecting rollouts."""
    num_steps: int = 256
    """Steps per environment per rollout."""
    update_epochs: int = 10
    num_minibatches: int = 8
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    clip_vloss: bool = False
    """Clip the value loss like the policy loss."""
    max_grad_norm: float = 0.5
    norm_adv: bool = True
    norm_obs: bool = True
    """Running observation normalisation."""
    norm_reward: bool = False
    anneal_lr: bool = True
    target_kl: Optional[float] = None
    num_layers: int = 2


@dataclass
class SACConfig:
    """Soft Actor-Critic."""

    hidden_dim: int = 256
    num_layers: int = 2
    gamma: float = 0.99
    tau: float = 0.005
    """Polyak coefficient of the target Q networks."""
    buffer_size: int = 1_000_000
    batch_size: int = 256
    learning_starts: int = 5000
    policy_lr: float = 0.0003
    q_lr: float = 0.001
    updates_per_step: int = 1
    precision: str = "auto"
    """``auto`` (bfloat16 where the CPU or GPU computes it natively and ``hidden_dim`` is at least
    256, else float32: narrower updates are not faster in bfloat16), ``float32`` or
    ``bfloat16``: autocast of the updates; acting stays float32. bfloat16 learned as well as float32
    on Pendulum-v1, InvertedPendulum-v5 and HalfCheetah-v5 (3 seeds each, ``bench/bench_precision.py``)
    with 1.2-1.3x the env steps/s on the 2-core VM (AMX)."""
    policy_frequency: int = 2
    target_network_frequency: int = 1
    alpha: float = 0.2
    autotune: bool = True
    """Automatic temperature tuning towards ``-action_dim`` entropy."""
    num_envs: int = 1


@dataclass
class DreamerConfig:
    """Dreamer agent: behaviour learned in imagination."""

    imagine_horizon: int = 15
    discount: float = 0.99
    kl_balance: float = 0.8
    """Share of the world model's KL weight on training the prior (see ``world_model.kl_scale``)."""
    lambda_: float = 0.95
    imagine_starts: Optional[int] = None
    """Imagine from this many random posterior states of each batch (``null``: all ``B × T``).
    The behaviour part dominates an update's cost on CPUs; fewer starts make updates cheaper."""
    actor_lr: float = 0.0002
    critic_lr: float = 0.0002
    actor_entropy: float = 0.0003
    slow_critic_fraction: float = 0.02
    slow_critic_update: int = 1
    return_norm_percentiles: tuple[float, float] = (5.0, 95.0)
    return_norm_decay: float = 0.99
    train_ratio: float = 64.0
    """Replayed steps trained on per environment step (online): an update replays
    ``batch_size × sequence_length`` steps, so 64 at 16 × 32 is one update every 8 env steps."""
    prefill_steps: int = 1000
    hidden_dim: int = 256
    mlp_layers: int = 2
    compile: bool = False
    """torch.compile the whole update. Off: on the 2-core CPU of the benchmarks compiling the
    small model had not finished after 10 minutes, so no gain was measured there."""
    actor_gradient: str = "dynamics"
    """``dynamics`` (backpropagate returns through the world model) or ``reinforce``."""
    actor_grad_clip: float = 100.0
    critic_grad_clip: float = 100.0
    replay_capacity: int = 1000000
    """Environment steps kept in the online replay."""
    eval_every: int = 5000
    """Environment steps between evaluations (online)."""
    offline_updates: int = 200
    """Updates of ``train.py --mode dreamer`` on a dataset when no ``--total-timesteps`` is given."""
    num_envs: int = 1
    """Environments stepped together (a Gymnasium ``SyncVectorEnv``) when collecting online, each
    with its own replay stream; ``train_ratio`` still counts every env step."""

    def __post_init__(self):
        self.validate()

    def validate(self, source: str = "<DreamerConfig>", prefix: str = "dreamer.") -> None:
        """Raise :class:`ConfigError` for a value out of its range (types are checked on loading)."""
        if self.num_envs < 1:
            raise ConfigError(f"{source}: {prefix}num_envs: must be at least 1, got {self.num_envs}")


@dataclass
class BCConfig:
    """Behavioral cloning."""

    hidden_dim: int = 256
    num_layers: int = 2
    learning_rate: float = 0.001
    batch_size: int = 256
    num_epochs: int = 300
    loss: str = "mse"
    """``mse`` on actions or ``gaussian`` negative log-likelihood."""
    use_sequences: bool = False
    sequence_length: int = 32
    lstm_hidden: int = 256
    validation_fraction: float = 0.1
    weight_decay: float = 0.0
    observation_noise: float = 0.0
    """Standard deviation of Gaussian noise added to the training batches' observations, as a
    fraction of each observation dimension's spread over the demonstrations (0: none). Validation
    and acting see clean observations."""


@dataclass
class OnlineConfig:
    """The learning loop (``train --mode online``, the ``learner`` of ``train_dreamer.launch.py``):
    a learner that trains on the episodes a robot records while it acts."""

    algorithm: str = "dreamer"
    """``dreamer`` or ``sac`` (PPO is on-policy and cannot learn from recorded episodes)."""
    learning_starts: int = 1000
    """Recorded env steps before the first update; the actor acts randomly until the first
    checkpoint exists."""
    updates_per_step: Optional[float] = None
    """Most updates per recorded env step (the learner trains continuously below it).
    ``null``: ``dreamer.train_ratio / (batch_size × sequence_length)`` for Dreamer,
    ``2 × sac.updates_per_step`` for SAC (on a real-time robot env steps, not compute, are
    scarce: SAC reached 1000 on InvertedPendulum in 7k steps at 2 updates per step, 11k at 1)."""
    checkpoint_every: Optional[int] = None
    """Updates between the checkpoints the actor hot-reloads (``null``: 25 Dreamer, 250 SAC)."""
    keep_checkpoints: int = 5
    """Loop checkpoints kept on disk (older ones are deleted)."""
    poll_period_s: float = 0.5
    """How often the dataset folder is looked at for finished episodes."""
    cpu_policy: str = "normal"
    """``normal``: ordinary priority (the trainer node's ``nice`` applies); ``idle``: the training
    thread runs under Linux ``SCHED_IDLE``, so the robot's control loop takes a core from it
    the moment it wakes, but so does any other process, even at nice 19 (a learner beside a
    compile gets almost nothing). On the 2-core VM it made no difference to the actor beyond the
    run-to-run noise (``bench/bench_actor_latency.py``), hence not the default."""


@dataclass
class TrainingConfig:
    """Run-level settings shared by every mode."""

    num_iterations: int = 1000
    steps_per_iteration: int = 2048
    total_timesteps: Optional[int] = None
    """Environment-step budget; overrides ``num_iterations * steps_per_iteration``."""
    env: str = "InvertedPendulum-v5"
    """Gymnasium id; the default is an embedded MuJoCo task."""
    device: str = "auto"
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    seed: int = 0
    log_dir: str = "runs"
    checkpoint_dir: str = "."
    """Root of the seed's layout: ``<checkpoint_dir>/policies/checkpoints/<algorithm>/``."""
    checkpoint_every: int = 10000
    """Environment steps (or updates, offline) between checkpoints."""
    eval_episodes: int = 10
    tensorboard: bool = True
    progress_bar: bool = True
    torch_threads: int = 1
    """CPU threads for PyTorch. 1 is fastest for the small networks of RL on a busy CPU
    (several threads spin-wait on every tiny op); 0 leaves PyTorch's default."""


@dataclass
class Config:
    world_model: WorldModelConfig = field(default_factory=WorldModelConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    dreamer: DreamerConfig = field(default_factory=DreamerConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    sac: SACConfig = field(default_factory=SACConfig)
    bc: BCConfig = field(default_factory=BCConfig)
    online: OnlineConfig = field(default_factory=OnlineConfig)

    def to_dict(self) -> dict:
        """Plain nested dict (safe to store in a ``weights_only`` checkpoint)."""
        return _to_plain(self)

    def replace(self, **sections: Mapping[str, Any]) -> "Config":
        """A copy with some keys changed: ``cfg.replace(training={"seed": 1})``."""
        return apply_overrides(self, sections, source="<replace>")


# --------------------------------------------------------------------------- loading


def shipped_path(*parts: str) -> Path:
    """A file the package ships (``shipped_path("config", "interface_ugv.yaml")``): from the
    source tree when run from it, else from the installed share/robot_training."""
    source = Path(__file__).resolve().parents[2].joinpath(*parts)  # <repo>/src/robot_training → <repo>
    if source.exists():
        return source
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("robot_training")).joinpath(*parts)
    except Exception:  # noqa: BLE001 - not installed through ament
        return source


def default_config_path() -> Path:
    """The shipped ``config/default_config.yaml`` (source tree or installed share)."""
    return shipped_path("config", "default_config.yaml")


def presets_dir() -> Path:
    """The shipped ``config/presets/`` (named configurations: ``train --preset NAME``)."""
    return default_config_path().parent / "presets"


def preset_names() -> list:
    d = presets_dir()
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def preset_path(name: str) -> Path:
    """The file of the named preset; a name that is not shipped is a :class:`ConfigError`."""
    if name not in preset_names():
        raise ConfigError(f"unknown preset {name!r}; shipped presets: {', '.join(preset_names()) or 'none'} "
                          f"(in {presets_dir()})")
    return presets_dir() / f"{name}.yaml"


def load_config(
    path: Union[str, os.PathLike, None] = None,
    overrides: Optional[Mapping[str, Any]] = None,
    preset: Optional[str] = None,
) -> Config:
    """Defaults, then the named ``preset``, then the YAML file at ``path`` (only the keys it
    sets), then ``overrides``."""
    cfg = Config()
    if preset:
        p = preset_path(preset)
        cfg = apply_overrides(cfg, read_yaml(p), source=str(p))
    if path is not None:
        cfg = apply_overrides(cfg, read_yaml(path), source=str(path))
    if overrides:
        cfg = apply_overrides(cfg, overrides, source="<overrides>")
    return cfg


def parse_yaml_file(path: Union[str, os.PathLike], what: str = "config file",
                    error: type = ConfigError) -> Any:
    """The parsed content of a YAML file; ``error`` names a missing file or invalid YAML."""
    p = Path(path)
    if not p.is_file():
        raise error(f"{p}: {what} not found")
    try:
        return yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise error(f"{p}: not valid YAML: {exc}") from None


def read_yaml(path: Union[str, os.PathLike]) -> Mapping[str, Any]:
    p = Path(path)
    data = parse_yaml_file(p)
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{p}: top level must be a mapping of sections, got {type(data).__name__}")
    return data


def apply_overrides(obj: Any, data: Mapping[str, Any], source: str, prefix: str = "") -> Any:
    """Return a copy of dataclass ``obj`` with the keys of ``data`` set, type-checked."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or '<top>'}: expected a mapping, got {type(data).__name__}")
    obj = copy.deepcopy(obj)
    fields = {f.name: f for f in dataclasses.fields(obj)}
    hints = typing.get_type_hints(type(obj))
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        name = key
        if name not in fields and f"{name}_" in fields:  # reserved words: lambda -> lambda_
            name = f"{name}_"
        if name not in fields:
            known = ", ".join(sorted(f.rstrip("_") for f in fields))
            raise ConfigError(f"{source}: unknown key '{dotted}' (known keys here: {known})")
        current = getattr(obj, name)
        if dataclasses.is_dataclass(current):
            setattr(obj, name, apply_overrides(current, value, source, prefix=f"{dotted}."))
        else:
            setattr(obj, name, _coerce(value, hints[name], source, dotted))
    if hasattr(obj, "validate"):  # a section with range checks
        obj.validate(source, prefix)
    return obj


def _coerce(value: Any, hint: Any, source: str, dotted: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, source, dotted)
            except ConfigError as exc:
                errors.append(str(exc))
        raise errors[0] if len(errors) == 1 else ConfigError(
            f"{source}: {dotted}: expected {_type_name(hint)}, got {type(value).__name__} {value!r}"
        )
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif hint is tuple or origin is tuple or hint is list or origin is list:
        if isinstance(value, (list, tuple)):
            item = args[0] if args else None
            items = [
                _coerce(v, item, source, f"{dotted}[{i}]") if item not in (None, Ellipsis) else v
                for i, v in enumerate(value)
            ]
            return tuple(items) if (hint is tuple or origin is tuple) else items
    elif hint is Any:
        return value
    raise ConfigError(f"{source}: {dotted}: expected {_type_name(hint)}, got {type(value).__name__} {value!r}")


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    return obj


def config_from_dict(data: Mapping[str, Any], source: str = "<checkpoint>") -> Config:
    """Rebuild a :class:`Config` from :meth:`Config.to_dict` output (e.g. from a checkpoint)."""
    return apply_overrides(Config(), data, source=source)


def resolve_device(name: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; a CUDA device that is absent is an error."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"training.device: '{name}' requested but CUDA is not available on this machine")
    if name != "cpu" and not name.startswith("cuda") and name != "mps":
        raise ConfigError(f"training.device: unknown device '{name}' (use auto, cpu, cuda or cuda:N)")
    return name
