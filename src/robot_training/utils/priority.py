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
