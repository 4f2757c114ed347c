"""Reading a process's memory: peak and current resident set size, and what it really holds.

Linux's ``/proc`` gives a per-fold peak (``VmHWM``, resettable through
``clear_refs``); psutil reads other processes' memory portably.

A worker forked from the fork server shares the server's TensorFlow (a few hundred MB) copy on
write, and its resident size counts all of it. The memory guard therefore reads resident sizes
(microseconds) at every sample, and only when they exceed ``max_worker_memory`` reads the
proportional sizes (``/proc/<pid>/smaps_rollup``, milliseconds: the kernel walks every mapping),
which divide each shared page among the processes that map it.
"""

from __future__ import annotations

from collections.abc import Callable
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


def _own_memory(pid: int) -> int:
    """Anonymous + shared resident memory: what the process itself holds.

    File-backed pages (a memory-mapped data set, shared libraries) are left out
    where Linux tells them apart: the kernel can drop them at any time, so they
    must not make a worker look out of memory.
    """
    try:
        fields = {}
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssShmem"):
                fields[key] = int(value.split()[0]) * 1024
        if len(fields) == 2:
            return fields["RssAnon"] + fields["RssShmem"]
    except (OSError, ValueError):
        pass
    return int(psutil.Process(pid).memory_info().rss)


def _proportional(pid: int) -> int:
    """Anonymous + shared memory of one process, each page divided among the processes mapping it.

    Raises:
        ValueError: The kernel does not tell (no ``smaps_rollup``, or no ``Pss_Anon`` in it: before 5.7).
        psutil.NoSuchProcess, ProcessLookupError: The process is gone (or a zombie).
    """
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except FileNotFoundError:
        if psutil.pid_exists(pid):
            raise ValueError(f"no /proc/{pid}/smaps_rollup") from None
        raise psutil.NoSuchProcess(pid) from None
    fields = {}
    for line in text.splitlines()[1:]:
        key, _, value = line.partition(":")
        if key in ("Pss_Anon", "Pss_Shmem"):
            fields[key] = int(value.split()[0]) * 1024
    if len(fields) != 2:
        raise ValueError(f"no Pss_Anon/Pss_Shmem in /proc/{pid}/smaps_rollup")
    return fields["Pss_Anon"] + fields["Pss_Shmem"]


def _tree_total(pid: int, own: Callable[[int], int]) -> int | None:
    """``own`` summed over a process and its descendants (one that ends meanwhile counts 0); None if it is gone."""
    try:
        proc = psutil.Process(pid)
        total = own(pid)
        for child in proc.children(recursive=True):  # raises too if the process ended meanwhile
            try:
                total += own(child.pid)
            except (OSError, ValueError, psutil.Error):
                pass  # it ended between the listing and the read
    except (psutil.Error, ProcessLookupError):
        return None
    return total


def rss_of(pid: int) -> int | None:
    """Memory a process and its children hold (anonymous + shared, in bytes), or None if gone."""
    return _tree_total(pid, _own_memory)


def proportional_of(pid: int) -> int | None:
    """Anonymous + shared memory of a process and its children, each page divided among the processes
    that map it (``Pss_Anon`` + ``Pss_Shmem``), in bytes; None if gone.

    Summed resident sizes (:func:`rss_of`) count what forked workers share copy-on-write with the
    fork server once per worker; proportional sizes add up to what is held. The benchmarks measure
    memory with it too.

    Raises:
        ValueError: The kernel does not tell proportional sizes (before Linux 5.7).
    """
    return _tree_total(pid, _proportional)


def memory_over(pid: int, limit: int, rss: int) -> int | None:
    """What a process and its children hold when it is above ``limit`` bytes, else None (also if gone).

    ``rss`` is their resident total, just read (:func:`rss_of`): it is cheap and never below what
    is held, so under the limit it settles it. Above it, proportional sizes decide, so that pages a
    forked worker shares with the fork server count once among them; where the kernel cannot tell
    them, resident sizes do.
    """
    if rss <= limit:
        return None
    try:
        held = proportional_of(pid)
    except ValueError:
        return rss
    return held if held is not None and held > limit else None


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
