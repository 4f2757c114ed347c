"""The built-in builders under the name experiment files use: ``model: gridcv.models:small_cnn``.

They live in :mod:`gridcv.training.models` (they import Keras); this module is
that name and nothing else, and is imported only where a builder is loaded
(in a worker).
"""

from gridcv.training.models import APPLICATIONS, application, small_cnn

__all__ = ["APPLICATIONS", "application", "small_cnn"]
