"""Helpers for tests that run nodes as real processes over real DDS (see conftest.py for the
``procs`` and ``ros_node`` fixtures built on them)."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INTERFACE = REPO / 'config' / 'interface_inverted_pendulum.yaml'


class Procs:
    """Child processes whose output is collected by a thread; killed at the end."""

    def __init__(self):
        self.procs = []

    def start(self, args, **kw):
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
        proc.lines = []
        proc.queue = queue.Queue()

        def pump():
            for line in proc.stdout:
                proc.lines.append(line.rstrip('\n'))
                proc.queue.put(line.rstrip('\n'))
            proc.queue.put(None)

        proc.pump = threading.Thread(target=pump, daemon=True)
        proc.pump.start()
        self.procs.append(proc)
        return proc

    def close(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


def node_cmd(module: str, *params: str) -> list:
    args = [sys.executable, '-m', f'robot_training.ros.{module}', '--ros-args']
    for p in params:
        args += ['-p', p]
    return args


def spin_until(node, predicate, timeout: float, what: str = '') -> None:
    import rclpy

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        rclpy.spin_once(node, timeout_sec=0.05)
    raise AssertionError(f'timed out after {timeout} s waiting for {what}')


def spin_for(node, seconds: float) -> None:
    import rclpy

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)


def call(node, srv_type, name: str, request, timeout: float = 30.0):
    """Call a service; asks again while the reply path is still matching (a first request can be lost)."""
    import rclpy

    client = node.create_client(srv_type, name)
    try:
        assert client.wait_for_service(timeout_sec=timeout), f'no service {name}'
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            future = client.call_async(request)
            rclpy.spin_until_future_complete(node, future, timeout_sec=3.0)
            if future.done():
                return future.result()
            client.remove_pending_request(future)
        raise AssertionError(f'no reply from {name}')
    finally:
        node.destroy_client(client)


def stop(proc, sig=signal.SIGINT, timeout: float = 15.0) -> str:
    proc.send_signal(sig)
    proc.wait(timeout=timeout)
    proc.pump.join(timeout=5)
    return '\n'.join(proc.lines)
