"""Simulated pendulum, an actor and the recorder: one bag per episode that a trainer can use.

    ros2 launch robot_training sim_record.launch.py dataset_dir:=/data/pendulum_run1
    ros2 launch robot_training sim_record.launch.py dataset_dir:=/data/expert checkpoint:=policy_ppo_final.pt

The actor (policy_server) sends uniform random actions, or acts with ``checkpoint`` (sampling
its actions with ``deterministic:=false``). Everything runs on the simulator's clock, so the
recorded observations, commands, rewards and episode events line up for
``train --data <dataset_dir>``.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    config = os.path.join(get_package_share_directory('robot_training'), 'config')
    interface = LaunchConfiguration('interface_file')
    return LaunchDescription([
        DeclareLaunchArgument('dataset_dir', default_value='dataset',
                              description='folder that receives one bag per episode'),
        DeclareLaunchArgument('interface_file',
                              default_value=os.path.join(config, 'interface_inverted_pendulum.yaml'),
                              description='interface description: what the sim publishes and the recorder records'),
        DeclareLaunchArgument('checkpoint', default_value='',
                              description='policy that acts (empty: uniform random actions)'),
        DeclareLaunchArgument('deterministic', default_value='false',
                              description='with a checkpoint: its mean action (true) or samples (false)'),
        Node(package='robot_training', executable='sim', name='sim', output='screen',
             parameters=[os.path.join(config, 'sim.yaml'), {'interface_file': interface,
                                                             # actor and recorder listen before episode 0,
                                                             # which steps once the actor answers
                                                             'wait_for_subscribers': 2, 'wait_for_command': True}]),
        Node(package='robot_training', executable='policy_server', name='policy_server', output='screen',
             parameters=[os.path.join(config, 'policy_server.yaml'),
                         {'interface_file': interface, 'checkpoint': LaunchConfiguration('checkpoint'),
                          'random_until_loaded': True, 'use_sim_time': True,
                          'deterministic': ParameterValue(LaunchConfiguration('deterministic'), value_type=bool)}]),
        Node(package='robot_training', executable='recorder', name='recorder', output='screen',
             parameters=[os.path.join(config, 'recorder.yaml'),
                         {'interface_file': interface, 'dataset_dir': LaunchConfiguration('dataset_dir'),
                          'use_sim_time': True}]),
    ])
