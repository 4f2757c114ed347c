"""Folds on a Dask cluster (``backend: dask``): the runner's side. Only this module and
:mod:`gridcv.execution.dask_task` (the task's side) import ``distributed``.

Each fold attempt is one Dask task, ``client.submit(..., pure=False, retries=0,
resources={"GPU": 1})`` (the resource only where GPUs are used), collected
with ``as_completed``. Inside the task the fold trains in a spawned gridcv
worker process, the same code as a local run, so an out-of-memory kill comes
back as a classified outcome and the Dask worker lives on. The runner stays
the only writer of the results store, on its own machine; data and results
folder (checkpoints) must be on storage every worker sees, which is checked
on every worker before any fold is sent.

A slot is one task at a time on a Dask worker's thread (or GPU), named after
the worker it is sent to first (``dask tcp://10.0.0.5:40123``); Dask may run
it elsewhere when that worker is gone. A lost worker (``KilledWorker``, a
closed connection, or Dask running the task again after its worker died)
ends the attempt as ``lost``: it is sent again without counting as a failure
of the fold (:func:`gridcv.runner.policy.decide`).
"""

from __future__ import annotations

import queue
import time
import traceback
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import distributed

from gridcv.config.schema import ExecutionSpec
from gridcv.errors import ClusterError, ConfigError
from gridcv.execution.dask_task import (
    DAEMON_PROBLEM,
    TaskRequest,
    check_on_worker,
    fold_on_worker,
    probe_worker,
    storage_anchor,
)
from gridcv.execution.messages import (
    EpochEnded,
    Event,
    Finished,
    FoldJob,
    FoldOutcome,
    OutcomeKind,
    Placement,
    Progress,
)
from gridcv.execution.worker import read_check_reply

CONNECT_SECONDS = 30.0
WORKER_WAIT_SECONDS = 60.0
_LOST = (distributed.KilledWorker, distributed.CancelledError, OSError)  # CommClosedError is an OSError


@dataclass
class _InFlight:
    job: FoldJob
    future: distributed.Future[FoldOutcome]


