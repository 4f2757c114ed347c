"""The memory guard counts what a worker holds: pages it shares with the process it was forked
from (the fork server's TensorFlow) count once among them, not once per worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psutil
import pytest

from gridcv.execution.memory import memory_over, proportional_of, rss_of

MiB = 2**20
FORKED = """
import os, sys, time
import numpy as np
shared = np.ones(256 * 2**20 // 8)  # 256 MiB written before the fork: shared copy-on-write
child = os.fork()
if child == 0:
    time.sleep(120)
    os._exit(0)
print(child, flush=True)
time.sleep(120)
"""


@pytest.fixture
def forked_child():
    """The pid of a process forked from one holding 256 MiB it never writes again."""
    parent = subprocess.Popen([sys.executable, "-c", FORKED], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    yield child
    os.kill(child, signal.SIGKILL)
    parent.kill()
    parent.wait()


def _proportional_sizes() -> bool:
    try:
        return "Pss_Anon:" in open("/proc/self/smaps_rollup").read()
    except OSError:
        return False


@pytest.mark.skipif(not _proportional_sizes(), reason="needs Pss_Anon in /proc/<pid>/smaps_rollup (Linux 5.7 or later)")
def test_pages_shared_with_the_parent_count_once_against_the_limit(forked_child):
    rss = rss_of(forked_child)
    assert rss is not None and rss > 256 * MiB  # resident size: every shared page, in full
    assert memory_over(forked_child, 200 * MiB, rss) is None  # held: half of them (the parent has the rest)
    held = memory_over(forked_child, 100 * MiB, rss)
    assert held is not None and 128 * MiB <= held < 200 * MiB
    assert held == pytest.approx(proportional_of(forked_child), rel=0.05)
    assert memory_over(forked_child, rss, rss) is None  # at or under the resident size: never read further


def test_a_process_that_is_gone_is_over_no_limit():
    done = psutil.Popen([sys.executable, "-c", "pass"])
    done.wait()
    assert rss_of(done.pid) is None and proportional_of(done.pid) is None
    assert memory_over(done.pid, 0, 1) is None


def test_a_process_that_ends_while_its_children_are_listed_is_gone_not_an_error(monkeypatch):
    def ended(self, recursive=False):
        raise psutil.NoSuchProcess(self.pid)

    monkeypatch.setattr(psutil.Process, "children", ended)
    assert rss_of(os.getpid()) is None
    assert proportional_of(os.getpid()) is None
