"""Train Dreamer with the trainer node; progress on /trainer/progress, checkpoints on /trainer/checkpoints.

    ros2 launch robot_training train_dreamer.launch.py env:=InvertedPendulum-v5 total_timesteps:=20000
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

# launch argument: (default, description); each is forwarded as the trainer parameter of that name
ARGUMENTS = {
    'env': ('InvertedPendulum-v5', 'Gymnasium id (online training)'),
    'config': ('', 'YAML overriding config/default_config.yaml'),
    'total_timesteps': ('0', 'environment-step budget (0: the config value)'),
    'data': ('', 'bags or a trajectory file for offline training'),
    'interface': ('', 'interface description for --data bags'),
    'checkpoint_dir': ('', 'root of the checkpoint layout (empty: training.checkpoint_dir)'),
    'seed': ('-1', 'seed (-1: the config value)'),
    'exit_when_done': ('true', 'the trainer exits after the final status'),
}
TYPES = {'total_timesteps': int, 'seed': int, 'exit_when_done': bool}


def generate_launch_description():
    params = {'mode': 'dreamer'}
    for name in ARGUMENTS:
        params[name] = ParameterValue(LaunchConfiguration(name), value_type=TYPES.get(name, str))
    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value=default, description=text)
          for name, (default, text) in ARGUMENTS.items()),
        Node(package='robot_training', executable='trainer', name='trainer', output='screen',
             parameters=[params]),
    ])
