"""ament_python build of the robot_training package (code in src/robot_training)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'robot_training'

setup(
    name=PACKAGE,
    version='0.1.0',
    package_dir={'': 'src'},
    packages=find_packages(where='src', include=[PACKAGE, PACKAGE + '.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/launch', sorted(glob('launch/*.py'))),
        ('share/' + PACKAGE + '/config',
         sorted(glob('config/*.yaml') + glob('config/*.xml'))),
        ('share/' + PACKAGE + '/config/presets', sorted(glob('config/presets/*.yaml'))),
        # the Gazebo world of the ugv (launch/gazebo_ugv.launch.py)
        ('share/' + PACKAGE + '/gazebo/worlds', sorted(glob('gazebo/worlds/*.sdf'))),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='robot_training maintainers',
    maintainer_email='maintainers@robot-training.dev',
    description='Train world models and RL policies from rosbag2 data and deploy them.',
    license='Apache-2.0',
    extras_require={'test': ['pytest']},
    entry_points={
        'console_scripts': [
            'train = robot_training.train:main',
            'recorder = robot_training.ros.recorder_node:main',
            'policy_server = robot_training.ros.policy_server_node:main',
            'trainer = robot_training.ros.trainer_node:main',
            'sim = robot_training.ros.sim_node:main',
            'bags = robot_training.bags:main',
            'online_loop = robot_training.online.graph:main',
            'loop_monitor = robot_training.ros.loop_monitor_node:main',
            'navigator = robot_training.ros.navigator_node:main',
        ],
    },
)
