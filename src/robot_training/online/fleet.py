"""A fleet: N robots, each in its own ROS namespace, feeding one learner.

Each robot of the loop gets its own robot (simulator or driver), actor and recorder, started
in the namespace ``robot1`` … ``robotN`` (one robot: the root namespace, as before). The
interface description names absolute topics (``/joint_states``, ``/cmd``), which a namespace
does not move, so every robot-scoped name is also remapped into the namespace: the
interface's streams (observation, action, reward and episode topics), ``/clock`` (each simulator has its
own simulation time), ``/tf``, ``/tf_static``, the mission topic and the simulator's
``/world/<name>/reset|pause`` services. The nodes themselves are unchanged; a recorder still
writes the interface's own topic names into its bags, so every robot's episodes match the
interface the learner was given. The learner's ``/learner/checkpoints`` stays global: every
actor hot-reloads the same checkpoints.

Each recorder writes into ``<dataset>/<namespace>/``; the learner's
:class:`~robot_training.online.episodes.EpisodeFeed` reads the dataset folder and its
per-robot subfolders, each episode once.

Used by the ``online_loop`` script and by ``train_dreamer.launch.py robots:=N`` alike.
"""

from __future__ import annotations

from typing import List, Tuple

#: robot-scoped names every robot has besides its interface's topics
ROBOT_NAMES = ('/clock', '/tf', '/tf_static', '/mission/waypoints')


def robot_namespaces(count: int) -> List[str]:
    """``['']`` (the root namespace) for one robot, else ``['robot1', …, 'robotN']``."""
    count = int(count)
    if count < 1:
        raise ValueError(f'robots must be 1 or more, got {count}')
    return [''] if count == 1 else [f'robot{i}' for i in range(1, count + 1)]


def robot_seed(namespace: str) -> int:
    """Each robot's own seed (its episodes' start states, its actor's random actions): 0 for
    the root namespace and ``robot1``, 1,000,000 apart after that, so no two robots of a fleet
    record the same episode."""
    if not namespace:
        return 0
    return (int(namespace[len('robot'):]) - 1) * 1_000_000 if namespace[len('robot'):].isdigit() else 0


def robot_remaps(namespace: str, interface, world: str = '') -> List[Tuple[str, str]]:
    """``(from, to)`` remappings that move one robot's absolute names into ``namespace``
    (none for the root namespace). ``world``: the simulator's world name (default: the
    interface's name, as the simulator names its reset/pause services)."""
    if not namespace:
        return []
    world = world or interface.name or 'default'
    names = [*(s.topic for s in interface.streams()), *ROBOT_NAMES, f'/world/{world}/reset', f'/world/{world}/pause']
    out, seen = [], set()
    for name in names:
        if name.startswith('/') and name not in seen:
            seen.add(name)
            out.append((name, f'/{namespace}{name}'))
    return out


def ros_arguments(namespace: str, interface, world: str = '') -> List[str]:
    """The ``--ros-args`` part that puts a node in ``namespace`` with the robot's remappings."""
    if not namespace:
        return []
    args = ['-r', f'__ns:=/{namespace}']
    for src, dst in robot_remaps(namespace, interface, world):
        args += ['-r', f'{src}:={dst}']
    return args


def main(argv=None) -> int:
    """``python -m robot_training.online.fleet robot1 --interface-file robot.yaml``: the
    ``--ros-args`` part of one robot's nodes, for starting them by hand (on the robot)."""
    import argparse
    import shlex

    from robot_training.interface.description import InterfaceError, load_interface

    p = argparse.ArgumentParser(prog='python -m robot_training.online.fleet', description=main.__doc__)
    p.add_argument('namespace', help='the robot\'s namespace, e.g. robot1')
    p.add_argument('--interface-file', required=True)
    p.add_argument('--world', default='', help="the simulator's world name (default: the interface's name)")
    args = p.parse_args(argv)
    try:
        interface = load_interface(args.interface_file)
    except (InterfaceError, OSError) as err:
        print(f'fleet: error: {err}', file=__import__('sys').stderr)
        return 2
    namespace = args.namespace.strip('/')
    print(' '.join(shlex.quote(a) for a in ['--ros-args', *ros_arguments(namespace, interface, args.world),
                                             '-p', f'seed:={robot_seed(namespace)}']))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
