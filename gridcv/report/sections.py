"""The report's text sections: header, leaderboard, paired comparison, failures. HTML strings.

Plots come from :mod:`gridcv.report.figures` and :mod:`gridcv.report.figures_runs`;
this module writes the words and tables around them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from html import escape
from typing import Any

import numpy as np

from gridcv.execution.memory import format_bytes
from gridcv.report.data import ReportData, params_text
from gridcv.report.figures import Plot
from gridcv.report.figures_runs import outcome_counts
from gridcv.report.page import DASH, cell, number, probability, strip, table
from gridcv.report.tables import Comparison
from gridcv.store import FoldRow, FoldStatus

COMPARED = 10  # candidates in the comparison table
TRACEBACK_LINES = 12  # last lines of a traceback shown per failure
FAILURES = 100  # rows of the failures table


def _when(t: float | None) -> str:
    return DASH if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _duration(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return DASH
    minutes, s = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else (f"{minutes} min {s:02d} s" if minutes else f"{seconds:.1f} s")


def header(data: ReportData) -> str:
    """Title, what the run was, what it has done and how long it took; the state of the folder now."""
    e = data.experiment
    raw = e.get("cv")
    cv: dict[str, Any] = raw if isinstance(raw, dict) else {}
    splitter = ", ".join(
        [str(cv.get("splitter", "StratifiedKFold"))] + [f"{k}={v}" for k, v in cv.items() if k != "splitter"]
    )
    first = ["gridcv", "tensorflow", "keras"]
    names = sorted(data.versions, key=lambda k: (first.index(k) if k in first else len(first), k))
    versions = ", ".join(f"{k} {data.versions[k]}" for k in names) or "not recorded (run by an older gridcv)"
    seeds = sorted({r.seed for r in data.rows})
    fold_seeds = f"{len(seeds)} fold seeds derived from it ({seeds[0]}, …)" if seeds else "no folds yet"
    facts = [
        ("experiment", f"{data.name} ({data.experiment_file or 'file not recorded'})"),
        ("results folder", str(data.folder)),
        ("fingerprint", data.fingerprint or "not recorded"),
        ("versions", versions),
        ("splitter", f"{splitter}: {data.n_splits} folds per candidate"),
        ("seeds", f"seed {e.get('seed', 0)}, deterministic: {e.get('deterministic', False)}; {fold_seeds}"),
        ("scoring", f"{', '.join(data.scorers)} (candidates ranked by {data.primary})"),
        ("folds", _counts(data)),
        ("time", _times(data)),
        ("report made", _when(data.read_at)),
    ]
    html = f'<h1>{escape(data.name)}: cross-validation report</h1><dl class="facts">'
    html += "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts) + "</dl>"
    if data.holder is not None:
        html += (
            f'<div class="live">A run is in progress ({escape(data.holder.describe())}): this report shows the '
            "folds finished when it was made; folds not finished are shown as such. Run gridcv report again "
            "to refresh it.</div>"
        )
    elif data.count(FoldStatus.PENDING) + data.count(FoldStatus.RUNNING):
        html += (
            '<div class="note">The run stopped before every fold finished (interrupted or crashed): '
            f"{data.count(FoldStatus.PENDING) + data.count(FoldStatus.RUNNING)} folds are left. Run the same "
            "gridcv run again to resume; finished folds are kept.</div>"
        )
    html += "".join(f'<div class="note">{escape(w)}</div>' for w in data.warnings)
    return html


def _counts(data: ReportData) -> str:
    retried = sum(1 for r in data.rows if r.attempts > 1)
    oom = sum(1 for a in data.attempts if a.outcome is not None and a.outcome.is_out_of_memory())
    left = data.count(FoldStatus.PENDING) + data.count(FoldStatus.RUNNING)
    running = f" ({data.count(FoldStatus.RUNNING)} running)" if data.count(FoldStatus.RUNNING) else ""
    return (
        f"{len(data.rows)} ({_plural(data.n_candidates, 'candidate')} x {_plural(data.n_splits, 'split')}): "
        f"{data.count(FoldStatus.DONE)} done, {data.count(FoldStatus.FAILED)} failed, {retried} retried, "
        f"{oom} attempts out of memory, {left} left{running}"
    )


def _plural(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def _times(data: ReportData) -> str:
    spent = sum((a.finished_at or data.read_at) - a.started_at for a in data.attempts)
    fits = [(r.fit_time or 0.0) + (r.score_time or 0.0) for r in data.rows if r.status is FoldStatus.DONE]
    per_fold = _duration(float(np.mean(fits))) if fits else DASH
    starts = [a.started_at for a in data.attempts]
    ends = [a.finished_at for a in data.attempts if a.finished_at]
    span = f", from {_when(min(starts))} to {_when(max(ends))}" if starts and ends else ""
    return f"{_duration(spent)} of training over every attempt{span}; {per_fold} per finished fold (fit and score)"


def leaderboard(data: ReportData, order: Sequence[int], comparison: Comparison | None) -> str:
    """Every candidate, best first: parameters, mean ± std, each fold as a dot, time, epochs, memory, status."""
    r = data.results
    names = [k.removeprefix("param_") for k in r if k.startswith("param_")]
    scores = data.scores()
    low, high = (float(np.nanmin(scores)), float(np.nanmax(scores))) if not np.isnan(scores).all() else (0.0, 1.0)
    verdicts = _verdicts(comparison)
    others = [s for s in data.scorers if s != data.primary]
    header = ["rank", "candidate", *names, f"mean {data.primary} ± std", "folds", *(f"mean {s}" for s in others)]
    header += ["fit s/fold", "epochs", "peak memory", "status", "vs best"]
    rows, classes = [], []
    by_candidate = _rows_by_candidate(data.rows)
    for i in order:
        folds = by_candidate.get(i, [])
        mean, std = _mean_std(scores[i])
        line = cell(str(r[f"rank_test_{data.suffix}"][i]) if _complete(scores[i]) else DASH, _rank_key(data, i))
        line += cell(f"#{i + 1}", i + 1)
        line += "".join(cell(_param(r["params"][i], n), _sortable(r["params"][i].get(n)), "text") for n in names)
        line += cell(f"{number(mean)} ± {number(std)}" if not math.isnan(mean) else DASH, mean)
        line += cell(strip(list(scores[i]), low, high), mean, raw=True, title=_fold_title(scores[i]))
        line += "".join(cell(number(m := float(data.means(s)[i])), m) for s in others)
        line += _resources(folds)
        status, css = _status(folds, data.n_splits)
        line += cell(status, status, css)
        verdict, css, title = verdicts.get(i, (DASH, "muted", ""))
        line += cell(verdict, verdict, css, title=title)
        rows.append(line)
        classes.append("best" if comparison is not None and i == comparison.baseline else "")
    explain = (
        '<p class="explain">Best first (complete candidates by their mean, as scikit-learn ranks them, then the '
        "others by their mean so far). Each dot is one fold's score on a scale shared by every row; the tick is the "
        'mean. <span class="same">≈ best</span> marks candidates the paired test cannot tell apart from the best '
        "(Holm-adjusted p ≥ 0.05, see the next section). Click a column to sort.</p>"
    )
    return explain + table(header, rows, sortable=True, left=2 + len(names), row_class=classes)


def _rows_by_candidate(rows: Sequence[FoldRow]) -> dict[int, list[FoldRow]]:
    out: dict[int, list[FoldRow]] = {}
    for row in rows:
        out.setdefault(row.candidate_index, []).append(row)
    return out


def _complete(scores: np.ndarray) -> bool:
    return bool(len(scores)) and not np.isnan(scores).any()


def _rank_key(data: ReportData, i: int) -> float:
    return float(data.results[f"rank_test_{data.suffix}"][i]) if _complete(data.scores()[i]) else math.inf


def _mean_std(scores: np.ndarray) -> tuple[float, float]:
    present = scores[~np.isnan(scores)]
    return (float(present.mean()), float(present.std())) if len(present) else (math.nan, math.nan)


def _param(params: dict[str, Any], name: str) -> str:
    return str(params[name]) if name in params else DASH


def _sortable(value: Any) -> float | str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return "" if value is None else str(value)


def _fold_title(scores: np.ndarray) -> str:
    return "; ".join(f"fold {k + 1}: {number(float(s))}" for k, s in enumerate(scores))


def _resources(folds: Sequence[FoldRow]) -> str:
    done = [f for f in folds if f.status is FoldStatus.DONE]
    fit = float(np.mean([f.fit_time for f in done if f.fit_time is not None])) if done else math.nan
    epochs = [f.epochs_run for f in done if f.epochs_run is not None]
    mean_epochs = float(np.mean(epochs)) if epochs else math.nan
    peaks = [f.peak_rss for f in folds if f.peak_rss]
    peak = max(peaks) if peaks else None
    epochs_text = DASH if not epochs else (f"{mean_epochs:.1f}" if len(set(epochs)) > 1 else str(epochs[0]))
    return (
        cell(number(fit, 1), fit)
        + cell(epochs_text, mean_epochs)
        + cell(DASH if peak is None else format_bytes(peak), float(peak or 0))
    )


def _status(folds: Sequence[FoldRow], n_splits: int) -> tuple[str, str]:
    counts = {s: sum(1 for f in folds if f.status is s) for s in FoldStatus}
    if counts[FoldStatus.DONE] == n_splits:
        return "complete", ""
    parts = [f"{counts[FoldStatus.DONE]}/{n_splits} done"]
    parts += [f"{counts[s]} {s.value}" for s in (FoldStatus.FAILED, FoldStatus.RUNNING) if counts[s]]
    left = counts[FoldStatus.PENDING] + max(n_splits - len(folds), 0)
    if left:
        parts.append(f"{left} left")
    return ", ".join(parts), "status-failed" if counts[FoldStatus.FAILED] else "status-partial"


def _verdicts(comparison: Comparison | None) -> dict[int, tuple[str, str, str]]:
    """Candidate -> (text, css class, tooltip) of its comparison with the best."""
    if comparison is None:
        return {}
    out = {comparison.baseline: ("best", "", "the baseline of the paired comparison")}
    for row in comparison.table.itertuples():
        if math.isnan(row.p_holm):
            out[row.candidate] = (DASH, "muted", "fewer than two folds shared with the best")
            continue
        tip = (
            f"Holm-adjusted p = {probability(row.p_holm)}; P(equivalent within ±{comparison.rope}) = "
            f"{probability(row.p_equivalent)}"
        )
        out[row.candidate] = ("worse", "worse", tip) if row.differs else ("≈ best", "same", tip)
    return out


def comparison_section(data: ReportData, comparison: Comparison | None, order: Sequence[int]) -> str:
    """The paired comparison of the top candidates with the best, with what it means and its limits."""
    if comparison is None:
        return '<p class="explain">No fold is done yet: nothing to compare.</p>'
    if comparison.table.empty:
        return '<p class="explain">A single candidate: there is nothing to compare it with.</p>'
    c = comparison
    base = c.baseline
    params = escape(params_text(data.results["params"][base]))
    intro = (
        f'<p class="explain">Each candidate is compared with the best, #{base + 1} ({params}), '
        "on the folds both finished, fold by fold (the folds are the same splits for every candidate). "
        "Δ is the best's mean minus the candidate's. The corrected resampled t-test of Nadeau and Bengio "
        f"widens the variance of the differences to (1/k + n_test/n_train)·s², with n_train = {c.n_train:.0f} and "
        f"n_test = {c.n_test:.0f} samples per split, because the training sets of cross-validation overlap; "
        "p is one-sided (H0: the candidate is at least as good) and Holm-corrected across every candidate compared. "
        f"The Bayesian probabilities (as in scikit-learn's example \"Statistical comparison of models using grid "
        f'search") say how likely the best is better by more than {c.rope}, the two are practically equivalent '
        f"(within ±{c.rope}), or the candidate is better by more than {c.rope}.</p>"
    )
    notes = "".join(f'<div class="note">{escape(n)}</div>' for n in c.notes)
    rows = []
    for row in c.table.head(COMPARED).itertuples():
        verdict = DASH if math.isnan(row.p_holm) else ("worse" if row.differs else "≈ best")
        css = {"worse": "worse", "≈ best": "same"}.get(verdict, "muted")
        rows.append(
            cell(f"#{row.candidate + 1}", row.candidate + 1)
            + cell(params_text(row.params), params_text(row.params), "text")
            + cell(number(row.mean_test), row.mean_test)
            + cell(number(row.mean_difference), row.mean_difference)
            + cell(str(row.n_folds), row.n_folds)
            + cell(number(row.t, 2), row.t)
            + cell(probability(row.p_value), row.p_value)
            + cell(probability(row.p_holm), row.p_holm)
            + cell(verdict, verdict, css)
            + cell(probability(row.p_baseline_better), row.p_baseline_better)
            + cell(probability(row.p_equivalent), row.p_equivalent)
            + cell(probability(row.p_candidate_better), row.p_candidate_better)
        )
    header = ["candidate", "parameters", f"mean {c.scorer}", "Δ", "k", "t", "p", "p (Holm)", "verdict"]
    header += ["P(best better)", "P(equivalent)", "P(cand. better)"]
    shown = len(rows)
    more = (
        f'<p class="explain">The {shown} candidates after the best are shown; gridcv.compare(folder) returns '
        "every one.</p>"
        if len(c.table) > shown
        else ""
    )
    return intro + notes + table(header, rows, sortable=True, left=2) + more


def figures(plots: Sequence[Plot | None], empty: str) -> str:
    """Plots with their captions, or ``empty`` when there are none."""
    shown = [p for p in plots if p is not None]
    if not shown:
        return f'<p class="explain">{escape(empty)}</p>'
    return "".join(
        f'<figure data-plot="{escape(p.key)}">{p.html}<figcaption>{escape(p.caption)}</figcaption></figure>'
        for p in shown
    )


def failures(data: ReportData) -> str:
    """How attempts ended, and every attempt that failed or ran out of memory, with its traceback's end."""
    counts = outcome_counts(data.attempts)
    summary = ", ".join(f"{n} {k}" for k, n in counts.items()) or "none yet"
    html = f'<p class="explain">Attempts: {escape(summary)}.</p>'
    folds = {r.task_id: r for r in [*data.rows, *data.refits]}
    bad = [a for a in data.attempts if a.outcome is not None and a.outcome.value in ("error", "oom", "killed", "fatal")]
    if not bad:
        return html + '<p class="explain">No attempt failed or ran out of memory.</p>'
    rows = []
    for a in bad[:FAILURES]:
        r = folds.get(a.task_id)
        what = "?" if r is None else ("refit" if r.is_refit else f"#{r.candidate_index + 1} fold {r.fold + 1}")
        tail = "\n".join((a.error or "").strip().splitlines()[-TRACEBACK_LINES:])
        details = f"<details><summary>traceback</summary><pre>{escape(tail)}</pre></details>" if tail else ""
        rows.append(
            cell(what, what, "text")
            + cell(str(a.attempt), a.attempt)
            + cell(a.outcome.value if a.outcome else "", "", "text")
            + cell(DASH if a.batch_size is None else str(a.batch_size), float(a.batch_size or 0))
            + cell(DASH if r is None else r.status.value, "", "text")
            + cell(f"{escape(a.message or '')}{details}", a.message or "", "text", raw=True)
        )
    more = (
        f'<p class="explain">{len(bad) - FAILURES} more not shown (gridcv.load_attempts lists all).</p>'
        if len(bad) > FAILURES
        else ""
    )
    header = ["fold", "attempt", "cause", "batch", "fold now", "message and the end of its traceback"]
    return html + table(header, rows, sortable=True, left=1) + more
