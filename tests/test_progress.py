"""The progress display, and command-line execution keys winning over the file's."""

from __future__ import annotations

import io

from rich.console import Console

import gridcv
from gridcv.cli import main
from gridcv.run.progress import SilentReporter, TerminalReporter, make_reporter


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


def test_quiet_or_not_a_terminal_shows_nothing(make_experiment, capsys):
    assert isinstance(make_reporter(quiet=True), SilentReporter)
    assert isinstance(make_reporter(quiet=False), SilentReporter)  # pytest's stderr is not a terminal
    assert main(["run", str(make_experiment()), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out.count("\n") == 1  # the one-line summary


def test_command_line_execution_keys_win_over_the_file(make_experiment, capsys):
    path = make_experiment(execution={"isolation": "process", "folds_per_worker": 1})
    assert main(["run", str(path), "--quiet", "--isolation", "inline", "--max-retries", "2"]) == 0
    assert gridcv.load_folds(path)["worker_id"].tolist() == ["inline"] * 4


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
