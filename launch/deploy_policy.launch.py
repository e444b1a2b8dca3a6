"""A trained policy on the simulated pendulum (use_sim:=true) or on a robot (use_sim:=false).

    ros2 launch robot_training deploy_policy.launch.py checkpoint:=/path/policy_ppo_final.pt
    ros2 launch robot_training deploy_policy.launch.py checkpoint:=... use_sim:=false interface_file:=robot.yaml

The policy server answers every observation (act_on:=observation, on wall or simulation time
alike); act_on:=timer acts at the interface's rate instead. The launch ends when the policy
server ends (e.g. a checkpoint it refuses): the simulator exists for it.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler
from launch.conditions import IfCondition
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    config = os.path.join(get_package_share_directory('robot_training'), 'config')
    interface = LaunchConfiguration('interface_file')
    use_sim = LaunchConfiguration('use_sim')
    server = Node(package='robot_training', executable='policy_server', name='policy_server', output='screen',
                  parameters=[os.path.join(config, 'policy_server.yaml'),
                              {'checkpoint': LaunchConfiguration('checkpoint'), 'interface_file': interface,
                               'act_on': LaunchConfiguration('act_on'),
                               'use_sim_time': ParameterValue(use_sim, value_type=bool)}])
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
        DeclareLaunchArgument('act_on', default_value='observation',
                              description="'observation' (answer each observation) or 'timer' (control rate)"),
        server,
        RegisterEventHandler(OnProcessExit(target_action=server, on_exit=[
            EmitEvent(event=Shutdown(reason='the policy server ended'))])),
    ])
