"""The report in a real browser: headless Chromium opens it from disk, with no network.

Each report must load without a console error or an uncaught exception, ask
for nothing but itself and its inline images, draw every plot at a size above
zero, sort its leaderboard when a header is clicked, and leave a screenshot.
The browser is Debian's ``chromium`` package (``.ci/run`` installs it), driven
over the DevTools protocol on a pipe by tests/browser.py; without one the
tests skip and say why. ``GRIDCV_CHROMIUM`` names another browser.

The slow test makes the README's example: the report of experiments/digits.yaml,
written to reports/digits-cnn.html with its screenshot (not committed).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

import gridcv
from gridcv.execution.messages import OutcomeKind
from gridcv.report.page import DASH
from tests.browser import Browser, find_chromium
from tests.report_stores import TRACEBACK, SyntheticRun, fast_folder, grid_of
from tests.test_report import finished_run

ROOT = Path(__file__).resolve().parents[1]

# Every plot's drawn size, and for images whether they decoded.
PLOT_SIZES = """JSON.stringify(Array.from(document.querySelectorAll("figure")).map(function (f) {
  var e = f.querySelector("svg, img"), r = e.getBoundingClientRect();
  return [f.dataset.plot, e.tagName, Math.round(r.width), Math.round(r.height),
          e.tagName === "IMG" ? e.naturalWidth : -1];
}))"""

# The leaderboard's first "mean <scorer>" column: its values top to bottom, and a click on its header.
MEAN_HEADER = """Array.from(document.querySelectorAll("#leaderboard th"))
  .filter(function (th) { return th.textContent.indexOf("mean ") === 0; })[0]"""
FIRST_MEANS = f"""(function () {{
  var th = {MEAN_HEADER}, col = th.cellIndex;
  var rows = Array.from(th.closest("table").tBodies[0].rows);
  return rows.map(function (r) {{ return r.cells[col].textContent.split(" ")[0]; }});
}})()"""
CLICK_MEAN = f"{MEAN_HEADER}.click()"


@pytest.fixture(scope="module")
def chromium() -> str:
    found = find_chromium()
    if found is None:
        pytest.skip(
            "no Chromium on this machine, so the report was not opened in a browser: install Debian's chromium "
            "package (apt-get install chromium; .ci/run does) or set GRIDCV_CHROMIUM to a Chromium or Chrome"
        )
    return found


def check_in_browser(chromium: str, report: Path, screenshot: Path) -> list[list]:
    """Opens the report; checks errors, requests, plot sizes, sorting and the screenshot. Returns the plots."""
    with Browser(chromium) as browser:
        browser.open(report)
        sizes = yaml.safe_load(browser.evaluate(PLOT_SIZES))  # JSON is YAML
        before = browser.evaluate(FIRST_MEANS)
        browser.evaluate(CLICK_MEAN)
        ascending = browser.evaluate(FIRST_MEANS)
        browser.evaluate(CLICK_MEAN)
        descending = browser.evaluate(FIRST_MEANS)
        png = browser.screenshot(screenshot)
        assert browser.errors == []
        assert [u for u in browser.requests if not u.startswith(("file://", "data:"))] == []
        assert browser.requests[0] == report.resolve().as_uri()
    for key, tag, width, height, natural in sizes:
        assert width > 100 and height > 80, (key, tag, width, height)
        assert natural != 0, f"{key}: the image did not decode"
    numbers = [float(v) for v in before if v != DASH]  # as written: complete candidates first (test_report.py)
    assert [float(v) for v in ascending if v != DASH] == sorted(numbers)  # a click sorts by that column
    assert [float(v) for v in descending if v != DASH] == sorted(numbers, reverse=True)  # another reverses
    assert ascending[len(numbers) :] == [DASH] * (len(before) - len(numbers))  # blanks last either way
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    return sizes


def test_reports_of_finished_failing_and_interrupted_runs_render_in_chromium(chromium, tmp_path):
    with fast_folder(tmp_path) as folder:
        finished = finished_run(folder / "finished").folder
        failing = SyntheticRun(folder / "failing", grid_of(3), 3, split_sizes=[(60, 30)] * 3)
        failing.ended(0, 0, OutcomeKind.OOM, "ResourceExhaustedError: OOM when allocating")
        failing.ended(0, 0, OutcomeKind.KILLED, "the worker was killed by SIGKILL", worker="w2")
        failing.done(0, 0, 0.8, resumed=1)
        failing.done(0, 1, 0.7)
        failing.running(0, 2)  # and the run was killed: an interrupted run
        for f in range(3):
            failing.ended(1, f, OutcomeKind.ERROR, "ValueError: this candidate always fails", TRACEBACK)
            failing.done(2, f, 0.6 + 0.05 * f)
        reports = {
            name: gridcv.write_report(path) for name, path in [("finished", finished), ("failing", failing.folder)]
        }
        for name, report in reports.items():
            sizes = check_in_browser(chromium, report, tmp_path / f"{name}.png")
            assert {s[0] for s in sizes} >= {"fold-paired", "fold-heatmap", "learning-curves", "timeline", "memory"}


@pytest.mark.slow
def test_the_digits_example_report_renders_in_chromium(chromium, tmp_path):
    """The README's example report: experiments/digits.yaml as shipped, with 3 epochs instead of 8, in this process."""
    examples = ROOT / "experiments"
    for helper in ("models.py", "digits_data.py"):
        shutil.copy(examples / helper, tmp_path / helper)
    config = yaml.safe_load((examples / "digits.yaml").read_text())
    config["fit"]["epochs"] = 3
    config["execution"] = {"isolation": "inline"}
    config["output"] = str(tmp_path / "results")
    path = tmp_path / "digits.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    gridcv.run(path, quiet=True)
    out = ROOT / "reports"
    out.mkdir(exist_ok=True)
    report = shutil.copy(tmp_path / "results" / "report.html", out / "digits-cnn.html")
    sizes = check_in_browser(chromium, Path(report), out / "digits-cnn.png")
    assert [s[0] for s in sizes] == [
        "fold-paired", "fold-heatmap", "param-effects", "param-heatmap", "learning-curves", "timeline", "memory"
    ]  # fmt: skip
    html = Path(report).read_text()
    assert "12 (4 candidates x 3 splits): 12 done, 0 failed" in html
    assert "Only 3 folds: the t-test has 2 degrees of freedom" in html
    assert "A run is in progress" not in html  # written by the run, once it has released the folder
    assert np.isfinite(gridcv.compare(tmp_path / "results")["p_holm"]).all()
