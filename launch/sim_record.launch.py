"""Simulated pendulum plus the recorder: one bag per episode of the interface's topics.

    ros2 launch robot_training sim_record.launch.py dataset_dir:=/data/pendulum_run1
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    config = os.path.join(get_package_share_directory('robot_training'), 'config')
    interface = LaunchConfiguration('interface_file')
    return LaunchDescription([
        DeclareLaunchArgument('dataset_dir', default_value='dataset',
                              description='folder that receives one bag per episode'),
        DeclareLaunchArgument('interface_file',
                              default_value=os.path.join(config, 'interface_inverted_pendulum.yaml'),
                              description='interface description: what the sim publishes and the recorder records'),
        Node(package='robot_training', executable='sim', name='sim', output='screen',
             parameters=[os.path.join(config, 'sim.yaml'), {'interface_file': interface}]),
        Node(package='robot_training', executable='recorder', name='recorder', output='screen',
             parameters=[os.path.join(config, 'recorder.yaml'),
                         {'interface_file': interface, 'dataset_dir': LaunchConfiguration('dataset_dir')}]),
    ])
