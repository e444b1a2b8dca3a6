"""The ugv robot in Gazebo (gz sim) instead of the embedded simulator, behind the same interface.

    ros2 launch robot_training gazebo_ugv.launch.py
    ros2 launch robot_training gazebo_ugv.launch.py policy:=true checkpoint:=/path/policy_bc_final.pt
    ros2 launch robot_training gazebo_ugv.launch.py gz_flags:='-r -s --headless-rendering'   # no GUI

For a system ROS 2 (Jazzy or Kilted) with Gazebo and ros_gz (ros_gz_sim, ros_gz_bridge) and
tf2_ros installed; none of them is a dependency in package.xml. It starts ``gz sim`` with
gazebo/worlds/ugv_arena.sdf, the ros_gz_bridge parameter_bridge with config/gz_bridge_ugv.yaml
(/clock, /scan, /odom, /imu and /tf from Gazebo, /cmd_vel to it, with the names and types of
config/interface_ugv.yaml), the static base_link -> base_scan transform, and with
``policy:=true`` the policy server on config/interface_ugv.yaml and the simulation clock
(``checkpoint`` empty: uniform random actions; stale observations stop the robot).

What Gazebo does not provide:

* /goal_pose: the interface observes the next waypoint in base_link, and nothing here
  publishes it. A waypoint navigator must publish it (another node of this suite, being
  written), at least as often as the observations must be fresh (max_staleness_s 0.25 s);
  until then the policy server sees stale observations and only sends the stop command.
* /reward and /episode_event: Gazebo computes no reward of this interface's task. Recording
  for behaviour cloning works (``ros2 run robot_training recorder --ros-args -p
  interface_file:=<share>/config/interface_ugv.yaml -p use_sim_time:=true``, while a person or
  a controller drives); reinforcement learning needs a node that publishes the task's reward
  on /reward (a ``reward: {function: ...}`` in the interface would be another interface, with
  another fingerprint).

These files are checked statically only (test/test_gazebo_files.py): the CI machines have no
Gazebo.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

SHARE = get_package_share_directory('robot_training')
CONFIG = os.path.join(SHARE, 'config')
WORLD = os.path.join(SHARE, 'gazebo', 'worlds', 'ugv_arena.sdf')

# The lidar's pose on base_link in ugv_arena.sdf (link base_scan).
SCAN_OFFSET_Z = '0.12'


def generate_launch_description():
    policy = LaunchConfiguration('policy')
    return LaunchDescription([
        DeclareLaunchArgument('world', default_value=WORLD, description='the SDF world gz sim loads'),
        DeclareLaunchArgument('gz_flags', default_value='-r',
                              description="gz sim options before the world: '-r' starts the simulation at "
                                          "once; '-r -s --headless-rendering' runs without a GUI"),
        DeclareLaunchArgument('policy', default_value='false',
                              description='true: start the policy server on the ugv interface'),
        DeclareLaunchArgument('checkpoint', default_value='',
                              description='with policy:=true, the policy that acts (empty: uniform random actions)'),
        DeclareLaunchArgument('deterministic', default_value='true',
                              description='with a checkpoint: its mean action (true) or samples (false)'),
        # Resolved when launched, so that the description builds without ros_gz_sim.
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(PathJoinSubstitution(
                [FindPackageShare('ros_gz_sim'), 'launch', 'gz_sim.launch.py'])),
            launch_arguments={'gz_args': [LaunchConfiguration('gz_flags'), ' ', LaunchConfiguration('world')],
                              'on_exit_shutdown': 'true'}.items()),
        Node(package='ros_gz_bridge', executable='parameter_bridge', name='gz_bridge', output='screen',
             parameters=[{'config_file': os.path.join(CONFIG, 'gz_bridge_ugv.yaml'), 'use_sim_time': True}]),
        Node(package='tf2_ros', executable='static_transform_publisher', name='base_scan_tf', output='screen',
             arguments=['--z', SCAN_OFFSET_Z, '--frame-id', 'base_link', '--child-frame-id', 'base_scan'],
             parameters=[{'use_sim_time': True}]),
        Node(package='robot_training', executable='policy_server', name='policy_server', output='screen',
             parameters=[os.path.join(CONFIG, 'policy_server.yaml'),
                         {'interface_file': os.path.join(CONFIG, 'interface_ugv.yaml'),
                          'checkpoint': LaunchConfiguration('checkpoint'),
                          'deterministic': ParameterValue(LaunchConfiguration('deterministic'), value_type=bool),
                          'random_until_loaded': True, 'use_sim_time': True,
                          # act on each scan (10 Hz, the control rate); /goal_pose may come less regularly
                          'trigger_topic': '/scan',
                          # Gazebo's DiffDrive keeps the last command: stop when observations are stale
                          'use_safe_action': True, 'safe_action': [0.0, 0.0]}],
             condition=IfCondition(policy)),
    ])
