"""Server-rendered SVG charts (no JavaScript, no CDN, nothing inline that the CSP forbids).

A `Chart` is the data once: the template draws it as SVG *and* as a table, and the same rows
are the CSV download — so the picture, the table and the file can never disagree."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field

from django.http import HttpResponse
from django.utils.formats import localize
from django.utils.html import format_html_join

from tap import spreadsheet

WIDTH, HEIGHT = 720, 220
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 48, 36, 12, 28
SERIES_CLASSES = 8  # .chart-s0 … .chart-s7 in metrics-charts.css
# A value of None is no figure (held back, or nothing to divide by): a gap in a line, no bar,
# this in the table and an empty cell in the CSV.
NO_FIGURE = "—"


@dataclass
class Chart:
    id: str
    title: str
    columns: list[str]  # first column: the x label; the rest: one series each
    rows: list[list]
    kind: str = "line"  # line | bar
    note: str = ""
    percent: bool = False
    svg: dict = field(default_factory=dict)

    def render(self) -> Chart:
        self.svg = _line(self) if self.kind == "line" else _bars(self)
        return self

    @property
    def table_body(self) -> str:
        """The rows as table rows, escaped and localised as the template would show each value
        (built here: a template loop over every cell was most of a long range's render time)."""
        return format_html_join(
            "",
            '<tr><th scope="row" class="fw-normal">{}</th>{}</tr>',
            (
                (
                    localize(row[0]),
                    format_html_join(
                        "",
                        '<td class="text-end">{}</td>',
                        ((NO_FIGURE if v is None else localize(v),) for v in row[1:]),
                    ),
                )
                for row in self.rows
            ),
        )

    @property
    def series(self) -> list[dict]:
        return [
            {"name": name, "css": f"chart-s{i % SERIES_CLASSES}"}
            for i, name in enumerate(self.columns[1:])
        ]


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _fmt(value: float, percent: bool) -> str:
    if percent:
        return f"{value:.0f}%"
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    return f"{value:g}"


def _frame(chart: Chart, top: float) -> dict:
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    ticks = []
    for i in range(5):
        value = top * i / 4
        y = PAD_TOP + plot_h - plot_h * i / 4
        ticks.append({"y": round(y, 1), "label": _fmt(value, chart.percent)})
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "ticks": ticks,
        "left": PAD_LEFT,
        "right": WIDTH - PAD_RIGHT,
        "bottom": HEIGHT - PAD_BOTTOM,
    }


def _values(chart: Chart) -> list[list[float | None]]:
    return [[None if v is None else float(v) for v in row[1:]] for row in chart.rows]


def _empty(values: list[list[float | None]]) -> bool:
    """Nothing to draw: no rows, or no figure in any."""
    return all(v is None for row in values for v in row)


def _top(values: list[list[float | None]], percent: bool = False) -> float:
    """The axis' top: a round number above the largest value; 100 for percentages up to it
    (a share of 0 % on a scale of 1 % labels its ticks 0 %, 0 %, 0 %, 1 %, 1 %)."""
    top = _nice_max(max((v for row in values for v in row if v is not None), default=0))
    return max(top, 100) if percent else top


def _x_labels(chart: Chart, xs: list[float]) -> list[dict]:
    n = len(chart.rows)
    every = max(1, n // 8)
    return [{"x": round(xs[i], 1), "label": str(chart.rows[i][0])} for i in range(0, n, every)]


def _line(chart: Chart) -> dict:
    values = _values(chart)
    top = _top(values, chart.percent)
    frame = _frame(chart, top)
    n = len(values)
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    xs = [PAD_LEFT + (plot_w * i / (n - 1) if n > 1 else plot_w / 2) for i in range(n)]
    lines = []
    for s, info in enumerate(chart.series):
        # Runs of points with a figure, each its own polyline: no figure is a gap, not a 0.
        # A point with no neighbour is drawn as a dot (a polyline of one point is invisible).
        runs: list[list[tuple[float, float]]] = [[]]
        for i in range(n):
            value = values[i][s]
            if value is None:
                runs.append([])
            else:
                runs[-1].append((xs[i], PAD_TOP + plot_h - plot_h * value / top))
        lines.append(
            {
                **info,
                "segments": [
                    " ".join(f"{x:.1f},{y:.1f}" for x, y in run) for run in runs if len(run) > 1
                ],
                "dots": [
                    {"x": round(run[0][0], 1), "y": round(run[0][1], 1)}
                    for run in runs
                    if len(run) == 1
                ],
            }
        )
    frame.update(kind="line", lines=lines, xlabels=_x_labels(chart, xs), empty=_empty(values))
    return frame


def _bars(chart: Chart) -> dict:
    values = _values(chart)
    top = _top(values, chart.percent)
    frame = _frame(chart, top)
    n = max(1, len(values))
    k = max(1, len(chart.columns) - 1)
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    group = plot_w / n
    bar_w = max(1.0, group * 0.8 / k)
    bars, xs = [], []
    for i, row in enumerate(values):
        x0 = PAD_LEFT + group * i + group * 0.1
        xs.append(x0 + group * 0.4)
        for s, value in enumerate(row):
            if value is None:
                continue
            h = plot_h * value / top
            bars.append(
                {
                    "x": round(x0 + s * bar_w, 1),
                    "y": round(PAD_TOP + plot_h - h, 1),
                    "w": round(bar_w, 1),
                    "h": round(h, 1),
                    "css": f"chart-s{s % SERIES_CLASSES}",
                    "label": (
                        f"{chart.rows[i][0]} · {chart.columns[s + 1]}: {_fmt(value, chart.percent)}"
                    ),
                }
            )
    frame.update(kind="bar", bars=bars, xlabels=_x_labels(chart, xs), empty=_empty(values))
    return frame


# --- CSV ---------------------------------------------------------------------------------------


def csv_response(filename: str, columns: list[str], rows) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.write(spreadsheet.BOM)
    writer = csv.writer(response)
    writer.writerow([spreadsheet.cell(c) for c in columns])
    for row in rows:
        writer.writerow([spreadsheet.cell(v) for v in row])
    return response
