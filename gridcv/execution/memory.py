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


def _own_memory(proc: psutil.Process) -> int:
    """Anonymous + shared resident memory: what the process itself holds.

    File-backed pages (a memory-mapped data set, shared libraries) are left out
    where Linux tells them apart: the kernel can drop them at any time, so they
    must not make a worker look out of memory.
    """
    try:
        fields = {}
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssShmem"):
                fields[key] = int(value.split()[0]) * 1024
        if len(fields) == 2:
            return fields["RssAnon"] + fields["RssShmem"]
    except (OSError, ValueError):
        pass
    return int(proc.memory_info().rss)


def rss_of(pid: int) -> int | None:
    """Memory a process and its children hold (anonymous + shared, in bytes), or None if gone."""
    try:
        proc = psutil.Process(pid)
        total = _own_memory(proc)
        for child in proc.children(recursive=True):
            try:
                total += _own_memory(child)
            except psutil.Error:
                pass
        return total
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
