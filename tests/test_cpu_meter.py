"""CpuMeter: the share of this process's CPUs that other work used, which records keep beside their times."""

import os
import subprocess
import sys
import time

import pytest
import torch

from benchmark.engine.runtime import CpuMeter, others_busy_share

pytestmark = pytest.mark.alone


def spinner() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])  # one CPU fully busy


def test_a_spinning_neighbour_is_seen_and_this_process_own_work_is_not():
    cpus = len(os.sched_getaffinity(0))
    with CpuMeter() as own_work:
        deadline = time.perf_counter() + 0.5
        while time.perf_counter() < deadline:
            torch.randn(256, 256) @ torch.randn(256, 256)  # this process's own threads
    neighbour = spinner()
    try:
        time.sleep(0.3)  # it has started
        with CpuMeter() as beside:
            time.sleep(0.5)
    finally:
        neighbour.kill()
        neighbour.wait()  # reaped after the meter closed: its time is not ours
    assert own_work.other_share is not None and beside.other_share is not None
    assert own_work.other_share < 0.5 / cpus
    assert beside.other_share >= 0.8 / cpus


def test_others_busy_share_sees_a_busy_machine():
    assert 0.0 <= others_busy_share() <= 1.0
    neighbour = spinner()
    try:
        time.sleep(0.3)
        busy = others_busy_share()
    finally:
        neighbour.kill()
        neighbour.wait()
    assert busy >= 0.8 / len(os.sched_getaffinity(0))
