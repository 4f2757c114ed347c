"""The HTML report: every section from the store, for finished, interrupted, failing, single-candidate,
segmentation and large runs; ``gridcv report``; ``gridcv run`` writing it; ``gridcv.load_history``.

Stores are written through gridcv's store API (tests/report_stores.py); the
segmentation run trains for real. tests/test_report_browser.py opens reports
in a real browser.
"""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path

import numpy as np
import pytest

import gridcv
from gridcv.cli import main
from gridcv.execution.messages import OutcomeKind
from gridcv.report.page import DASH
from gridcv.report.tables import load_history
from gridcv.store import ResultStore, RunLock
from tests.conftest import SEGMENTATION_BUILDER, write_segmentation
from tests.report_stores import TRACEBACK, SyntheticRun, fast_folder, grid_of

SECTIONS = ["leaderboard", "comparison", "folds", "hyperparameters", "training", "reliability"]


def plots(html: str) -> dict[str, str]:
    """Plot key -> how it is embedded (``svg`` or ``png``), checking each is non-empty."""
    found = {}
    for key, body in re.findall(r'<figure data-plot="([^"]+)">(.*?)</figure>', html, flags=re.S):
        if body.startswith("<svg"):
            width, height = re.match(r'<svg[^>]*width="([\d.]+)pt" height="([\d.]+)pt"', body).groups()
            assert float(width) > 50 and float(height) > 50 and body.count("<path") > 3, key
            found[key] = "svg"
        else:
            data = re.match(r'<img alt="[^"]*" src="data:image/png;base64,([^"]+)">', body).group(1)
            assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n", key
            found[key] = "png"
    return found


