"""The algorithms of the suite, one line each: every list of algorithm names reads this.

::

    from robot_training.algorithms import REGISTRY, names, resolve

    names(family="policy")                      # ['ppo', 'sac']: train --mode policy, PolicyTrainer
    resolve(REGISTRY["sac"].actor)              # SACPolicy: what the deploy loader builds

An entry names its learner and its deployable actor by ``"module:attribute"`` inside this
package (looked up on use, so importing the registry imports no learner and no PyTorch). The
strings are this file's own: nothing here resolves a name that came from a message, a bag or
a config file. Adding an off-policy algorithm is its module (learner + ``<Name>Policy``), its
config section and one line here; ``train --algorithm``, ``PolicyTrainer`` and
``deploy.load_policy`` pick it up.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, List, Optional


@dataclass(frozen=True)
class Algorithm:
    name: str
    """``train --algorithm``, the checkpoint's ``kind``, the file names' ``policy_<name>_...``."""
    family: str
    """``policy`` (model-free RL, ``PolicyTrainer``), ``supervised``, ``world_model``, ``dreamer``."""
    config_section: str
    """The ``Config`` attribute that holds its hyperparameters."""
    learner: str
    """``"module:attribute"`` of the class that trains it."""
    actor: Optional[str] = None
    """``"module:attribute"`` of what acting needs (None: nothing to deploy, e.g. a world model)."""
    on_policy: bool = False
    """Needs rollouts of the policy being updated (cannot learn from recorded episodes)."""


REGISTRY = {a.name: a for a in (
    Algorithm("ppo", "policy", "policy", "robot_training.policies.ppo:PPO", "robot_training.policies.ppo:PPOPolicy",
              on_policy=True),
    Algorithm("sac", "policy", "sac", "robot_training.policies.sac:SAC", "robot_training.policies.sac:SACPolicy"),
    Algorithm("bc", "supervised", "bc", "robot_training.supervised_learning.bc:BehavioralCloning",
              "robot_training.supervised_learning.bc:BehavioralCloning"),
    Algorithm("world_model", "world_model", "world_model",
              "robot_training.world_models.train_world_model:WorldModelTrainer"),
    Algorithm("dreamer", "dreamer", "dreamer", "robot_training.reinforcement_learning.train_dreamer:DreamerTrainer",
              "robot_training.reinforcement_learning.dreamer:DreamerAgent"),
)}


def names(family: Optional[str] = None, deployable: Optional[bool] = None) -> List[str]:
    """Algorithm names, in registry order, optionally of one family / with an actor or not."""
    return [a.name for a in REGISTRY.values()
            if (family is None or a.family == family) and (deployable is None or (a.actor is not None) == deployable)]


def get(name: str, family: Optional[str] = None) -> Algorithm:
    """The entry for ``name``; ``ValueError`` naming the choices when there is none (of ``family``)."""
    entry = REGISTRY.get(name)
    if entry is None or (family is not None and entry.family != family):
        what = f"{family} algorithm" if family else "algorithm"
        raise ValueError(f"unknown {what} {name!r}; one of {', '.join(names(family))}")
    return entry


def resolve(target: str) -> Any:
    """``"robot_training.x.y:Attr"`` → the attribute (only modules of this package)."""
    module, _, attribute = target.partition(":")
    if not module.startswith("robot_training.") or not attribute:
        raise ValueError(f"registry target {target!r} is not 'robot_training.<module>:<attribute>'")
    return getattr(importlib.import_module(module), attribute)


__all__ = ["Algorithm", "REGISTRY", "get", "names", "resolve"]
