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
from gridcv.runner.live import TerminalReporter, estimate_remaining
from gridcv.runner.progress import FinishedFold, LineReporter, RunShape, SilentReporter, make_reporter
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
    assert lines[6:] == [
        f"[T] report: {folder / 'report.html'}",
        f"{folder}: 4 done, 0 failed, 0 left of 4 folds. See: gridcv results {folder}",
    ]


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
    assert options["backend"].choices == ["local", "dask"] and options["slots"].type is int
    assert (options["devices"].metavar, options["devices"].choices) == ("DEVICES", None)
    assert options["dask_scheduler"].metavar == "ADDRESS" and options["gpu_memory_limit"].metavar == "SIZE"


class FakeMonotonic:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _live(width: int = 80) -> tuple[TerminalReporter, FakeMonotonic, io.StringIO]:
    out, clock = io.StringIO(), FakeMonotonic()
    console = Console(file=out, width=width, force_terminal=True, color_system=None)
    return TerminalReporter(console, clock=clock, refresh_per_second=1000), clock, out


def _screen(reporter: TerminalReporter) -> list[str]:
    lines = [line.plain for line in reporter.lines()]
    assert all(len(line) <= 80 for line in lines), lines
    return lines


def test_the_live_display_nests_candidate_fold_and_epoch_with_the_best_score_and_an_eta():
    reporter, clock, _ = _live()
    first = FoldTask("t00", "c0", 0, 0, {"filters": 8, "learning_rate": 0.001}, 0)
    second = FoldTask("t10", "c1", 1, 0, {"filters": 16, "learning_rate": 0.001}, 0)
    reporter.begin(RunShape("digits-cnn", 12, 0, 4, 3, ("cpu",), "accuracy"))
    head = "digits-cnn " + "─" * 36 + " 0/12 folds  0:00:00  ETA -:--:--"
    assert _screen(reporter) == [head]
    reporter.fold_started(first, 1, 32, 0)
    clock.now += 30
    reporter.epoch_ended(first, EpochEnded("t00", 5, 8))
    assert _screen(reporter) == [
        head.replace("0:00:00", "0:00:30"),
        "  candidate 1/4  fold 1/3  epoch 5/8 ━━━━━━━╸────  filters=8, learning_rate=0.0…",
    ]
    clock.now += 30
    done = FoldOutcome("t00", OutcomeKind.DONE, scores={"accuracy": 0.9}, fit_time=59.5, score_time=0.5)
    reporter.fold_finished(first, done, FoldStatus.DONE)
    reporter.fold_started(second, 2, 16, 0)
    clock.now += 15
    # 11 folds left at the 60 s the first took, less the 15 s the one in flight has run: 645 s.
    assert _screen(reporter) == [
        "digits-cnn ━━━" + "─" * 33 + " 1/12 folds  0:01:15  ETA 0:10:45",
        "  best accuracy 0.9000 (1/3 folds) candidate 1/4: filters=8, learning_rate=0.001",
        "  candidate 2/4  fold 1/3  first epoch (attempt 2, batch 16)  filters=16, learn…",
    ]
    reporter.end()


def test_a_resumed_run_has_its_eta_and_best_score_from_the_store_at_once():
    reporter, _, _ = _live()
    finished = tuple(
        FinishedFold(c, {"units": 4 * (c + 1)}, seconds, score)
        for c, seconds, score in [(0, 100.0, 0.7), (0, 110.0, 0.8), (1, 40.0, 0.9), (1, None, None)]
    )
    reporter.begin(RunShape("tiny", 8, 4, 4, 2, ("GPU 0", "GPU 1"), "accuracy", finished))
    # Candidates 1 and 2 are finished (2 has a failed fold, so no mean: it cannot be best); 3 and 4 have
    # 2 folds each at the mean of every fold's time (250 / 3 s): 333 s of work shared by 2 slots.
    assert _screen(reporter) == [
        "tiny " + "━" * 20 + "─" * 20 + " 4/8 folds  0:00:00  ETA 0:02:47",
        "  best accuracy 0.7500 candidate 1/4: units=4",
    ]
    reporter.end()


def test_each_slot_in_flight_has_a_line_named_by_the_slot():
    reporter, _, _ = _live()
    reporter.begin(RunShape("tiny", 4, 0, 2, 2, ("GPU 0", "GPU 1"), "accuracy"))
    reporter.fold_started(_task(1, 1, 8), 1, 16, 1)
    reporter.fold_started(_task(0, 0, 4), 1, 16, 0)
    reporter.fold_started(_task(1, REFIT_FOLD, 8), 1, 16, 1)  # the slot's next task replaces its line
    assert _screen(reporter)[1:] == [
        "  GPU 0: candidate 1/2  fold 1/2  first epoch  units=4",
        "  GPU 1: refit of candidate 2  first epoch  units=8",
    ]
    reporter.end()


