"""The ``gridcv`` command: thin; parses arguments and calls one library function per command."""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
import types
from collections.abc import Sequence
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from gridcv.config.schema import ExecutionSpec
from gridcv.errors import AllFoldsFailed, GridcvError, RunInterrupted, UserError


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
    _add_execution_options(run.add_argument_group("execution (overrides the file's execution: section)"))

    status = sub.add_parser("status", help="how far a run is")
    status.add_argument("path", help="results folder or experiment file")

    results = sub.add_parser("results", help="the ranked results table")
    results.add_argument("path", help="results folder or experiment file")
    results.add_argument("--csv", metavar="FILE", help="write the full cv_results_ table as CSV")
    results.add_argument("--all-columns", action="store_true", help="print every cv_results_ column")
    return parser


def _add_execution_options(group: argparse._ArgumentGroup) -> None:
    """One option per ``execution:`` key, generated from the schema: name, choices, type and help."""
    for name, field in ExecutionSpec.model_fields.items():
        kind: Any = field.annotation
        if get_origin(kind) in (Union, types.UnionType):  # X | None: the option takes an X
            kind = next(a for a in get_args(kind) if a is not type(None))
        if get_origin(kind) is Annotated:  # PositiveInt and friends
            kind = get_args(kind)[0]
        kwargs: dict[str, Any] = {"dest": name, "help": field.description}
        if get_origin(kind) is Literal:
            kwargs["choices"] = list(get_args(kind))
        elif kind is int:
            kwargs.update(type=int, metavar="N")
        else:
            kwargs["metavar"] = "SIZE"  # ByteSize: pydantic parses '4GiB' when the section is validated
        group.add_argument(f"--{name.replace('_', '-')}", **kwargs)


def _run(args: argparse.Namespace) -> int:
    from gridcv.runner import RunOptions, run_experiment
    from gridcv.runner.progress import make_reporter
    from gridcv.store import FoldStatus

    overrides = {k: getattr(args, k) for k in ExecutionSpec.model_fields if getattr(args, k) is not None}
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
    from gridcv.runner.status import format_status, read_status

    print(format_status(read_status(args.path)))
    return 0


def _results(args: argparse.Namespace) -> int:
    if args.csv or args.all_columns:
        from gridcv.results import format_table, load_results

        table = load_results(args.path)
        if args.csv:
            table.to_csv(args.csv, index=False)
            print(f"wrote {len(table)} candidates to {args.csv}")
        else:
            print(format_table(table))
        warnings = table.attrs["warnings"]
    else:  # the ranked table needs no pandas: it prints at once
        from gridcv.search import format_ranked, load_search

        search = load_search(args.path)
        print(format_ranked(search))
        warnings = search.warnings
    for warning in warnings:
        print(f"warning: {warning}")
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
