"""Per-worker TensorFlow set-up: threads, GPU memory growth or cap, op determinism, GPU memory telemetry.

The worker calls these before any op runs: TensorFlow fixes its thread pools
and GPU memory settings when its runtime starts.
"""

from __future__ import annotations

import tensorflow as tf

_data_threads: list[int | None] = [None]  # the tf.data thread pool size of this worker's pipelines


def configure_threads(threads: int | None) -> None:
    """Intra- and inter-op threads and tf.data threads (several CPU slots share the cores); None: defaults."""
    _data_threads[0] = threads
    if threads is None:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # the runtime already started (inline): it keeps its pools
        pass


def op_threads() -> tuple[int, int]:
    """TensorFlow's intra- and inter-op thread settings in this process (0: its default, every core)."""
    return (
        tf.config.threading.get_intra_op_parallelism_threads(),
        tf.config.threading.get_inter_op_parallelism_threads(),
    )


def data_threads() -> int | None:
    """Threads a tf.data pipeline may use in this worker; None: tf.data's default (every core)."""
    return _data_threads[0]


def configure_device(memory_limit: int | None = None) -> None:
    """GPU memory growth, so one worker does not take the whole card; or a hard cap of ``memory_limit`` bytes."""
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            if memory_limit:
                config = tf.config.LogicalDeviceConfiguration(memory_limit=memory_limit // 2**20)  # in MiB
                tf.config.set_logical_device_configuration(gpu, [config])
            else:
                tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised
            pass


def enable_determinism(enabled: bool) -> None:
    """TensorFlow op determinism, for bit-exact resumes (``deterministic: true``)."""
    if enabled:
        tf.config.experimental.enable_op_determinism()


def _gpus() -> list[str]:
    return [f"GPU:{i}" for i in range(len(tf.config.list_logical_devices("GPU")))]


def reset_gpu_peak_memory() -> None:
    """Starts a fold's GPU peak-memory count (nothing to do without a GPU)."""
    for name in _gpus():
        tf.config.experimental.reset_memory_stats(name)


def gpu_peak_memory() -> int | None:
    """Peak GPU memory of this fold in bytes (the largest over the GPUs), or None without a GPU."""
    names = _gpus()
    return max(int(tf.config.experimental.get_memory_info(n)["peak"]) for n in names) if names else None
