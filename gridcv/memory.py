"""Reading a process's memory: peak and current resident set size.

Linux's ``/proc`` gives a per-fold peak (``VmHWM``, resettable through
``clear_refs``); psutil reads other processes' memory portably.
"""

from __future__ import annotations

from pathlib import Path

import psutil


def reset_peak_rss() -> None:
    """Resets this process's peak-RSS counter, where the kernel allows it (Linux)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss() -> int | None:
    """This process's peak resident memory since start or the last reset, in bytes."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def rss_of(pid: int) -> int | None:
    """Resident memory of a process (with its children), in bytes, or None if it is gone."""
    try:
        proc = psutil.Process(pid)
        total = proc.memory_info().rss
        for child in proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        return int(total)
    except psutil.Error:
        return None


def format_bytes(n: int | float | None) -> str:
    """``1.5 GiB`` style, or ``-`` for None."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit in ("B", "KiB") else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
