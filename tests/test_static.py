"""The code base stays typed (strict mypy) and lint-clean (ruff)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_strict_mypy_passes():
    out = subprocess.run([sys.executable, "-m", "mypy", "gridcv"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


def test_ruff_passes():
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "gridcv", "tests", "benchmarks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout
