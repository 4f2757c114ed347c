"""Data sources and the generators that feed Keras one batch at a time.

``sources`` needs only numpy and is safe in the parent process; ``batches``
imports Keras and is used inside workers only.
"""

from gridcv.data.sources import ArraySource, Source, open_source, prepare_data

__all__ = ["ArraySource", "Source", "open_source", "prepare_data"]
