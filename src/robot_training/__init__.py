"""robot_training: train world models, policies and RL agents from robot data, and deploy them.

Only ``robot_training.ros`` imports rclpy; everything else is plain Python.
"""

__version__ = "0.1.0"
