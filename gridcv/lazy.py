"""Names of a package imported on first use (PEP 562).

``gridcv``, ``gridcv.runner`` and ``gridcv.report`` name things whose modules import pandas,
scikit-learn or the whole runner; importing the package must not, so ``gridcv status`` starts
in a fraction of a second. Each package lists its lazy names and the modules that define them::

    __getattr__, __dir__ = lazy_names(__name__, {"run": "gridcv.runner.api"}, globals())

The first lookup of a name imports its module and stores the value in the package's
namespace, so later lookups never reach ``__getattr__``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(
    package: str, names: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``, whose ``names`` map to their defining modules."""

    def attribute(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(names[name]), name)
        namespace[name] = value  # later lookups skip this function
        return value

    def listing() -> list[str]:
        return sorted({*namespace, *names})

    return attribute, listing
