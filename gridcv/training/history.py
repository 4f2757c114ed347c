"""Reading a Keras history: which metrics are minimised, best values, the best epoch. No Keras."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def minimizes(monitor: str, mode: str = "auto") -> bool:
    """Whether lower is better for a Keras metric (``mode`` wins unless it is ``auto``)."""
    if mode in ("min", "max"):
        return mode == "min"
    name = monitor.removeprefix("val_")
    return any(word in name for word in ("loss", "error", "crossentropy", "hinge"))


def history_summary(history: Mapping[str, list[float]], monitor: str, mode: str = "auto") -> dict[str, Any]:
    """Best value of each Keras metric, and the best epoch (1-based) by ``monitor``.

    The best epoch falls back to ``val_loss``, then ``loss``, when the history
    has no ``monitor``; it is None for an empty history.
    """
    best = {
        k: (min(v) if minimizes(k) else max(v)) for k, v in history.items() if v and k not in ("learning_rate", "lr")
    }
    for name in (monitor, "val_loss", "loss"):
        values = history.get(name)
        if values:
            low = minimizes(name, mode if name == monitor else "auto")
            index = int(np.argmin(values) if low else np.argmax(values))
            return {"history_best": best, "monitor": name, "best_epoch": index + 1}
    return {"history_best": best, "monitor": None, "best_epoch": None}
