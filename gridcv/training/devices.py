"""Per-worker TensorFlow set-up: GPU memory growth, op determinism, and GPU memory telemetry."""

from __future__ import annotations

import tensorflow as tf


def configure_device() -> None:
    """GPU memory growth, so one worker does not take the whole card."""
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
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
