"""The robot learns while it acts: robot (embedded simulator or yours), actor, recorder, learner.

    ros2 launch robot_training train_dreamer.launch.py                       # embedded pendulum, Dreamer
    ros2 launch robot_training train_dreamer.launch.py use_sim:=false interface_file:=robot.yaml
    ros2 launch robot_training train_dreamer.launch.py data:=bags/ interface:=robot.yaml   # offline, from bags

The actor (policy_server) acts at the control rate, random until the learner's first
checkpoint, then with each checkpoint the learner announces on /learner/checkpoints (verified
and hot-reloaded); the recorder writes one bag per episode into <loop_dir>/dataset; the learner
(trainer, mode online) trains on every finished episode and resumes after a restart. Node
parameters: config/online_loop.yaml (the same file the pip-only online_loop script reads).
With data:= set, only the trainer runs, offline on those bags (train --mode dreamer --data).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import (AndSubstitution, EqualsSubstitution, LaunchConfiguration,
                                  NotEqualsSubstitution, PathJoinSubstitution)
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

CONFIG = os.path.join(get_package_share_directory('robot_training'), 'config')

# launch argument: (default, description)
ARGUMENTS = {
    'algorithm': ('dreamer', 'the learner: dreamer or sac (ppo is on-policy and refused)'),
    'use_sim': ('true', 'true: the embedded simulated robot; false: your robot (set interface_file)'),
    'interface_file': (os.path.join(CONFIG, 'interface_inverted_pendulum.yaml'),
                       "the robot's interface description (topics, conversions, limits, rate)"),
    'loop_dir': ('loop', 'the run: <loop_dir>/dataset (bags), checkpoints and <loop_dir>/runs (TensorBoard)'),
    'params_file': (os.path.join(CONFIG, 'online_loop.yaml'), "the loop's node parameters"),
    'env': ('InvertedPendulum-v5', 'the simulated robot (use_sim:=true)'),
    'config': ('', "the learner's YAML overriding config/default_config.yaml"),
    'preset': ('robot_loop', "the learner's named configuration of config/presets/ (robot_loop: "
                             "Dreamer settings for a real-time robot on one core)"),
    'seed': ('-1', 'seed (-1: the config value)'),
    'total_timesteps': ('0', 'the learner stops after this many recorded env steps (0: when stopped)'),
    'data': ('', 'offline: train Dreamer on these bags instead of running the loop'),
    'interface': ('', 'offline: the interface description of the data:= bags'),
}


def generate_launch_description():
    arg = {name: LaunchConfiguration(name) for name in ARGUMENTS}
    params = arg['params_file']
    sim_time = ParameterValue(arg['use_sim'], value_type=bool)
    loop = IfCondition(EqualsSubstitution(arg['data'], ''))
    dataset = PathJoinSubstitution([arg['loop_dir'], 'dataset'])
    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value=default, description=text)
          for name, (default, text) in ARGUMENTS.items()),
        Node(package='robot_training', executable='sim', name='sim', output='screen',
             parameters=[params, {'interface_file': arg['interface_file'], 'env': arg['env']}],
             condition=IfCondition(AndSubstitution(arg['use_sim'], EqualsSubstitution(arg['data'], '')))),
        Node(package='robot_training', executable='policy_server', name='policy_server', output='screen',
             parameters=[params, {'interface_file': arg['interface_file'], 'use_sim_time': sim_time}],
             condition=loop),
        Node(package='robot_training', executable='recorder', name='recorder', output='screen',
             parameters=[params, {'interface_file': arg['interface_file'], 'dataset_dir': dataset,
                                  'use_sim_time': sim_time}],
             condition=loop),
        Node(package='robot_training', executable='trainer', name='learner', output='screen',
             parameters=[params, {'algorithm': arg['algorithm'], 'data': dataset,
                                  'interface': arg['interface_file'], 'checkpoint_dir': arg['loop_dir'],
                                  'log_dir': PathJoinSubstitution([arg['loop_dir'], 'runs']),
                                  'config': arg['config'], 'preset': arg['preset'],
                                  'seed': ParameterValue(arg['seed'], value_type=int),
                                  'total_timesteps': ParameterValue(arg['total_timesteps'], value_type=int)}],
             condition=loop),
        Node(package='robot_training', executable='trainer', name='trainer', output='screen',
             parameters=[{'mode': 'dreamer', 'data': arg['data'], 'interface': arg['interface'],
                          'config': arg['config'],
                          'checkpoint_dir': arg['loop_dir'],
                          'seed': ParameterValue(arg['seed'], value_type=int),
                          'total_timesteps': ParameterValue(arg['total_timesteps'], value_type=int),
                          'exit_when_done': True}],
             condition=IfCondition(NotEqualsSubstitution(arg['data'], ''))),
    ])
