"""Scenario tests with trained models: waypoint missions on the embedded robots.

    from robot_training.scenarios import WaypointNavigator

    navigator = WaypointNavigator("uav", policy="policy_sac_final.pt")   # or a PolicyTrainer, a callable
    report = navigator.run(num_missions=50)
    print(report.summary())

The seed's ``tests.scenarios.test_waypoint`` is ``test/scenarios/test_waypoint.py`` here; it
re-exports :class:`WaypointNavigator`.
"""

from robot_training.scenarios.waypoint import MissionReport, MissionResult, WaypointNavigator, action_source

__all__ = ["MissionReport", "MissionResult", "WaypointNavigator", "action_source"]
