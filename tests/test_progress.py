"""The progress display, and command-line execution keys winning over the file's."""

from __future__ import annotations

import io
import re
import time

import pytest
from rich.console import Console

import gridcv
from gridcv.cli import main
from gridcv.execution.messages import EpochEnded, FoldOutcome, OutcomeKind
from gridcv.plan import REFIT_FOLD, FoldTask
from gridcv.runner.progress import LineReporter, RunShape, SilentReporter, TerminalReporter, make_reporter
from gridcv.store import FoldStatus
from tests.conftest import TINY_BUILDER


def test_terminal_display_shows_folds_params_and_scores(make_experiment):
    out = io.StringIO()
    reporter = TerminalReporter(Console(file=out, force_terminal=True, width=160, color_system=None))
    gridcv.run_experiment(make_experiment(), reporter=reporter)
    text = out.getvalue()
    assert "done   candidate 1 fold 1 (units=4): accuracy=" in text
    assert "done   candidate 2 fold 2 (units=8): accuracy=" in text
    assert "4/4 folds" in text
    assert "ETA" in text


def test_resumed_run_says_how_much_was_finished(make_experiment):
    path = make_experiment()
    gridcv.run_experiment(path)
    out = io.StringIO()
    reporter = TerminalReporter(Console(file=out, force_terminal=True, width=160, color_system=None))
    gridcv.run_experiment(path, reporter=reporter)
    assert "tiny: 4 of 4 folds already finished; resuming" in out.getvalue()


