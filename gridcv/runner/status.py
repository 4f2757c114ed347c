"""``gridcv status``: how far a run is, read from the store without taking its lock."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from gridcv.execution.memory import format_bytes
from gridcv.folders import results_folder
from gridcv.store import FoldStatus, LockHolder, ResultStore, RunLock
from gridcv.store.checkpoints import latest_epoch


@dataclass(frozen=True)
class InFlight:
    """A fold marked running, and how far its checkpoints got."""

    task_id: str
    candidate_index: int
    fold: int
    attempts: int
    checkpoint_epoch: int | None
    started_at: float | None


@dataclass(frozen=True)
class RunStatus:
    """A snapshot of a results folder."""

    folder: Path
    name: str
    counts: dict[FoldStatus, int]
    holder: LockHolder | None
    in_flight: tuple[InFlight, ...]
    failures: tuple[tuple[str, str], ...]
    peak_rss: int | None

    @property
    def stale(self) -> bool:
        """Folds are marked running but no live run holds the folder."""
        return bool(self.in_flight) and self.holder is None


def read_status(path: str | Path) -> RunStatus:
    """Reads a results folder's state (safe while a run is writing)."""
    folder = results_folder(path)
    with ResultStore.open(folder, readonly=True) as store:
        counts = store.counts()
        rows = store.fold_rows()
        name = store.get_meta("name") or folder.name
    running = []
    for r in rows:
        if r.status is FoldStatus.RUNNING:
            epochs = [
                e for d in (folder / "checkpoints" / r.task_id).glob("b*x*") if (e := latest_epoch(d)) is not None
            ]
            running.append(
                InFlight(
                    r.task_id, r.candidate_index, r.fold, r.attempts, max(epochs) if epochs else None, r.started_at
                )
            )
    failures = tuple((r.task_id, r.message or "") for r in rows if r.status is FoldStatus.FAILED)
    peaks = [r.peak_rss for r in rows if r.peak_rss]
    return RunStatus(
        folder, name, counts, RunLock(folder).holder(), tuple(running), failures, max(peaks) if peaks else None
    )


def format_status(s: RunStatus) -> str:
    """The text ``gridcv status`` prints."""
    total = sum(s.counts.values())
    c = s.counts
    lines = [
        f"{s.name} ({s.folder})",
        f"  folds: {total} total, {c[FoldStatus.DONE]} done, {c[FoldStatus.RUNNING]} running, "
        f"{c[FoldStatus.FAILED]} failed, {c[FoldStatus.PENDING]} left",
        f"  run: {'active, ' + s.holder.describe() if s.holder else 'none active'}",
    ]
    for f in s.in_flight:
        ckpt = "no checkpoint yet" if f.checkpoint_epoch is None else f"checkpointed at epoch {f.checkpoint_epoch}"
        since = f", started {time.strftime('%H:%M:%S', time.localtime(f.started_at))}" if f.started_at else ""
        stale = " (stale: its run ended; the next run takes it back)" if s.holder is None else ""
        lines.append(
            f"  in flight: candidate {f.candidate_index + 1} fold {f.fold + 1}, attempt "
            f"{f.attempts}, {ckpt}{since}{stale}"
        )
    for task_id, message in s.failures[:5]:
        lines.append(f"  failed {task_id}: {message}")
    if len(s.failures) > 5:
        lines.append(f"  ... and {len(s.failures) - 5} more failed folds (gridcv.load_folds shows all)")
    if s.peak_rss:
        lines.append(f"  peak worker memory: {format_bytes(s.peak_rss)}")
    return "\n".join(lines)
