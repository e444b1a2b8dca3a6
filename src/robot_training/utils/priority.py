"""CPU priority of a learner that shares a small computer with a robot's control loop.

On the project's 2-core machines a learner at niceness 10 still delays the actor: a waking
control callback waits for the scheduler to take a core from it. A thread under Linux's
``SCHED_IDLE`` policy is preempted at once by any normal task that wakes, and otherwise runs
as fast as before (``bench/bench_actor_latency.py`` measures both side by side).
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


def thread_cpu_policy() -> str:
    """``idle`` or ``normal``: the calling thread's policy (for logs and tests)."""
    if hasattr(os, "SCHED_IDLE") and os.sched_getscheduler(0) == os.SCHED_IDLE:
        return "idle"
    return "normal"