def test_quiet_shows_nothing(make_experiment, capsys):
    assert isinstance(make_reporter(quiet=True), SilentReporter)
    assert main(["run", str(make_experiment()), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out.count("\n") == 1  # the one-line summary


def test_not_on_a_terminal_the_log_gets_a_line_per_fold(make_experiment, capsys):
    assert isinstance(make_reporter(quiet=False), LineReporter)  # pytest's stdout and stderr are not terminals
    path = make_experiment()
    assert main(["run", str(path)]) == 0
    lines = [re.sub(r"^\[\d\d:\d\d:\d\d\] ", "[T] ", line) for line in capsys.readouterr().out.splitlines()]
    assert lines[:2] == [
        "[T] checking the model builder builder.py:build ...",
        "[T] tiny: 4 folds (2 candidates x 2 splits)",
    ]
    scores = r": accuracy=\d\.\d{4} \(\d+\.\ds\)"  # scores and times vary; the rest is exact
    folds = [(1, 1, 1, 4), (2, 1, 2, 4), (3, 2, 1, 8), (4, 2, 2, 8)]
    for line, (n, candidate, fold, units) in zip(lines[2:6], folds, strict=True):
        assert re.fullmatch(rf"\[T\] done   {n}/4 candidate {candidate} fold {fold} \(units={units}\){scores}", line)
    folder = path.parent / "results" / "tiny"
    assert lines[6:] == [f"{folder}: 4 done, 0 failed, 0 left of 4 folds. See: gridcv results {folder}"]


@pytest.fixture
def utc(monkeypatch):
    """Local time is UTC for the test, so lines' time stamps are known."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


class FakeClock:
    """Seconds since the epoch that move only when the test says so: starts at 10:00:00 UTC."""

    def __init__(self) -> None:
        self.now = 10 * 3600.0

    def __call__(self) -> float:
        return self.now


def _task(candidate: int, fold: int, units: int) -> FoldTask:
    return FoldTask(f"t{candidate}{fold}", f"c{candidate}", candidate, fold, {"units": units}, 0)


def _epoch(task: FoldTask, epoch: int, epochs: int = 10) -> EpochEnded:
    return EpochEnded(task.task_id, epoch, epochs)


def test_log_lines_for_done_failed_retried_refit_and_the_heartbeat(utc):
    out, clock = io.StringIO(), FakeClock()
    reporter = LineReporter(out, heartbeat=3600, clock=clock)
    first, second, refit = _task(0, 0, 4), _task(0, 1, 4), _task(1, REFIT_FOLD, 8)
    reporter.begin(RunShape("tiny", 4, 1, 2, 2))
    reporter.heartbeat()  # nothing in flight: no line
    reporter.fold_started(first, 1, 16, 0)
    clock.now += 65
    reporter.heartbeat()
    reporter.epoch_ended(first, _epoch(first, 3))
    reporter.fold_finished(first, FoldOutcome("t00", OutcomeKind.OOM, message="MemoryError"), FoldStatus.PENDING)
    reporter.fold_started(first, 2, 8, 0)
    clock.now += 600
    reporter.epoch_ended(first, _epoch(first, 5))
    reporter.heartbeat()
    done = FoldOutcome("t00", OutcomeKind.DONE, scores={"accuracy": 0.75, "f1_macro": 0.5}, fit_time=12.34)
    reporter.fold_finished(first, done, FoldStatus.DONE)
    failed = FoldOutcome("t01", OutcomeKind.ERROR, message="ValueError: this candidate always fails")
    reporter.fold_finished(second, failed, FoldStatus.FAILED)
    reporter.message("refitting the best candidate by accuracy ({'units': 8}) on all 60 samples")
    reporter.fold_finished(refit, FoldOutcome("r", OutcomeKind.DONE, fit_time=3.0), FoldStatus.DONE)
    reporter.end()
    assert out.getvalue().splitlines() == [
        "[10:00:00] tiny: 4 folds (2 candidates x 2 splits), 1 already finished",
        "[10:01:05] running 1/4 candidate 1 fold 1 (units=4): no epoch finished yet, 1m05s in",
        "[10:01:05] retry  1/4 candidate 1 fold 1 (units=4): oom: MemoryError",
        "[10:11:05] running 1/4 candidate 1 fold 1 (units=4): epoch 5/10 checkpointed, 10m00s in",
        "[10:11:05] done   2/4 candidate 1 fold 1 (units=4): accuracy=0.7500 f1_macro=0.5000 (12.3s)",
        "[10:11:05] failed 3/4 candidate 1 fold 2 (units=4): ValueError: this candidate always fails",
        "[10:11:05] refitting the best candidate by accuracy ({'units': 8}) on all 60 samples",
        "[10:11:05] done   3/4 candidate 2 refit (units=8): trained (3.0s)",
    ]


def test_the_heartbeat_names_each_fold_in_flight_and_its_slot(utc):
    out, clock = io.StringIO(), FakeClock()
    reporter = LineReporter(out, heartbeat=3600, clock=clock)
    a, b = _task(0, 0, 4), _task(0, 1, 4)
    reporter.begin(RunShape("tiny", 4, 0, 2, 2, ("GPU 0", "GPU 1")))
    reporter.fold_started(b, 1, 16, 1)
    reporter.fold_started(a, 1, 16, 0)
    clock.now += 30
    reporter.epoch_ended(b, _epoch(b, 2, 4))
    reporter.heartbeat()
    reporter.end()
    assert out.getvalue().splitlines() == [
        "[10:00:00] tiny: 4 folds (2 candidates x 2 splits), on 2 slots (GPU 0, GPU 1)",
        "[10:00:30] running 0/4 candidate 1 fold 1 (units=4) on GPU 0: no epoch finished yet, 0m30s in",
        "[10:00:30] running 0/4 candidate 1 fold 2 (units=4) on GPU 1: epoch 2/4 checkpointed, 0m30s in",
    ]


def test_the_heartbeat_thread_prints_during_a_fold_and_stops_with_the_run(utc):
    out, clock = io.StringIO(), FakeClock()
    reporter = LineReporter(out, heartbeat=0.05, clock=clock)
    reporter.begin(RunShape("tiny", 2, 0, 1, 2))
    task = _task(0, 0, 4)
    reporter.fold_started(task, 1, 16, 0)
    reporter.epoch_ended(task, _epoch(task, 2))
    deadline = time.monotonic() + 10
    while out.getvalue().count("\n") < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    reporter.end()
    lines = out.getvalue().splitlines()
    assert lines[1] == "[10:00:00] running 0/2 candidate 1 fold 1 (units=4): epoch 2/10 checkpointed, 0m00s in"
    assert set(lines[1:]) == {lines[1]}
    count = len(lines)
    time.sleep(0.2)
    assert len(out.getvalue().splitlines()) == count  # end() stopped the thread


# Fails its 2nd and 3rd builds (the 1st is gridcv's up-front check): the first fold needs two retries.
FLAKY_BUILDER = TINY_BUILDER.replace(
    "def build(params, input_shape, n_classes):\n",
    """def build(params, input_shape, n_classes):
    import pathlib
    counter = pathlib.Path(__file__).with_name("builds")
    n = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(n))
    if n in (2, 3):
        raise RuntimeError(f"flaky build {n}")
""",
)


def test_command_line_execution_keys_win_over_the_file(make_experiment, capsys):
    path = make_experiment(builder=FLAKY_BUILDER, execution={"isolation": "process", "folds_per_worker": 1})
    assert main(["run", str(path), "--quiet", "--isolation", "inline", "--max-retries", "2"]) == 0
    folds = gridcv.load_folds(path)
    assert folds["worker_id"].tolist() == ["inline"] * 4  # --isolation won over the file's process
    # --max-retries 2 won over the file's default of 0: the first fold failed twice and was retried twice
    assert folds["status"].tolist() == ["done"] * 4 and folds["attempts"].tolist() == [3, 1, 1, 1]
    attempts = gridcv.load_attempts(path)
    first = attempts[attempts["task_id"] == folds["task_id"].iloc[0]]
    assert first["outcome"].tolist() == ["error", "error", "done"]
    assert first["message"].tolist()[:2] == ["RuntimeError: flaky build 2", "RuntimeError: flaky build 3"]


def test_without_the_option_the_files_max_retries_applies(make_experiment):
    path = make_experiment(builder=FLAKY_BUILDER)  # max_retries: 0 by default
    assert main(["run", str(path), "--quiet"]) == 0
    assert gridcv.load_folds(path)["status"].tolist() == ["failed", "failed", "done", "done"]  # builds 2 and 3


def test_every_execution_key_is_a_command_line_option_made_from_the_schema():
    from gridcv.cli import _parser
    from gridcv.config import ExecutionSpec

    run = next(a for a in _parser()._subparsers._group_actions[0].choices.values() if a.prog.endswith(" run"))
    options = {a.dest: a for a in run._actions if a.option_strings}
    for name, field in ExecutionSpec.model_fields.items():
        option = options[name]
        assert option.option_strings == [f"--{name.replace('_', '-')}"]
        assert option.help == field.description and option.help
    assert options["on_oom"].choices == ["retry_smaller_batch", "skip", "stop"]
    assert options["isolation"].choices == ["process", "inline"]
    assert options["folds_per_worker"].type is int and options["max_worker_memory"].metavar == "SIZE"
