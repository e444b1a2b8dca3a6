"""A trained policy on the simulated pendulum (use_sim:=true) or on a robot (use_sim:=false).

    ros2 launch robot_training deploy_policy.launch.py checkpoint:=/path/policy_ppo_final.pt
    ros2 launch robot_training deploy_policy.launch.py checkpoint:=... use_sim:=false interface_file:=robot.yaml
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    config = os.path.join(get_package_share_directory('robot_training'), 'config')
    interface = LaunchConfiguration('interface_file')
    use_sim = LaunchConfiguration('use_sim')
    return LaunchDescription([
        DeclareLaunchArgument('checkpoint', description='checkpoint to deploy (ppo, sac, bc or dreamer)'),
        DeclareLaunchArgument('use_sim', default_value='true',
                              description='start the simulator node and run the policy on its /clock'),
        DeclareLaunchArgument('interface_file',
                              default_value=os.path.join(config, 'interface_inverted_pendulum.yaml'),
                              description='the interface the policy was trained with'),
        Node(package='robot_training', executable='sim', name='sim', output='screen',
             parameters=[os.path.join(config, 'sim.yaml'), {'interface_file': interface}],
             condition=IfCondition(use_sim)),
        Node(package='robot_training', executable='policy_server', name='policy_server', output='screen',
             parameters=[os.path.join(config, 'policy_server.yaml'),
                         {'checkpoint': LaunchConfiguration('checkpoint'), 'interface_file': interface,
                          'use_sim_time': ParameterValue(use_sim, value_type=bool)}]),
    ])
