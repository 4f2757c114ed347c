"""A full disk and a read-only folder: one paragraph with the fix, exit 2, no traceback, nothing lost.

Both run on a real small file system (tmpfs) mounted for the test; where this machine cannot
mount one (not root, no mount permission), the tests are skipped and say why.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import gridcv
from gridcv.cli import main
from gridcv.store import ResultStore
from tests.test_cli_errors import run_cli, snapshot

DETERMINISTIC = {"deterministic": True, "fit": {"epochs": 3, "batch_size": 8}, "grid": {"units": [4, 8]}}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted at tmp_path/disk for the test."""
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small file system here ({done.stderr.strip() or done.returncode}); needs root")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """Fills the disk with one file until ``leave`` bytes are free; returns the file."""
    filler = disk / "filler"
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize
    filler.write_bytes(b"\0" * max(0, free - leave))
    return filler


@pytest.mark.parametrize("leave", [8 * 1024, 48 * 1024, 160 * 1024])
def test_a_full_disk_stops_the_run_with_the_fix_and_the_run_resumes_once_freed(
    make_experiment, small_disk, capsys, leave
):
    reference = make_experiment(**DETERMINISTIC, name="reference.yaml", output=str(small_disk.parent / "reference"))
    assert main(["run", str(reference), "--quiet"]) == 0
    out = small_disk / "results"
    path = make_experiment(**DETERMINISTIC, output=str(out))
    filler = fill(small_disk, leave)
    capsys.readouterr()

    code, err = run_cli(capsys, "run", str(path), "--quiet")
    assert code == 2
    assert err.startswith(f"gridcv: error: {out}") and "\n" not in err and "Traceback" not in err
    assert "the disk is full (" in err
    assert err.endswith("Free space on that disk, then run the same command again: finished folds are kept.")

    filler.unlink()
    assert main(["run", str(path), "--quiet"]) == 0
    folds, expected = gridcv.load_folds(path), gridcv.load_folds(reference)
    assert folds["status"].tolist() == ["done"] * 4
    assert folds["test_accuracy"].tolist() == expected["test_accuracy"].tolist()
    with ResultStore.open(out, readonly=True) as store:
        assert store.integrity_check() == "ok"


def test_a_read_only_results_folder_is_read_but_never_written(make_experiment, small_disk, capsys):
    out = small_disk / "results"
    path = make_experiment(output=str(out))
    assert main(["run", str(path), "--quiet"]) == 0
    before = snapshot(small_disk)
    remount = subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], capture_output=True, text=True)
    assert remount.returncode == 0, remount.stderr
    capsys.readouterr()

    assert main(["results", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[0].split()[:2] == ["rank", "units"]
    assert main(["status", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "  folds: 4 total, 4 done, 0 running, 0 failed, 0 left"
    assert gridcv.load_search(out).progress_["n_folds_done"].tolist() == [2, 2]

    code, err = run_cli(capsys, "run", str(path), "--quiet")
    assert code == 2
    assert err == (
        f"gridcv: error: {out}: the results folder cannot be written (Read-only file system: {out / 'run.lock'}) "
        "while taking the run lock. Make it writable (check its permissions, and that its disk is not mounted "
        "read-only), or pass --output to write to another folder."
    )
    assert snapshot(small_disk) == before
