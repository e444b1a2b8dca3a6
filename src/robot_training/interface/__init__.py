"""The interface contract: how a robot's ROS topics become a policy's observation and how its
action becomes a message, written once and used by the recorder, the dataset builder and the
policy server.

* :mod:`.description`: the interface description (YAML: topics, fields, action limits, control
  rate, reward, episodes), ``load_interface``, ``build_observation``, the fingerprint;
* :mod:`.converters`: one converter per message type (JointState, Imu, Odometry, LaserScan,
  Image, CompressedImage, PointCloud2, PoseStamped, tf pose, ...);
* :mod:`.frames`: the transform tree for poses read from ``/tf`` and ``/tf_static``;
* :mod:`.rewards`: the named reward functions an interface description may select.
"""

from robot_training.interface.description import InterfaceDescription, InterfaceError, load_interface

__all__ = ["InterfaceDescription", "InterfaceError", "load_interface"]