@pytest.mark.parametrize(
    ("seconds", "left", "running", "slots", "expected"),
    [
        ({}, {0: 3}, [], 1, None),  # nothing finished yet: no estimate
        ({0: [10.0, 20.0]}, {0: 1, 1: 2}, [], 1, 45.0),  # own mean 15; overall mean 15 for the unknown one
        ({0: [10.0], 1: [30.0]}, {0: 2, 1: 2}, [], 2, 40.0),  # 2*10 + 2*30 shared by 2 slots
        ({0: [10.0], 1: [30.0]}, {0: 2, 1: 2}, [(1, 12.0)], 2, 34.0),  # 12 s of a 30 s fold already run
        ({0: [10.0]}, {0: 1}, [(0, 25.0)], 1, 0.0),  # running past its expected time: never negative
    ],
)
def test_the_eta_weighs_each_candidates_own_fold_time(seconds, left, running, slots, expected):
    assert estimate_remaining(seconds, left, running, slots) == expected


def test_no_line_of_a_real_run_wraps_on_an_80_column_terminal(make_experiment):
    out = io.StringIO()
    reporter = TerminalReporter(Console(file=out, force_terminal=True, width=80, color_system=None))
    long = {"units": [4], "learning_rate": [0.0123456789], "dropout": [0.123456789123], "momentum_name": ["nesterov"]}
    gridcv.run_experiment(make_experiment(grid=long, fit={"epochs": 2, "batch_size": 16}), reporter=reporter)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())  # cursor moves and the like
    lines = [line for chunk in text.split("\n") for line in chunk.split("\r")]
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    assert "done   candidate 1 fold 2 (dropout=0.123456789123, learning_rate=0.0123456789, …" in lines
    assert re.fullmatch(r"tiny ━{40} 2/2 folds  \d:\d\d:\d\d  ETA 0:00:00", lines[-3]), lines[-3]
    assert re.fullmatch(
        r"  best accuracy \d\.\d{4} candidate 1/1: dropout=0\.123456789123, learning_rate=0\.0…", lines[-2]
    )


SEVERAL_FOLDS_IN_FILE = {
    "isolation": "process",
    "devices": [0, 1],
    "workers_per_device": 2,
    "gpu_memory_limit": "8GiB",
    "slots": 3,
    "backend": "dask",
    "dask_scheduler": "tcp://10.0.0.5:8786",
}


def test_the_several_folds_keys_are_read_from_the_file_and_each_flag_wins(make_experiment):
    """The six keys of issue 12 under their contract names, then each given on the command line."""
    from gridcv.cli import _parser, execution_overrides
    from gridcv.config import ExecutionSpec, load_experiment
    from gridcv.runner.checks import execution_spec

    experiment = load_experiment(make_experiment(execution=SEVERAL_FOLDS_IN_FILE))
    plain = _parser().parse_args(["run", "experiment.yaml"])
    assert execution_spec(experiment, execution_overrides(plain)) == ExecutionSpec(**SEVERAL_FOLDS_IN_FILE)
    flags = ["--devices", "cpu", "--workers-per-device", "1", "--gpu-memory-limit", "2GiB", "--slots", "2"]
    flags += ["--backend", "local", "--dask-scheduler", "/shared/scheduler.json"]
    args = _parser().parse_args(["run", "experiment.yaml", *flags])
    merged = execution_spec(experiment, execution_overrides(args))
    assert merged.model_dump() == {
        **ExecutionSpec().model_dump(),
        "isolation": "process",  # from the file: no flag given
        "devices": "cpu",
        "workers_per_device": 1,
        "gpu_memory_limit": 2 * 1024**3,
        "slots": 2,
        "backend": "local",
        "dask_scheduler": "/shared/scheduler.json",
    }
    one_gpu = _parser().parse_args(["run", "experiment.yaml", "--devices", "1"])
    assert execution_spec(experiment, execution_overrides(one_gpu)).devices == [1]


@pytest.mark.parametrize(("flag", "expected"), [("0,1", [0, 1]), ("cpu", "cpu"), ("GPU-5c3e,1", ["GPU-5c3e", 1])])
def test_devices_on_the_command_line_become_the_schemas_list(flag, expected):
    from gridcv.cli import _parser
    from gridcv.config import ExecutionSpec

    args = _parser().parse_args(["run", "experiment.yaml", "--devices", flag])
    assert ExecutionSpec(devices=args.devices).devices == expected
