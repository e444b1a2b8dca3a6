"""The model-free learning loop: train_dreamer.launch.py with algorithm:=sac by default.

    ros2 launch robot_training train_policy.launch.py                    # SAC on the embedded pendulum
    ros2 launch robot_training train_policy.launch.py use_sim:=false interface_file:=robot.yaml

PPO is on-policy (it needs rollouts of the policy being updated, not recorded episodes of
earlier ones): algorithm:=ppo is refused by the learner with one line saying so.
Every argument of train_dreamer.launch.py applies.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration


def generate_launch_description():
    loop = os.path.join(get_package_share_directory('robot_training'), 'launch', 'train_dreamer.launch.py')
    return LaunchDescription([
        DeclareLaunchArgument('algorithm', default_value='sac', description='the learner: sac or dreamer'),
        IncludeLaunchDescription(PythonLaunchDescriptionSource(loop),
                                 launch_arguments={'algorithm': LaunchConfiguration('algorithm')}.items()),
    ])
