"""The ROS layer: the nodes (the only code that imports rclpy and message packages).

A node's program spends its first seconds importing (rclpy, PyTorch, MuJoCo) before
``run_node`` installs its SIGINT handling. ``ros2 launch`` forwards Ctrl-C to every child at
once, so a launch stopped early would see each node die in an import with a
``KeyboardInterrupt`` traceback. When this package is imported by a node program (a console
script or ``python -m robot_training.ros.<node>``, never a library user or pytest), the first
SIGINT is caught here instead and later ones are ignored; ``run_node`` then ends the node at
once with exit status 0.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

#: set by a SIGINT that arrived before run_node took over
EARLY_STOP = threading.Event()

NODE_PROGRAMS = frozenset({'recorder', 'policy_server', 'trainer', 'sim', 'loop_monitor', 'recorder_node',
                           'policy_server_node', 'trainer_node', 'sim_node', 'loop_monitor_node'})


def _early_sigint(_signum, _frame) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    EARLY_STOP.set()


def _program() -> str:
    """The program's name: the console script's file, or the module of ``python -m`` (while
    ``-m`` imports this package, ``sys.argv[0]`` is still ``'-m'``; ``sys.orig_argv`` has it)."""
    argv = getattr(sys, 'orig_argv', None) or []
    if '-m' in argv[:-1]:
        return argv[argv.index('-m') + 1].rsplit('.', 1)[-1]
    return Path(sys.argv[0]).stem if sys.argv else ''


def _install_early_sigint() -> bool:
    if threading.current_thread() is not threading.main_thread():
        return False
    if _program() not in NODE_PROGRAMS:
        return False
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        return False  # the parent asked for SIGINT to be ignored: respect that
    signal.signal(signal.SIGINT, _early_sigint)
    return True


_install_early_sigint()
