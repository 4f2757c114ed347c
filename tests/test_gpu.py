"""Slots on real GPUs: benchmarks/gpu_smoke.py in the suite, on a machine that has a GPU.

Elsewhere it skips, saying why: GPU placement is then covered with faked device lists
(tests/test_placement.py) and a faked nvidia-smi (tests/test_slots.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gridcv.execution.placement import visible_gpus

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from gpu_smoke import smoke

pytestmark = pytest.mark.slow

GPUS = visible_gpus()
NO_GPU = (
    "needs a real GPU: neither CUDA_VISIBLE_DEVICES nor nvidia-smi -L shows one here "
    "(tests/test_placement.py and tests/test_slots.py cover GPU slots with faked device lists)"
)


@pytest.mark.skipif(not GPUS, reason=NO_GPU)
def test_two_workers_share_one_real_gpu_under_the_memory_cap(tmp_path):
    assert smoke(tmp_path, one_gpu=True) == []


@pytest.mark.skipif(len(GPUS) < 2, reason=f"needs 2 GPUs, this machine shows {len(GPUS)}")
def test_one_worker_per_real_gpu_with_memory_growth(tmp_path):
    assert smoke(tmp_path, one_gpu=False) == []
