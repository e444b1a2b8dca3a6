"""The CPU helpers of a robot's control loop: the learner's scheduling policy and the actor's
PM QoS wake-up latency request."""

from __future__ import annotations

import os
import struct

import pytest

from robot_training.utils.priority import check_cpu_policy, hold_cpu_latency


def test_a_latency_request_is_written_as_linux_reads_it_and_held_open(tmp_path):
    target = tmp_path / 'cpu_dma_latency'
    target.write_bytes(b'')
    fd = hold_cpu_latency(0, path=str(target))
    assert fd is not None
    try:
        assert struct.unpack('i', target.read_bytes()) == (0,)  # a binary s32, as the kernel expects
        os.fstat(fd)  # still open: the request lasts as long as the descriptor
    finally:
        os.close(fd)


def test_a_latency_request_that_cannot_be_made_is_none(tmp_path):
    assert hold_cpu_latency(0, path=str(tmp_path / 'missing' / 'cpu_dma_latency')) is None


def test_unknown_cpu_policy_names_the_key():
    with pytest.raises(ValueError, match='online.cpu_policy: unknown CPU policy'):
        check_cpu_policy('realtime')


def _can_use_fifo() -> bool:
    """CAP_SYS_NICE in effect (root, usually; not in every container) or an rtprio limit of 10+."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_RTPRIO)
    if soft == resource.RLIM_INFINITY or soft >= 10:
        return True
    caps = next(line.split()[1] for line in open('/proc/self/status') if line.startswith('CapEff:'))
    return bool(int(caps, 16) >> 23 & 1)  # 23: CAP_SYS_NICE


PROBE = r'''
import os, sys, threading, time
from robot_training.utils.priority import set_process_realtime, set_thread_normal
started = threading.Event()
def worker():
    started.set(); time.sleep(3)
threading.Thread(target=worker, daemon=True).start()
started.wait()
why = set_process_realtime(int(sys.argv[1]))
policies = sorted({os.sched_getscheduler(int(tid)) for tid in os.listdir('/proc/self/task')})
late = []
def late_thread():
    late.append(os.sched_getscheduler(0))
    set_thread_normal()
    late.append(os.sched_getscheduler(0))
t = threading.Thread(target=late_thread); t.start(); t.join()
print(repr(why), policies, late, os.sched_getparam(0).sched_priority)
'''


@pytest.mark.skipif(not hasattr(os, 'SCHED_FIFO'), reason='SCHED_FIFO is Linux-only')
def test_realtime_priority_reaches_every_thread_or_says_why_not():
    """In a child process (the test runner stays as it is): every thread that exists, and one
    started afterwards, runs SCHED_FIFO at the priority; set_thread_normal takes one back.
    Where the OS refuses (no root, no rtprio limit) the reason names the limit and nothing changes."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, '-c', PROBE, '10'], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    text = out.stdout.strip()
    if _can_use_fifo():
        assert text == f"'' [{os.SCHED_FIFO}] [{os.SCHED_FIFO}, {os.SCHED_OTHER}] 10", text
    else:
        assert 'not permitted: SCHED_FIFO needs root, CAP_SYS_NICE or an rtprio limit' in text, text
        assert f"[{os.SCHED_OTHER}] [{os.SCHED_OTHER}, {os.SCHED_OTHER}] 0" in text, text


def test_realtime_priority_zero_is_off_and_out_of_range_names_the_parameter():
    from robot_training.utils.priority import set_process_realtime

    assert set_process_realtime(0) == ''
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the test runner: untouched
    with pytest.raises(ValueError, match='realtime_priority: 100 is outside'):
        set_process_realtime(100)
