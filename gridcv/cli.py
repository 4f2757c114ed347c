"""The ``gridcv`` command: thin; parses arguments and calls one library function per command."""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from gridcv.errors import AllFoldsFailed, GridcvError, RunInterrupted, UserError
from gridcv.jobs import FoldStatus


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gridcv", description="Crash-safe grid-search cross-validation of Keras models."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run (or resume) an experiment")
    run.add_argument("experiment", help="the experiment file (YAML)")
    run.add_argument("--output", help="results folder (default: output: in the file, else results/<name>)")
    run.add_argument("--quiet", action="store_true", help="no progress display")
    run.add_argument("--restart", action="store_true", help="move existing results aside and start again")
    run.add_argument("--retry-failed", action="store_true", help="run failed folds again")
    ex = run.add_argument_group("execution (overrides the file's execution: section)")
    ex.add_argument("--isolation", choices=["process", "inline"])
    ex.add_argument("--max-worker-memory", metavar="SIZE", help="e.g. 4GiB")
    ex.add_argument("--folds-per-worker", type=int, metavar="N")
    ex.add_argument("--on-oom", choices=["retry_smaller_batch", "skip", "stop"])
    ex.add_argument("--min-batch-size", type=int, metavar="N")
    ex.add_argument("--max-retries", type=int, metavar="N")

    status = sub.add_parser("status", help="how far a run is")
    status.add_argument("path", help="results folder or experiment file")

    results = sub.add_parser("results", help="the ranked results table")
    results.add_argument("path", help="results folder or experiment file")
    results.add_argument("--csv", metavar="FILE", help="write the full cv_results_ table as CSV")
    results.add_argument("--all-columns", action="store_true", help="print every cv_results_ column")
    return parser


def _run(args: argparse.Namespace) -> int:
    from gridcv.progress import make_reporter
    from gridcv.runner import RunOptions, run_experiment

    keys = ("isolation", "max_worker_memory", "folds_per_worker", "on_oom", "min_batch_size", "max_retries")
    overrides = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
    options = RunOptions(
        output=args.output, restart=args.restart, retry_failed=args.retry_failed, execution=overrides, debug=args.debug
    )
    summary = run_experiment(args.experiment, options, make_reporter(args.quiet))
    c = summary.counts
    print(
        f"{summary.folder}: {c[FoldStatus.DONE]} done, {c[FoldStatus.FAILED]} failed, "
        f"{c[FoldStatus.PENDING]} left "
        f"of {summary.total} folds. See: gridcv results {summary.folder}"
    )
    return 0


def _status(args: argparse.Namespace) -> int:
    from gridcv.status import format_status, read_status

    print(format_status(read_status(args.path)))
    return 0


def _results(args: argparse.Namespace) -> int:
    import pandas as pd

    from gridcv.results import load_results, ranked_table

    table = load_results(args.path)
    if args.csv:
        table.to_csv(args.csv, index=False)
        print(f"wrote {len(table)} candidates to {args.csv}")
        return 0
    view = table if args.all_columns else ranked_table(table)
    with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 200):
        print(view.to_string(index=False))
    return 0


def _label(exc: GridcvError) -> str:
    """How the error is introduced: ``gridcv: <label>: <message>``."""
    if isinstance(exc, UserError):
        return "error"
    if isinstance(exc, RunInterrupted):
        return "interrupted"
    if isinstance(exc, AllFoldsFailed):
        return "failed"
    return "stopped"


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="gridcv: %(levelname)s: %(message)s")
    commands: dict[str, Any] = {"run": _run, "status": _status, "results": _results}
    try:
        return int(commands[args.command](args))
    except GridcvError as exc:
        if args.debug:
            traceback.print_exc()
        label = _label(exc)
        print(f"gridcv: {label}: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 1))
    except KeyboardInterrupt:
        print("gridcv: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
