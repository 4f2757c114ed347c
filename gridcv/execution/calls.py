"""Calling the user's code in a short-lived child process, so the runner never imports it.

``data: kind: python`` names a labels function that often lives beside a
``keras.utils.Sequence`` class, in a module that imports Keras: importing it
in the runner would load TensorFlow there (~1 GB, seconds). The runner calls
such functions here instead: in a spawned process that sends the result back
through a pipe and exits. The cost is one process start and the module's
imports, once per run. The child's stderr (TensorFlow's C++ log lines, the
user's prints) goes to a temporary log file, as a worker's goes to its log, so
the runner's own output stays gridcv's: the file is deleted once the child has
answered, and named when it died without answering.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from gridcv.errors import ConfigError, DataError, UserError

_USER_ERRORS: dict[str, type[UserError]] = {"ConfigError": ConfigError, "DataError": DataError}


def call_in_child(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a spawned child process; its result (pickled) comes back.

    Args:
        fn: A module-level function (the child imports it by name).
        args: Its arguments (pickled).

    Raises:
        UserError: What ``fn`` raised, if it was a user error (same type and message).
        DataError: ``fn`` raised anything else, or the child died before answering.
    """
    ctx = multiprocessing.get_context("spawn")
    handle, log = tempfile.mkstemp(prefix="gridcv-call-", suffix=".log")
    os.close(handle)
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(send, log, fn, args), name="gridcv-call", daemon=True)
    child.start()
    send.close()
    try:
        tag, payload = receive.recv()
    except EOFError:
        child.join()
        raise DataError(
            f"the process that called {fn.__name__} for the runner died (exit code {child.exitcode}) before it "
            f"answered; its output is in {log}."
        ) from None
    finally:
        receive.close()
    child.join()
    os.unlink(log)
    if tag == "ok":
        return payload
    kind, message = payload
    raise _USER_ERRORS.get(kind, DataError)(message)


def _child(conn: Connection, log: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    handle = os.open(log, os.O_WRONLY | os.O_APPEND)
    os.dup2(handle, 2)  # TensorFlow's C++ logs write to the file descriptor, not to sys.stderr
    os.close(handle)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the user's module may import TensorFlow
    try:
        reply: tuple[str, Any] = ("ok", fn(*args))
    except UserError as exc:
        reply = ("error", (type(exc).__name__, str(exc)))
    except Exception as exc:
        reply = ("error", ("DataError", f"{fn.__name__} raised {type(exc).__name__}: {exc}"))
    conn.send(reply)
    conn.close()