def leaderboard_rows(html: str) -> list[list[str]]:
    """The leaderboard's cells as text, row by row."""
    table = html.split('id="leaderboard"')[1].split("</table>")[0]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table.split("<tbody>")[1], flags=re.S)
    return [[re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", r, flags=re.S)] for r in rows]


def finished_run(folder: Path) -> SyntheticRun:
    """Four candidates x 5 folds, all done: #2 best; #1 0.016 behind with p = 0.028 (tests/test_report_stats.py);
    #3 0.004 behind with p = 0.44; #4 clearly worse. One fold resumed, one stopped early."""
    run = SyntheticRun(folder / "results", grid_of(4), 5, split_sizes=[(80, 20)] * 5)
    base = [0.90, 0.85, 0.88, 0.92, 0.87]
    for f in range(5):
        run.done(0, f, base[f] - [0.02, 0.01, 0.03, 0.01, 0.01][f], resumed=2 if f == 1 else 0)
        run.done(1, f, base[f], info={"stopped_epoch": 3, "best_epoch": 2} if f == 0 else None)
        run.done(2, f, base[f] - [0.05, -0.04, 0.03, -0.02, 0.0][f])
        run.done(3, f, base[f] - 0.3 + 0.01 * f)
    return run


def test_a_finished_run_has_every_section_and_marks_the_candidates_the_test_cannot_tell_apart(tmp_path):
    with fast_folder(tmp_path) as folder:
        run = finished_run(folder)
        path = gridcv.write_report(run.folder)
        html = path.read_text()
    assert path == run.folder / "report.html"
    assert [a for a in re.findall(r'<section id="([^"]+)"', html)] == SECTIONS
    assert plots(html) == dict.fromkeys(
        ["fold-paired", "fold-heatmap", "param-effects", "learning-curves", "timeline", "memory"], "svg"
    )
    rows = leaderboard_rows(html)
    assert [r[:4] for r in rows] == [
        ["1", "#2", "0.003", "8"], ["2", "#3", "0.01", "8"], ["3", "#1", "0.001", "8"], ["4", "#4", "0.03", "8"]
    ]  # fmt: skip
    # Holm over 3 comparisons: #4's p ~ 0 is tripled, #1's 0.028 doubled (0.056 >= 0.05), #3's 0.44 kept.
    verdicts = [["complete", "best"], ["complete", "≈ best"], ["complete", "≈ best"], ["complete", "worse"]]
    assert [r[-2:] for r in rows] == verdicts
    means = ["0.8840 ± 0.0242", "0.8800 ± 0.0335", "0.8680 ± 0.0248", "0.6040 ± 0.0287"]  # np.std, as scikit-learn
    assert [r[4] for r in rows] == means
    assert "fold 1: 0.9000; fold 2: 0.8500; fold 3: 0.8800; fold 4: 0.9200; fold 5: 0.8700" in html
    assert "20 (4 candidates x 5 splits): 20 done, 0 failed, 0 retried, 0 attempts out of memory, 0 left" in html
    assert "Only 5 folds: the t-test has 4 degrees of freedom" in html  # k < 10, in plain words
    assert "n_train = 80 and n_test = 20 samples per split" in html
    assert "gridcv 0.1.0, tensorflow 2.21.0, keras 3.15.1" in html
    assert re.findall(r'(?:src|href)="(?!#|data:)', html) == []  # nothing to fetch: opens anywhere
    assert "<script src" not in html and "@import" not in html


def test_an_interrupted_run_shows_its_unfinished_folds_and_a_live_one_says_so(tmp_path):
    with fast_folder(tmp_path) as folder:
        run = SyntheticRun(folder / "results", grid_of(2), 5, split_sizes=[(80, 20)] * 5)
        for f in range(3):
            run.done(0, f, 0.8 + 0.01 * f)
        run.done(1, 0, 0.7)
        run.running(1, 1)  # the run was killed while this fold trained
        html = gridcv.write_report(run.folder).read_text()
        lock = RunLock(run.folder)
        lock.acquire()
        try:
            live = gridcv.write_report(run.folder, folder / "live.html").read_text()
        finally:
            lock.release()
    assert "The run stopped before every fold finished (interrupted or crashed): 6 folds are left." in html
    assert [r[-2] for r in leaderboard_rows(html)] == ["3/5 done, 2 left", "1/5 done, 1 running, 3 left"]
    assert [r[0] for r in leaderboard_rows(html)] == [DASH, DASH]  # no rank before a candidate is complete
    assert "grey cells are folds not finished" in html
    assert set(plots(html)) == {"fold-paired", "fold-heatmap", "param-effects", "learning-curves", "timeline", "memory"}
    assert "A run is in progress (pid " in live and "The run stopped" not in live


def test_failed_and_out_of_memory_folds_are_in_the_reliability_section(tmp_path):
    with fast_folder(tmp_path) as folder:
        run = SyntheticRun(folder / "results", [{"units": 4}, {"units": "<big>"}], 2, split_sizes=[(50, 50)] * 2)
        run.ended(0, 0, OutcomeKind.OOM, "ResourceExhaustedError: OOM when allocating")
        run.ended(0, 0, OutcomeKind.KILLED, "the worker was killed by SIGKILL (out of memory?)", worker="w2")
        run.done(0, 0, 0.8, worker="w3")
        run.done(0, 1, 0.75, worker="w3")
        for f in range(2):
            run.ended(1, f, OutcomeKind.ERROR, "ValueError: this candidate always fails <b>here</b>", TRACEBACK)
        with ResultStore.open(run.folder, readonly=True) as store:
            assert len(store.attempt_rows()) == 6
        html = gridcv.write_report(run.folder).read_text()
    assert "4 (2 candidates x 2 splits): 2 done, 2 failed, 1 retried, 2 attempts out of memory, 0 left" in html
    assert "Attempts: 2 done, 2 error, 1 oom, 1 killed." in html
    failures = html.split('id="reliability"')[1]
    table = [
        [re.sub(r"<[^>]+>", "", c).split("traceback")[0] for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", failures.split("<tbody>")[1], re.S)
    ]
    assert table == [
        ["#1 fold 1", "1", "oom", "32", "done", "ResourceExhaustedError: OOM when allocating"],
        ["#1 fold 1", "2", "killed", "32", "done", "the worker was killed by SIGKILL (out of memory?)"],
        ["#2 fold 1", "1", "error", "32", "failed", "ValueError: this candidate always fails &lt;b&gt;here&lt;/b&gt;"],
        ["#2 fold 2", "1", "error", "32", "failed", "ValueError: this candidate always fails &lt;b&gt;here&lt;/b&gt;"],
    ]
    assert "raise ValueError(&quot;this candidate always fails &lt;b&gt;here&lt;/b&gt;&quot;)" in html
    assert "<b>here</b>" not in html and "<big>" not in html and "&lt;big&gt;" in html  # everything escaped
    assert [r[-2] for r in leaderboard_rows(html)] == ["complete", "0/2 done, 2 failed"]
    assert "A single candidate" not in html and "#2" in html


def test_a_segmentation_run_of_a_single_candidate_renders(tmp_path, make_experiment):
    write_segmentation(tmp_path / "seg")
    data = {"kind": "images", "root": "seg/images", "masks": "seg/masks", "n_classes": 3, "color_mode": "grayscale"}
    path = make_experiment(
        builder=SEGMENTATION_BUILDER,
        data=data,
        grid={"filters": [4]},
        fit={"epochs": 2, "batch_size": 4},
        scoring=["mean_iou", "pixel_accuracy"],
    )
    summary = gridcv.run_experiment(path)
    html = gridcv.write_report(summary.folder).read_text()
    assert "A single candidate: there is nothing to compare it with." in html
    assert "The grid has a single candidate, or no fold is done yet" in html
    assert set(plots(html)) == {"fold-paired", "fold-heatmap", "learning-curves", "timeline", "memory"}
    assert "mean_iou, pixel_accuracy (candidates ranked by mean_iou)" in html
    assert [r[-2:] for r in leaderboard_rows(html)] == [["complete", "best"]]


@pytest.mark.slow  # it times itself: run with the serial tests, not beside another on the same cores
def test_200_candidates_by_5_folds_take_under_10_seconds_and_5_mb(tmp_path):
    rng = np.random.default_rng(0)
    with fast_folder(tmp_path) as folder:
        run = SyntheticRun(folder / "results", grid_of(200), 5, split_sizes=[(1437, 360)] * 5)
        quality = rng.uniform(0.6, 0.95, 200)
        for c in range(200):
            for f in range(5):
                run.done(c, f, float(quality[c] + rng.normal(0, 0.01)), worker=f"w{c % 4}")
        start = time.perf_counter()
        path = gridcv.write_report(run.folder)
        seconds = time.perf_counter() - start
        size = path.stat().st_size
        html = path.read_text()
    assert seconds < 10, f"{seconds:.1f} s"
    assert size < 5 * 2**20, f"{size / 2**20:.1f} MB"
    assert len(leaderboard_rows(html)) == 200
    assert set(plots(html)) == {
        "fold-paired", "fold-heatmap", "param-effects", "param-heatmap", "learning-curves", "timeline", "memory"
    }  # fmt: skip
    assert "the top 40 of 200 candidates" in html
    print(f"200 x 5 folds: {seconds:.2f} s, {size / 2**20:.2f} MB")


def test_load_history_has_a_row_per_fold_and_epoch(tmp_path):
    with fast_folder(tmp_path) as folder:
        run = SyntheticRun(folder / "results", [{"units": 4}, {"units": 8}], 2, split_sizes=[(50, 50)] * 2)
        run.done(0, 0, 0.5, epochs=2)
        run.done(1, 1, 0.8, epochs=3)
        run.ended(1, 0, OutcomeKind.ERROR, "ValueError: boom")
        history = gridcv.load_history(run.folder)
        assert load_history(gridcv.load_search(run.folder)).equals(history)  # a SearchResults names its folder
        assert history.columns.tolist() == [
        "task_id", "candidate", "params", "param_units", "fold", "status", "epoch",
        "accuracy", "loss", "val_accuracy", "val_loss",
    ]  # fmt: skip
    assert history[["candidate", "fold", "status", "epoch"]].values.tolist() == [
        [0, 0, "done", 1], [0, 0, "done", 2],
        [1, 0, "failed", 1], [1, 0, "failed", 2],
        [1, 1, "done", 1], [1, 1, "done", 2], [1, 1, "done", 3],
    ]  # fmt: skip
    assert history["loss"].tolist()[:2] == [1.0, 0.5] and history["loss"].tolist()[2:4] == [1.0, 0.8]
    assert history["accuracy"].isna().tolist() == [False, False, True, True, False, False, False]


def test_gridcv_report_writes_the_file_and_says_where(tmp_path, capsys):
    with fast_folder(tmp_path) as folder:
        run = finished_run(folder)
        assert main(["report", str(run.folder)]) == 0
        assert capsys.readouterr().out == f"wrote {run.folder.resolve() / 'report.html'}\n"
        assert main(["report", str(run.folder), "-o", str(folder / "elsewhere.html")]) == 0
        assert (folder / "elsewhere.html").read_text().startswith("<!DOCTYPE html>")
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.startswith(f"gridcv: error: {tmp_path / 'nothing'}: no gridcv results here")


def test_gridcv_run_writes_the_report_unless_told_not_to(make_experiment, capsys):
    path = make_experiment()
    folder = path.parent / "results" / "tiny"
    assert main(["run", str(path), "--no-report"]) == 0
    assert not (folder / "report.html").exists()
    assert main(["run", str(path)]) == 0
    assert "report: " + str(folder / "report.html") in capsys.readouterr().out
    html = (folder / "report.html").read_text()
    assert "tiny: cross-validation report" in html
    assert "A run is in progress" not in html  # written once the run has released the folder


def test_a_report_that_cannot_be_written_is_a_warning_not_a_failed_run(make_experiment, capsys):
    path = make_experiment()
    folder = path.parent / "results" / "tiny"
    (folder / "report.html").mkdir(parents=True)  # a folder where the file should go: writing it fails
    assert main(["run", str(path)]) == 0
    out = capsys.readouterr().out
    assert re.search(
        r"warning: the report could not be written \(IsADirectoryError: .*\); the results are not affected\. "
        rf"Try again with: gridcv report {re.escape(str(folder))}",
        out,
    ), out
    assert out.splitlines()[-1].startswith(f"{folder}: 4 done, 0 failed, 0 left of 4 folds.")


def test_a_run_whose_every_fold_failed_still_gets_its_report(make_experiment, capsys):
    path = make_experiment(grid={"explode": ["yes"]})
    folder = path.parent / "results" / "tiny"
    assert main(["run", str(path)]) == 1
    captured = capsys.readouterr()
    assert "gridcv: failed: every fold failed (2 of 2)" in captured.err
    assert f"report: {folder / 'report.html'}" in captured.out
    html = (folder / "report.html").read_text()
    assert "2 (1 candidate x 2 splits): 0 done, 2 failed" in html
    assert html.count("ValueError: this candidate always fails") >= 2  # in the failures table, with tracebacks
