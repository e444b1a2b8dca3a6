"""Deploying trained policies: :func:`load_policy` and :class:`PolicyRunner` (plain Python;
the ROS node is :mod:`robot_training.ros.policy_server_node`)."""

from robot_training.deploy.policy import DeployedPolicy, DeployError, deployable_kinds, load_policy, loader_for
from robot_training.deploy.runner import ActorStats, ActTrigger, PolicyRunner, Tick

__all__ = ["deployable_kinds", "loader_for", "ActorStats", "ActTrigger", "DeployedPolicy", "DeployError", "load_policy", "PolicyRunner", "Tick"]
