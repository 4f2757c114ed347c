"""The report's HTML: one self-contained page (inline CSS, inline SVG, a few lines of JavaScript).

Nothing is fetched: no fonts, scripts or images from elsewhere, so the file
opens from a laptop after ``scp``. Every value from the results (parameters,
messages, tracebacks) is escaped. The only script sorts a table when its
header is clicked.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from html import escape

CSS = """
:root { --fg: #1d2330; --muted: #5c6577; --line: #dde1e8; --warn: #fff4d6; --accent: #2f6fdf; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       margin: 0 auto; max-width: 1200px; padding: 0 20px 60px; }
header { border-bottom: 1px solid var(--line); margin-bottom: 8px; }
h1 { font-size: 22px; margin: 22px 0 4px; } h2 { font-size: 18px; margin: 34px 0 8px; }
nav a { margin-right: 14px; color: var(--accent); text-decoration: none; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 12px 0; }
dl.facts dt { color: var(--muted); } dl.facts dd { margin: 0; }
.note { background: var(--warn); border-left: 4px solid #e0a800; padding: 8px 12px; margin: 10px 0; }
.live { background: #e6f0ff; border-left: 4px solid var(--accent); padding: 8px 12px; margin: 10px 0; }
p.explain { color: var(--muted); max-width: 900px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 13px; }
th, td { padding: 3px 6px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th { background: #f5f6f8; position: sticky; top: 0; }
table.sortable th { cursor: pointer; } table.sortable th:hover { background: #e9ecf1; }
td.text, th.text { text-align: left; }
tr.best td { font-weight: 600; }
.same { color: #1f7a3a; font-weight: 600; } .worse { color: #a33; } .muted { color: var(--muted); }
.status-failed { color: #a33; } .status-partial { color: #a66f00; }
figure { margin: 14px 0 24px; } figure svg, figure img { max-width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: 13px; max-width: 900px; }
details pre { font-size: 12px; background: #f5f6f8; padding: 8px; max-width: 1100px; overflow-x: auto; }
svg.strip { display: block; }
"""

DASH = "\u2013"  # an en dash: what a missing value shows

# Click a header to sort its table by that column, ascending (numbers as numbers, blanks last); again to reverse.
SCRIPT = """
document.querySelectorAll("table.sortable th").forEach(function (th, col) {
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0], up = th.dataset.dir !== "asc";
    th.dataset.dir = up ? "asc" : "desc";
    var key = function (row) {
      var cell = row.cells[col], v = cell.dataset.v !== undefined ? cell.dataset.v : cell.textContent;
      var n = parseFloat(v); return isNaN(n) ? [1, v] : [0, n];
    };
    Array.from(body.rows).sort(function (a, b) {
      var x = key(a), y = key(b);
      if (x[0] !== y[0]) return x[0] - y[0];
      return (x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0) * (up ? 1 : -1);
    }).forEach(function (row) { body.appendChild(row); });
  });
});
"""


def number(value: float | None, digits: int = 4) -> str:
    """A number as the report prints it; an en dash for missing (None or NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    if isinstance(value, float) and math.isinf(value):
        return "\u221e" if value > 0 else "-\u221e"
    return f"{value:.{digits}f}"


def probability(value: float) -> str:
    """A p-value or probability: three decimals, ``<0.001`` below that."""
    if math.isnan(value):
        return DASH
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def cell(text: str, sort: float | str | None = None, cls: str = "", raw: bool = False, title: str = "") -> str:
    """A ``<td>``: ``text`` escaped unless ``raw``; ``sort`` is what the table sorts by."""
    attrs = f' class="{cls}"' if cls else ""
    if sort is not None:
        value = "" if isinstance(sort, float) and math.isnan(sort) else sort
        attrs += f' data-v="{escape(str(value))}"'
    if title:
        attrs += f' title="{escape(title)}"'
    return f"<td{attrs}>{text if raw else escape(text)}</td>"


def table(
    header: Sequence[str], rows: Iterable[str], sortable: bool = False, left: int = 0, row_class: Sequence[str] = ()
) -> str:
    """A table of pre-rendered ``<tr>`` contents; the first ``left`` columns are left-aligned text."""
    heads = "".join(
        f'<th class="text">{escape(h)}</th>' if n < left else f"<th>{escape(h)}</th>" for n, h in enumerate(header)
    )
    classes = list(row_class)
    body = "".join(
        f'<tr class="{classes[n]}">{r}</tr>' if n < len(classes) and classes[n] else f"<tr>{r}</tr>"
        for n, r in enumerate(rows)
    )
    kind = ' class="sortable"' if sortable else ""
    return f'<div class="scroll"><table{kind}><thead><tr>{heads}</tr></thead><tbody>{body}</tbody></table></div>'


def strip(scores: Sequence[float], low: float, high: float, width: int = 130, height: int = 16) -> str:
    """Every fold's score as a dot on one line (shared scale ``low``..``high``), the mean as a tick."""
    present = [s for s in scores if not math.isnan(s)]
    if not present:
        return ""
    span = (high - low) or 1.0

    def x(v: float) -> float:
        return round(4 + (v - low) / span * (width - 8), 1)

    dots = "".join(f'<circle cx="{x(s)}" cy="{height / 2}" r="3"/>' for s in present)
    mean = x(sum(present) / len(present))
    return (
        f'<svg class="strip" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
        f'<line x1="4" x2="{width - 4}" y1="{height / 2}" y2="{height / 2}" stroke="#dde1e8"/>'
        f'<g fill="#2f6fdf" fill-opacity="0.55">{dots}</g>'
        f'<line x1="{mean}" x2="{mean}" y1="2" y2="{height - 2}" stroke="#1d2330" stroke-width="1.5"/></svg>'
    )


def section(anchor: str, title: str, body: str) -> str:
    """A titled section of the page."""
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>{body}</section>'


def page(title: str, sections: Sequence[tuple[str, str, str]], header: str) -> str:
    """The whole document: ``sections`` are (anchor, title, body) in order."""
    nav = "".join(f'<a href="#{a}">{escape(t)}</a>' for a, t, _ in sections)
    body = "".join(section(a, t, b) for a, t, b in sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f"<body><header>{header}<nav>{nav}</nav></header>{body}"
        f"<script>{SCRIPT}</script></body></html>\n"
    )
