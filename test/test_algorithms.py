"""The algorithm registry: every entry resolves, every list of names reads it, and a new
off-policy algorithm is one registry line (here a stand-in that reuses SAC's classes)."""

from __future__ import annotations

import numpy as np
import pytest

from robot_training import algorithms
from robot_training.algorithms import REGISTRY, Algorithm, get, names, resolve


def test_every_entry_resolves_to_its_learner_and_actor():
    for entry in REGISTRY.values():
        assert isinstance(resolve(entry.learner), type), entry.name
        if entry.actor is not None:
            assert isinstance(resolve(entry.actor), type), entry.name
    assert names(family="policy") == ["ppo", "sac"]
    assert names(deployable=False) == ["world_model"]
    with pytest.raises(ValueError, match="unknown policy algorithm 'dreamer'; one of ppo, sac"):
        get("dreamer", family="policy")
    with pytest.raises(ValueError, match="not 'robot_training"):
        resolve("os:system")  # only this package's own modules


def test_a_new_off_policy_algorithm_is_one_registry_line(monkeypatch, tmp_path):
    """With one more line (a 'td3' that is SAC underneath), the CLI accepts it, PolicyTrainer
    builds it, the loop learns with it and the deploy loader takes its checkpoints."""
    from robot_training import train
    from robot_training.interface.description import load_interface
    from robot_training.deploy import deployable_kinds, loader_for
    from robot_training.online.learner import OnlineLearner, check_algorithm, loop_algorithms
    from robot_training.policies.sac import SAC
    from robot_training.policies.train_policy import PolicyTrainer

    registry = dict(REGISTRY)
    registry["td3"] = Algorithm("td3", "policy", "sac", "robot_training.policies.sac:SAC",
                                "robot_training.policies.sac:SACPolicy")
    monkeypatch.setattr(algorithms, "REGISTRY", registry)

    assert train.build_parser().parse_args(["--mode", "policy", "--algorithm", "td3"]).algorithm == "td3"
    assert PolicyTrainer("td3", "Pendulum-v1").algorithm_class is SAC
    assert "td3" in loop_algorithms() and check_algorithm("td3") == "td3"
    assert "td3" in deployable_kinds() and loader_for("td3") is loader_for("sac")
    interface = load_interface(__import__("pathlib").Path(__file__).resolve().parents[1] / "config" /
                               "interface_inverted_pendulum.yaml")
    learner = OnlineLearner("td3", interface, tmp_path / "ds", device="cpu")
    assert learner.algo.kind == "td3" and learner.algo.prefix == "policy_td3_online"
    assert np.isfinite(learner.algo.algo.predict(np.zeros(4, np.float32))).all()