class DaskExecutor:
    """Sends fold attempts to a Dask cluster, one task per attempt, as many at once as it has slots.

    Args:
        execution: The ``execution:`` section (``dask_scheduler``, ``devices``, memory limits).
        deterministic: TensorFlow op determinism in the workers.
        log_dir: Where gridcv's worker processes write their logs (on shared storage); None: the
            Dask workers' stderr.
        where: The experiment file, for messages.

    Raises:
        ClusterError: No scheduler at the address, or no worker joined it.
        ConfigError: ``devices`` lists GPUs (each Dask worker's own ``CUDA_VISIBLE_DEVICES`` says which).
    """

    def __init__(self, execution: ExecutionSpec, deterministic: bool, log_dir: Path | None, where: str) -> None:
        self.execution, self.deterministic, self.where = execution, deterministic, where
        if isinstance(execution.devices, list):
            raise ConfigError(
                f"{where}: execution.devices lists GPUs ({execution.devices}), but with backend: dask each Dask "
                "worker uses the GPUs its own CUDA_VISIBLE_DEVICES shows (start one worker per GPU with "
                "--resources GPU=1). Set devices: auto (GPUs where workers offer a GPU resource) or cpu."
            )
        self._client = connect(execution.dask_scheduler, where)
        workers = self._client.scheduler_info()["workers"]
        self.gpu = execution.devices == "auto" and any(w.get("resources", {}).get("GPU") for w in workers.values())
        self._pins = slot_pins(workers, self.gpu)
        # Logs go to the results folder once it exists (the builder is checked before it is made).
        self._logs = log_dir is not None
        self._log_dir = log_dir if log_dir is not None and log_dir.is_dir() else None
        token = uuid.uuid4().hex[:12]
        self._topic, self._stop_name = f"gridcv-{token}", f"gridcv-stop-{token}"
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._client.subscribe_topic(self._topic, lambda event: self._events.put(event[1]))
        self._done = distributed.as_completed(loop=self._client.loop)
        self._flight: dict[int, _InFlight] = {}
        self._probed = False

    @property
    def slots(self) -> int:
        return len(self._pins)

    @property
    def slot_names(self) -> tuple[str, ...]:
        return slot_names(self._pins)

    def placement(self, slot: int) -> Placement:
        return Placement(self.slot_names[slot])  # device and host: the worker says when it ends

    def set_log_dir(self, folder: Path) -> None:
        if self._logs:
            folder.mkdir(parents=True, exist_ok=True)
            self._log_dir = folder

    def _request(self, slot: int, job: FoldJob) -> TaskRequest:
        return TaskRequest(
            job,
            slot,
            self.slot_names[slot],
            self._topic,
            self._stop_name,
            self.deterministic,
            self.execution,
            self._log_dir,
            self.gpu,
        )

    def _submit(self, function: Any, request: TaskRequest, pin: str | None) -> distributed.Future[Any]:
        kind = "check" if function is check_on_worker else f"a{request.job.attempt}"
        return self._client.submit(
            function,
            request,
            key=f"gridcv-{request.job.task.task_id}-{kind}-{uuid.uuid4().hex[:8]}",
            pure=False,
            retries=0,
            resources={"GPU": 1} if self.gpu else None,
            workers=[pin] if pin else None,
            allow_other_workers=bool(pin),  # a slot's worker that is gone: any other
        )

    def check(self, job: FoldJob) -> bool:
        self.probe(job)
        try:
            tag, payload = self._submit(check_on_worker, self._request(0, job), None).result()
        except Exception as exc:  # the task's own errors come back as a reply: this is Dask's
            raise ClusterError(
                f"the model builder could not be checked on the Dask cluster: {type(exc).__name__}: {exc}. "
                "Check that the workers run the same gridcv and Python packages as this machine."
            ) from exc
        return read_check_reply(tag, payload)

    def probe(self, job: FoldJob) -> None:
        """Checks every worker before folds are sent: it may start processes, read the data, and see
        and write the results folder.

        Raises:
            ClusterError: What is wrong, on which workers, and the fix.
        """
        folder = job.training.results_dir or job.checkpoint_dir
        anchor = storage_anchor(folder)
        marker = anchor / f".gridcv-probe-{uuid.uuid4().hex[:8]}"
        marker.write_text("gridcv checks that the Dask workers see this folder\n")
        try:
            replies = self._client.run(probe_worker, job.data, str(anchor), marker.name, on_error="return")
        finally:
            marker.unlink(missing_ok=True)
            for seen in anchor.glob(f"{marker.name}-*"):
                seen.unlink(missing_ok=True)
        self._probed = True
        problems: dict[str, list[str]] = {}
        for address, reply in sorted(replies.items()):
            found = reply if isinstance(reply, list) else [f"the check itself failed there: {reply!r}"]
            for problem in found:
                problems.setdefault(problem, []).append(address)
        if problems:
            raise ClusterError(cluster_problems(problems, folder, self.where))

    def start(self, slot: int, job: FoldJob) -> None:
        if slot in self._flight:
            raise RuntimeError(f"slot {slot} is busy with fold {self._flight[slot].job.task.task_id}")
        if not self._probed:
            self.probe(job)
        live = set(self._client.scheduler_info()["workers"])
        if self._pins[slot] not in live:  # its worker is gone (a replacement has a new address)
            self._pins[slot] = _least_pinned(live, self._pins) or self._pins[slot]
        future = self._submit(fold_on_worker, self._request(slot, job), self._pins[slot])
        self._flight[slot] = _InFlight(job, future)
        self._done.add(future)

    def poll(self, timeout: float) -> list[Event]:
        deadline = time.monotonic() + timeout
        while True:
            events = self._progress() + self._finished()
            if events or time.monotonic() >= deadline:
                return events
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def _progress(self) -> list[Event]:
        events: list[Event] = []
        while True:
            try:
                message = self._events.get_nowait()
            except queue.Empty:
                return events
            current = self._flight.get(message["slot"])
            if current is not None and current.future.key == message["key"]:
                events.append(Progress(message["slot"], EpochEnded(**message["epoch"])))

    def _finished(self) -> list[Event]:
        events: list[Event] = []
        for future in self._done.next_batch(block=False):
            slot = next((s for s, f in self._flight.items() if f.future.key == future.key), None)
            if slot is not None:
                events.append(Finished(slot, outcome_of(future, self._flight.pop(slot).job)))
        return events

    def request_stop(self) -> None:
        distributed.Event(self._stop_name, client=self._client).set()

    def close(self) -> None:
        # Tasks still in flight stop their worker process as soon as they see themselves cancelled.
        futures = [f.future for f in self._flight.values()]
        self._flight.clear()
        try:
            if futures:
                self._client.cancel(futures)
            self._client.unsubscribe_topic(self._topic)
        except (OSError, ValueError):  # the scheduler is gone already
            pass
        self._client.close()


