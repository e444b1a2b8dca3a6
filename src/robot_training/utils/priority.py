"""CPU priority of a learner that shares a small computer with a robot's control loop.

``online.cpu_policy: idle`` puts the learner's training thread under Linux ``SCHED_IDLE``:
any normal task that wakes (the actor, the simulator, the recorder) preempts it at once. The
price: every other process, even one at nice 19, also takes the CPU from it. On the
project's 2-core VM the actor's cost per tick did not measurably change against a learner at
nice 10 (``bench/bench_actor_latency.py`` runs both side by side), so ``normal`` is the
default.
"""

from __future__ import annotations

import os

CPU_POLICIES = ("idle", "normal")


def check_cpu_policy(policy: str, key: str = "online.cpu_policy") -> str:
    if policy not in CPU_POLICIES:
        raise ValueError(f"{key}: unknown CPU policy {policy!r}; one of {', '.join(CPU_POLICIES)}")
    return policy


def set_thread_cpu_policy(policy: str) -> bool:
    """Apply ``policy`` to the calling thread (and the threads it starts afterwards).

    ``idle``: ``SCHED_IDLE`` where the OS has it (Linux); ``normal``: leave it. Returns whether
    the policy is in effect (False where the OS has no ``SCHED_IDLE``; the thread then runs
    at its normal priority, which is correct, only less polite)."""
    check_cpu_policy(policy)
    if policy == "normal":
        return True
    if not hasattr(os, "SCHED_IDLE"):
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # 0: the calling thread
    except OSError:
        return False
    return True


#: Linux PM QoS: the CPU wake-up latency every idle CPU must honour while the file is held open
CPU_DMA_LATENCY = "/dev/cpu_dma_latency"


def hold_cpu_latency(microseconds: int, path: str = CPU_DMA_LATENCY):
    """Ask Linux to keep every CPU's wake-up latency at or under ``microseconds`` (PM QoS).

    With 0, idle CPUs poll instead of halting, so a control loop that sleeps between ticks
    does not pay for a cold wake-up on every tick (on the project's VM: an 11 us message build
    took 0.25 ms p50 after a 40 ms sleep, 0.02 ms with the request held). The request holds
    while the returned file descriptor is open (close it, or let the process end, to drop
    it). It costs power: an idle CPU spins. Returns the descriptor, or None where the file
    does not exist or cannot be written (it needs root or a udev rule)."""
    import struct

    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError:
        return None
    try:
        os.write(fd, struct.pack("i", int(microseconds)))
    except OSError:
        os.close(fd)
        return None
    return fd
