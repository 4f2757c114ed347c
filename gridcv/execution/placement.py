"""Where each slot's worker trains: one worker per GPU, or the CPU's cores split between slots.

Runs in the parent, which never initialises CUDA: the GPUs come from an
inherited ``CUDA_VISIBLE_DEVICES`` (Slurm and containers give subsets, UUIDs
and MIG ids) or, without one, from ``nvidia-smi -L``. A worker gets its one
device through its environment (``CUDA_VISIBLE_DEVICES`` set to that device,
``CUDA_DEVICE_ORDER=PCI_BUS_ID``, nvidia-smi's numbering), set before
TensorFlow is imported, and then sees it as its only GPU.

CPU threads: with ``slots: N`` each worker gets ``cores // N`` TensorFlow
intra- and inter-op threads and as many tf.data threads, so N small models
train side by side instead of fighting over every core. Not in deterministic
mode: oneDNN's and Eigen's kernels split sums by thread count, so the same
fold trained with 1, 2 or 4 threads differs in the last bits
(``benchmarks/threads.py``). There every worker keeps TensorFlow's defaults
whatever the slot count, and a fold's scores do not depend on the slots
(tests/test_slots.py).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gridcv.config.schema import ExecutionSpec
from gridcv.errors import ConfigError

CPU = "cpu"
_NO_DEVICE = re.compile(r"^(-\d+|NoDevFiles)$")


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker process is set up with, before TensorFlow is imported.

    Attributes:
        slot: The slot's name for displays and the attempts table (``GPU 0``, ``cpu 1/2``).
        device: What it trains on: ``cpu``, or ``GPU <entry>`` with the
            ``CUDA_VISIBLE_DEVICES`` entry it was given (an index, a UUID, a MIG id).
        environ: Variables set in the worker's environment first thing.
        threads: TensorFlow intra- and inter-op threads and tf.data threads;
            None: TensorFlow's defaults (every core).
        gpu_memory_limit: A hard cap in bytes on the GPU's memory; None: memory growth.
    """

    slot: str = CPU
    device: str = CPU
    environ: tuple[tuple[str, str], ...] = ()
    threads: int | None = None
    gpu_memory_limit: int | None = None


def host_name() -> str:
    """This machine's name, as attempts record it."""
    return socket.gethostname()


def nvidia_smi_listing() -> str | None:
    """What ``nvidia-smi -L`` prints, or None where there is no NVIDIA driver (nothing initialises CUDA)."""
    try:
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def parse_gpu_listing(text: str) -> tuple[str, ...]:
    """The ``CUDA_VISIBLE_DEVICES`` entries of the GPUs ``nvidia-smi -L`` lists.

    A GPU is its index; a GPU split into MIG instances is its instances' UUIDs
    instead (CUDA reaches a MIG instance only by its UUID).
    """
    gpus: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if (gpu := re.match(r"^GPU (\d+):", line.strip())) is not None:
            gpus.append((gpu.group(1), []))
        elif (mig := re.search(r"^MIG .*\(UUID: (MIG-[^)\s]+)\)", line.strip())) is not None and gpus:
            gpus[-1][1].append(mig.group(1))
    return tuple(entry for index, migs in gpus for entry in (migs or [index]))


def gpu_uuids(text: str) -> dict[str, str]:
    """GPU UUID -> index, for the GPUs ``nvidia-smi -L`` lists."""
    found = (re.match(r"^GPU (\d+):.*\(UUID: (GPU-[^)\s]+)\)", line.strip()) for line in text.splitlines())
    return {m.group(2): m.group(1) for m in found if m is not None}


