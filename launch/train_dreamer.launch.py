"""The robot learns while it acts: robot (embedded simulator or yours), actor, recorder, learner.

    ros2 launch robot_training train_dreamer.launch.py                       # embedded pendulum, Dreamer
    ros2 launch robot_training train_dreamer.launch.py use_sim:=false interface_file:=robot.yaml
    ros2 launch robot_training train_dreamer.launch.py data:=bags/ interface:=robot.yaml   # offline, from bags
    ros2 launch robot_training train_dreamer.launch.py algorithm:=sac robots:=2  # a fleet, one learner

The actor (policy_server) acts at the control rate, random until the learner's first
checkpoint, then with each checkpoint the learner announces on /learner/checkpoints (verified
and hot-reloaded); the recorder writes one bag per episode into <loop_dir>/dataset; the learner
(trainer, mode online) trains on every finished episode and resumes after a restart. Node
parameters: config/online_loop.yaml (the same file the pip-only online_loop script reads).
With data:= set, only the trainer runs, offline on those bags (train --mode dreamer --data).
With robots:=N (N > 1) each robot's sim, policy_server and recorder run in the namespace
robot1 ... robotN with its absolute names remapped into it (robot_training.online.fleet, the
code the online_loop script uses); each recorder writes <loop_dir>/dataset/robotI and the one
learner trains on all of them.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import EqualsSubstitution, LaunchConfiguration, NotEqualsSubstitution, PathJoinSubstitution
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
    'robots': ('1', 'robots feeding the one learner, each in its namespace robot1 ... robotN (1: no namespace)'),
}


def robot_nodes(context):
    """Each robot's simulator (use_sim:=true), actor and recorder, in its namespace."""
    from robot_training.interface.description import load_interface
    from robot_training.online.fleet import robot_namespaces, robot_remaps, robot_seed

    value = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    if value['data']:
        return []  # offline: the trainer alone
    namespaces = robot_namespaces(int(value['robots']))
    interface = load_interface(value['interface_file']) if len(namespaces) > 1 else None
    use_sim = value['use_sim'].lower() in ('true', '1')  # the embedded robot, on its simulation time
    nodes = []
    for ns in namespaces:
        remaps = robot_remaps(ns, interface)  # none in the root namespace
        common = {'interface_file': value['interface_file']}
        dataset = os.path.join(value['loop_dir'], 'dataset', ns) if ns else os.path.join(value['loop_dir'], 'dataset')
        if use_sim:
            nodes.append(Node(package='robot_training', executable='sim', name='sim', namespace=ns or None,
                              output='screen', remappings=remaps,
                              parameters=[value['params_file'], {**common, 'env': value['env'], 'seed': robot_seed(ns)}]))
        nodes.append(Node(package='robot_training', executable='policy_server', name='policy_server',
                          namespace=ns or None, output='screen', remappings=remaps,
                          parameters=[value['params_file'], {**common, 'use_sim_time': use_sim,
                                                              'seed': robot_seed(ns)}]))
        nodes.append(Node(package='robot_training', executable='recorder', name='recorder', namespace=ns or None,
                          output='screen', remappings=remaps,
                          parameters=[value['params_file'], {**common, 'dataset_dir': dataset,
                                                              'use_sim_time': use_sim}]))
    return nodes


def generate_launch_description():
    arg = {name: LaunchConfiguration(name) for name in ARGUMENTS}
    params = arg['params_file']
    loop = IfCondition(EqualsSubstitution(arg['data'], ''))
    dataset = PathJoinSubstitution([arg['loop_dir'], 'dataset'])
    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value=default, description=text)
          for name, (default, text) in ARGUMENTS.items()),
        OpaqueFunction(function=robot_nodes),
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
