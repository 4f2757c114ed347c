"""The exception tree of gridcv.

Errors are typed by what should happen next (as in KerasTuner's
``errors.py``): a :class:`UserError` stops the command with a one-paragraph
message and exit code 2, because running on would only repeat it; a
:class:`FoldError` is data about one fold and the run goes on.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class GridcvError(Exception):
    """Base class of every error gridcv raises on purpose."""


class UserError(GridcvError):
    """Bad input from the user: the message names the file, the key and the fix.

    The command line prints the message as one paragraph and exits with 2,
    without a traceback (``--debug`` shows it).
    """

    exit_code = 2


class ConfigError(UserError):
    """The experiment file is invalid."""


class DataError(UserError):
    """The data the experiment file points at is missing or inconsistent."""


class BuilderError(UserError):
    """The model builder cannot be imported or returns something unusable.

    Raised inside a worker, it stops the whole run: every fold would fail the
    same way, so recording them all as failed would only hide the cause.
    """


class ResultsError(UserError):
    """A results folder is missing, locked by another run, or incompatible."""


class ResultsLockedError(ResultsError):
    """Another live process is running the same results folder."""


class ExperimentChangedError(ResultsError):
    """The experiment file changed in a way that invalidates finished folds."""


class WorkerStartError(GridcvError):
    """A worker process died before it was ready (TensorFlow failed to import, most likely)."""

    exit_code = 1


class FinishedFoldError(GridcvError):
    """Attempted to change a fold that is already finished (done rows are immutable)."""


class RunInterrupted(GridcvError):
    """The run was stopped by the user (Ctrl-C / SIGTERM) after a clean checkpoint."""

    exit_code = 130


class RunStopped(GridcvError):
    """The run stopped on purpose by policy (for example ``on_oom: stop``)."""

    exit_code = 1


class AllFoldsFailed(GridcvError):
    """Every fold of the run failed; the fold table says why."""

    exit_code = 1


class NotAvailableError(ResultsError, AttributeError):
    """A results attribute that this search does not have, or not yet (no refit, no finished candidate).

    Like scikit-learn's ``NotFittedError`` it is also an ``AttributeError``, so
    ``hasattr(search, "best_estimator_")`` is False where scikit-learn's would be.
    """


class StoreError(ResultsError):
    """The results database cannot be read or written (disk full, read-only folder, I/O error)."""


def did_you_mean(name: object, choices: Iterable[str], *, aside: bool = False, n: int = 1) -> str:
    """The "did you mean" part of a message: ``" Did you mean 'x'?"``, or ``""`` when nothing is close.

    Args:
        name: What the user wrote.
        choices: What would have been valid.
        aside: Phrase it as a parenthesis inside a sentence: ``" (did you mean 'x'?)"``.
        n: Suggest up to this many names (``'a' or 'b'``).
    """
    close = difflib.get_close_matches(str(name), list(choices), n=n)
    if not close:
        return ""
    names = " or ".join(repr(c) for c in close)
    return f" (did you mean {names}?)" if aside else f" Did you mean {names}?"
