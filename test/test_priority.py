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
