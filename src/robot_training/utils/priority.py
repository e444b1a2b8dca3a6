"""CPU priority of a learner that shares a small computer with a robot's control loop, and of
the control loop itself.

``realtime_priority`` (the simulator, the policy server and the recorder; the loop's parameters
file sets 10) runs every thread of a robot node under Linux ``SCHED_FIFO``, as ros2_control's
controller manager does for its update loop: a waking actor preempts any normal task at once,
whatever the learner does. On the project's 2-core VM, beside two CPU-bound learners at nice
10, it took the actor's cost per tick from 4.5-6.5 ms p99 to 0.74-0.88 ms
(``bench/bench_actor_latency.py --variants nice10 nice10+fifo``). It needs root,
``CAP_SYS_NICE`` or an ``rtprio`` limit (``/etc/security/limits.conf``); without one the node
says so in one line and runs at its normal priority.

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


def set_process_realtime(priority: int, task_dir: str = "/proc/self/task") -> str:
    """Put every thread of this process (and, by inheritance, those it starts later) under
    ``SCHED_FIFO`` at ``priority`` (1-99; 0: leave them). Returns ``""`` when in effect, else why
    not (no ``SCHED_FIFO`` on this OS, not permitted); the threads then keep their policy."""
    priority = int(priority)
    if priority == 0:
        return ""
    if not hasattr(os, "SCHED_FIFO") or not os.path.isdir(task_dir):
        return "this OS has no SCHED_FIFO (Linux only)"
    low, high = os.sched_get_priority_min(os.SCHED_FIFO), os.sched_get_priority_max(os.SCHED_FIFO)
    if not low <= priority <= high:
        raise ValueError(f"realtime_priority: {priority} is outside SCHED_FIFO's {low}..{high} (0: off)")
    for tid in sorted(os.listdir(task_dir), key=int):
        try:
            os.sched_setscheduler(int(tid), os.SCHED_FIFO, os.sched_param(priority))
        except ProcessLookupError:  # the thread ended meanwhile
            continue
        except PermissionError:
            return ("not permitted: SCHED_FIFO needs root, CAP_SYS_NICE or an rtprio limit "
                    f"(ulimit -r; now {_rtprio_limit()})")
    return ""


def _rtprio_limit() -> str:
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_RTPRIO)
    return "unlimited" if soft == resource.RLIM_INFINITY else str(soft)


def set_thread_normal() -> None:
    """The calling thread back to the normal policy (a background thread of a real-time node,
    e.g. a checkpoint loader, that must not compete with the control loop). Lowering one's own
    policy needs no privilege; where the OS has no such call this does nothing."""
    if hasattr(os, "SCHED_OTHER"):
        try:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        except OSError:
            pass


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