def visible_gpus(
    environ: Mapping[str, str] | None = None, listing: Callable[[], str | None] = nvidia_smi_listing
) -> tuple[str, ...]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries.

    An inherited ``CUDA_VISIBLE_DEVICES`` is taken as it is (as CUDA reads it: an
    entry such as ``-1`` ends the list); without one, ``nvidia-smi -L``.
    """
    environ = os.environ if environ is None else environ
    inherited = environ.get("CUDA_VISIBLE_DEVICES")
    if inherited is not None:
        entries = []
        for entry in (e.strip() for e in inherited.split(",")):
            if not entry or _NO_DEVICE.match(entry):
                break
            entries.append(entry)
        return tuple(entries)
    text = listing()
    return parse_gpu_listing(text) if text else ()


def gpu_label(entry: str) -> str:
    """A short name of a GPU for displays: ``GPU 0``, ``GPU-5c3e1a2b…``, ``MIG-0d1e2f3a…``."""
    if entry.isdigit():
        return f"GPU {entry}"
    return entry if len(entry) <= 12 else f"{entry[:12]}…"


def device_of(environ: Mapping[str, str], default: str = CPU) -> str:
    """The device a worker trains on, read from its own environment: ``GPU <entry>``, ``cpu``, or ``default``."""
    value = environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return default
    entries = [e.strip() for e in value.split(",") if e.strip()]
    if not entries or _NO_DEVICE.match(entries[0]):
        return CPU
    return f"GPU {','.join(entries)}"


def cpu_cores() -> int:
    """Cores this process may run on (Slurm's and containers' CPU sets respected)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def thread_share(slots: int, deterministic: bool, cores: int | None = None) -> int | None:
    """Threads per worker when ``slots`` workers share the CPU; None: TensorFlow's defaults.

    One slot keeps the defaults; deterministic mode too, whatever the slot count
    (thread counts change floating-point sums; see the module's docstring).
    """
    if slots <= 1 or deterministic:
        return None
    return max(1, (cores or cpu_cores()) // slots)


def cpu_slots(
    slots: int, deterministic: bool, hide_gpus: bool = False, cores: int | None = None
) -> tuple[WorkerSetup, ...]:
    """``slots`` CPU workers, the cores split between them; ``hide_gpus`` for ``devices: cpu``."""
    environ = (("CUDA_VISIBLE_DEVICES", "-1"),) if hide_gpus else ()
    threads = thread_share(slots, deterministic, cores)
    names = [CPU] if slots == 1 else [f"cpu {i + 1}/{slots}" for i in range(slots)]
    return tuple(WorkerSetup(name, CPU, environ, threads) for name in names)


def gpu_slots(
    entries: tuple[str, ...], execution: ExecutionSpec, environ: Mapping[str, str]
) -> tuple[WorkerSetup, ...]:
    """``workers_per_device`` workers per GPU, each seeing only its own."""
    order = environ.get("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # an inherited order says what its indices mean
    limit = int(execution.gpu_memory_limit) if execution.gpu_memory_limit else None
    per = execution.workers_per_device
    setups = []
    for entry in entries:
        for k in range(per):
            name = gpu_label(entry) if per == 1 else f"{gpu_label(entry)} {k + 1}/{per}"
            child = (("CUDA_VISIBLE_DEVICES", entry), ("CUDA_DEVICE_ORDER", order))
            setups.append(WorkerSetup(name, f"GPU {entry}", child, None, limit))
    return tuple(setups)


def plan_slots(
    execution: ExecutionSpec,
    deterministic: bool,
    where: str = "experiment file",
    environ: Mapping[str, str] | None = None,
    listing: Callable[[], str | None] = nvidia_smi_listing,
) -> tuple[WorkerSetup, ...]:
    """The slots of a local run: one worker per GPU (``workers_per_device`` of them), else CPU slots.

    ``devices: auto`` takes every visible GPU, else the CPU with ``slots``
    workers; ``cpu`` hides the GPUs; a list picks GPUs by position among the
    visible ones (``0`` is the first: with ``CUDA_VISIBLE_DEVICES=2,3``, GPU 2)
    or by their entry (a UUID or its beginning, a MIG id).

    Raises:
        ConfigError: A listed GPU is not visible, or several workers share a GPU without a memory cap.
    """
    environ = os.environ if environ is None else environ
    devices = execution.devices
    if devices == CPU:
        return cpu_slots(execution.slots, deterministic, hide_gpus=True)
    text = None if "CUDA_VISIBLE_DEVICES" in environ else listing()
    visible = visible_gpus(environ, lambda: text)
    if devices == "auto":
        if not visible:
            return cpu_slots(execution.slots, deterministic)
        chosen = visible
    else:
        assert isinstance(devices, list)
        # a GPU named by its UUID (nvidia-smi -L) is taken by its index, as auto takes it
        uuids = {u: i for u, i in gpu_uuids(text or "").items() if i in visible}
        chosen = tuple(_pick(d, visible, uuids, where, environ) for d in devices)
        if len(set(chosen)) < len(chosen):
            raise ConfigError(
                f"{where}: execution.devices {devices} names a GPU twice. Name each once; for several "
                "folds at once on one GPU, set execution.workers_per_device (with execution.gpu_memory_limit)."
            )
    if execution.workers_per_device > 1 and execution.gpu_memory_limit is None:
        raise ConfigError(
            f"{where}: execution.workers_per_device is {execution.workers_per_device}, but several workers "
            "on one GPU need execution.gpu_memory_limit (e.g. 10GiB): with memory growth alone the first "
            "worker's model can take the memory the others need. Set gpu_memory_limit to at most the GPU's "
            "memory divided by workers_per_device, or set workers_per_device: 1."
        )
    return gpu_slots(chosen, execution, environ)


def _pick(
    wanted: int | str, visible: tuple[str, ...], uuids: dict[str, str], where: str, environ: Mapping[str, str]
) -> str:
    """The visible GPU a ``devices`` entry names (by position, entry, or UUID and its beginning)."""
    shown = ", ".join(visible) if visible else "none"
    source = "CUDA_VISIBLE_DEVICES" if "CUDA_VISIBLE_DEVICES" in environ else "nvidia-smi -L"
    if isinstance(wanted, int):
        if 0 <= wanted < len(visible):
            return visible[wanted]
        problem = f"GPU {wanted} is not visible: {len(visible)} GPU(s) are ({shown}, from {source})"
    else:
        named = {**{v: v for v in visible}, **uuids}
        matches = [named[wanted]] if wanted in named else sorted({e for n, e in named.items() if n.startswith(wanted)})
        if len(matches) == 1:
            return matches[0]
        problem = f"{wanted!r} {'names several GPUs' if matches else 'is not a visible GPU'} ({shown}, from {source})"
    raise ConfigError(
        f"{where}: execution.devices: {problem}. Numbers count the visible GPUs from 0; text names a GPU's "
        "UUID (or its beginning) or a MIG id. Use devices: auto to take every visible GPU, or cpu."
    )