def connect(address: str | None, where: str) -> distributed.Client:
    """A client of the scheduler at ``address`` (or in a scheduler file), with at least one worker.

    Raises:
        ClusterError: No address, no scheduler there, or no worker within a minute.
    """
    if not address:
        raise ClusterError(
            f"{where}: execution.backend is dask but execution.dask_scheduler is not set. Set it to the "
            "scheduler's address (tcp://host:8786) or to its scheduler file (dask scheduler "
            "--scheduler-file FILE), in the file or with --dask-scheduler."
        )
    is_file = "://" not in address
    if is_file and not Path(address).is_file():
        raise ClusterError(
            f"{where}: execution.dask_scheduler {address!r} is neither an address (tcp://host:8786) nor an "
            "existing scheduler file. Start the scheduler first (dask scheduler --scheduler-file FILE)."
        )
    target = {"scheduler_file": address} if is_file else {"address": address}
    try:
        client = distributed.Client(**target, timeout=CONNECT_SECONDS, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(
            f"{where}: no Dask scheduler answered at {address} within {CONNECT_SECONDS:.0f} s ({exc}). "
            "Start it (dask scheduler), or fix execution.dask_scheduler."
        ) from None
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_SECONDS)
    except TimeoutError:
        client.close()
        raise ClusterError(
            f"the Dask scheduler at {address} has no worker (waited {WORKER_WAIT_SECONDS:.0f} s). Start workers "
            f"with DASK_DISTRIBUTED__WORKER__DAEMON=False dask worker {address} (one per GPU with "
            "--resources GPU=1), then run again."
        ) from None
    return client


def slot_pins(workers: dict[str, dict[str, Any]], gpu: bool) -> list[str]:
    """One slot per GPU the workers offer (``--resources GPU=n``), else per worker thread: each slot's worker."""
    pins = []
    for address, info in sorted(workers.items()):
        n = int(info.get("resources", {}).get("GPU", 0)) if gpu else int(info.get("nthreads", 1))
        pins += [address] * n
    return pins


def slot_names(pins: list[str]) -> tuple[str, ...]:
    """``dask <address>``, numbered where a worker takes several slots: ``dask tcp://...:40123 2/4``."""
    names = []
    for i, pin in enumerate(pins):
        n = pins.count(pin)
        names.append(f"dask {pin}" if n == 1 else f"dask {pin} {pins[: i + 1].count(pin)}/{n}")
    return tuple(names)


def _least_pinned(live: set[str], pins: list[str]) -> str | None:
    """The live worker fewest slots are sent to (a lost worker's slots move there)."""
    return min(sorted(live), key=pins.count, default=None)


def outcome_of(future: distributed.Future[FoldOutcome], job: FoldJob) -> FoldOutcome:
    """The outcome a finished task brings back; a lost worker is an outcome of its own (``lost``)."""
    lost = FoldOutcome(
        job.task.task_id, OutcomeKind.LOST, batch_size=job.batch_size, accumulation_steps=job.accumulation_steps
    )
    try:
        outcome: FoldOutcome = future.result()
        return outcome
    except distributed.KilledWorker as exc:
        worker = getattr(exc.last_worker, "address", exc.last_worker)
        return replace(lost, message=f"the Dask worker {worker} died while running it; it is sent again")
    except _LOST as exc:
        why = f"the connection to the Dask cluster was lost ({type(exc).__name__}: {exc}); it is sent again"
        return replace(lost, message=why.splitlines()[0][:500])
    except Exception as exc:  # the task itself failed (it turns the fold's own errors into outcomes)
        message = f"the Dask task failed: {type(exc).__name__}: {exc}".splitlines()[0][:500]
        trace = "".join(traceback.format_exception(exc))
        return replace(lost, kind=OutcomeKind.ERROR, message=message, error=trace)


def cluster_problems(problems: dict[str, list[str]], folder: Path, where: str) -> str:
    """One paragraph per problem the workers found, naming them."""
    texts = []
    for problem, addresses in problems.items():
        on = f"the Dask worker(s) at {', '.join(addresses)}"
        if problem == DAEMON_PROBLEM:
            texts.append(
                f"{on} run as daemonic processes (Dask's default, distributed.worker.daemon: True), which may not "
                "start the worker process each fold trains in (it is what turns an out-of-memory kill into a "
                "retry instead of a lost Dask worker). Start the workers with DASK_DISTRIBUTED__WORKER__DAEMON=False "
                "in their environment (or distributed: {worker: {daemon: false}} in their Dask configuration, "
                "e.g. ~/.config/dask/distributed.yaml), or with dask worker --no-nanny, then run again."
            )
        else:
            texts.append(
                f"{on}: {problem}. The data and the results folder ({folder}) must be on storage every worker "
                "sees under the same path (a shared file system), since workers read the data and write "
                f"checkpoints there; {where} names them."
            )
    return " ".join(texts)
