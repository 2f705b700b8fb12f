"""The rates page's charts as plain SVG geometry (templates/charts.html draws it): no script, no library.

Coordinates are in a 360-unit-wide viewBox that the stylesheet scales to the card, so a chart fits a
390 px phone and stays legible on a desk. Every mark carries its figure: a <title> (read out by screen
readers, shown on hover) and, where there is room, the number as text. The three rates differ in
lightness, dash and marker shape, not only hue, so a greyscale print still tells them apart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from handlers.rate_views import Bucket
from handlers.rates import Figures, Row

WIDTH = 360


@dataclass(frozen=True)
class Series:
    key: str
    name: str
    colour: str
    dash: str  # stroke-dasharray ("" solid)
    marker: str  # circle | square | triangle
    rate: Callable[[Figures], float | None]
    part: Callable[[Figures], int]
    whole: Callable[[Figures], int]


# Dark, middle and light in greyscale (about 25 %, 50 % and 70 % lightness).
SERIES = (
    Series(
        "response", "响应率", "#173f7a", "", "circle",
        lambda f: f.response_rate, lambda f: f.answered_on_time, lambda f: f.dispatched,
    ),
    Series(
        "on_time", "按期办结率", "#c4561b", "6 3", "square",
        lambda f: f.on_time_rate, lambda f: f.resolved_on_time, lambda f: f.resolved,
    ),
    Series(
        "satisfaction", "满意率", "#5fa35a", "2 3", "triangle",
        lambda f: f.satisfaction_rate, lambda f: f.satisfied, lambda f: f.rated,
    ),
)  # fmt: skip


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def explain(series: Series, f: Figures) -> str:
    """ "50.0%（1/2）", or "—（无可计算）" when there is nothing to divide by."""
    whole = series.whole(f)
    if not whole:
        return "—（无可计算）"
    return f"{percent(series.rate(f))}（{series.part(f)}/{whole}）"


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    value: str  # the figure as shown
    title: str


@dataclass(frozen=True)
class Line:
    series: Series
    segments: list[str]  # polyline point lists; a week with nothing to divide by breaks the line
    points: list[Point]
    latest: str  # the last bucket's figure, for the legend


@dataclass(frozen=True)
class Tick:
    at: float
    label: str


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    value: str
    title: str
    label_x: float
    label_y: float


@dataclass(frozen=True)
class TrendChart:
    """响应率 / 按期办结率 / 满意率 per week as lines, and the cases received per week as bars."""

    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    lines: list[Line]
    count_height: int
    count_bottom: float
    bars: list[Bar]
    show_counts: bool  # room to print every count above its bar


def trend_chart(buckets: Sequence[Bucket], scope: str) -> TrendChart:
    n = max(len(buckets), 1)
    left, right, top, bottom = 36.0, WIDTH - 8.0, 10.0, 170.0
    step = (right - left) / n

    def x_of(i: int) -> float:
        return round(left + step * (i + 0.5), 1)

    def y_of(rate: float) -> float:
        return round(bottom - (bottom - top) * rate, 1)

    lines = []
    for s in SERIES:
        points: list[Point] = []
        segments: list[str] = []
        current: list[str] = []
        for i, b in enumerate(buckets):
            rate = s.rate(b.figures)
            if rate is None:
                if current:
                    segments.append(" ".join(current))
                current = []
                continue
            x, y = x_of(i), y_of(rate)
            current.append(f"{x},{y}")
            points.append(Point(x, y, percent(rate), f"{scope} {b.label} {s.name} {explain(s, b.figures)}"))
        if current:
            segments.append(" ".join(current))
        latest = explain(s, buckets[-1].figures) if buckets else "—"
        lines.append(Line(s, segments, points, latest))
    label_every = max(1, -(-n // 6))  # at most six dates under the axis
    x_ticks = [Tick(x_of(i), b.label) for i, b in enumerate(buckets) if (n - 1 - i) % label_every == 0]
    y_ticks = [Tick(y_of(q / 4), f"{q * 25}%") for q in range(5)]

    count_height, count_top, count_bottom = 110, 18.0, 88.0
    most = max((b.figures.received for b in buckets), default=0)
    bar_width = round(min(step * 0.7, 28), 1)
    bars = []
    for i, b in enumerate(buckets):
        count = b.figures.received
        h = round((count_bottom - count_top) * count / most, 1) if most else 0.0
        x = x_of(i)
        bars.append(
            Bar(
                x=round(x - bar_width / 2, 1),
                y=round(count_bottom - h, 1),
                width=bar_width,
                height=h,
                value=str(count),
                title=f"{scope} {b.label} 受理 {count} 件",
                label_x=x,
                label_y=round(count_bottom - h - 4, 1),
            )
        )
    return TrendChart(
        width=WIDTH,
        height=200,
        left=left,
        right=right,
        top=top,
        bottom=bottom,
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        lines=lines,
        count_height=count_height,
        count_bottom=count_bottom,
        bars=bars,
        show_counts=n <= 16,
    )


@dataclass(frozen=True)
class NodeBars:
    name: str
    received: int
    overdue: int
    y: float  # the name's baseline
    bars: list[tuple[Series, Bar]]
    total: bool  # the selected node itself, above its children


@dataclass(frozen=True)
class NodeChart:
    """Per child node: its three rates as horizontal bars, each with its figure at the end."""

    width: int
    height: int
    label_width: float
    bar_span: float
    groups: list[NodeBars]


def node_chart(rows: Sequence[Row]) -> NodeChart:
    """The view's top node first, then its direct children (rows as `rates.by_node` gives them)."""
    shown = [r for r in rows if r.depth <= 1]
    label_width, value_width = 64.0, 92.0
    bar_span = WIDTH - label_width - value_width
    bar_height, gap, heading = 11.0, 4.0, 20.0
    groups, y = [], 0.0
    for row in shown:
        y += heading
        name_y = y - 6
        bars = []
        for s in SERIES:
            rate = s.rate(row.figures)
            width = round(bar_span * rate, 1) if rate is not None else 0.0
            bars.append(
                (
                    s,
                    Bar(
                        x=label_width,
                        y=y,
                        width=width,
                        height=bar_height,
                        value=explain(s, row.figures).replace("无可计算", "无"),
                        title=f"{row.name} {s.name} {explain(s, row.figures)}",
                        label_x=round(label_width + width + 4, 1),
                        label_y=round(y + bar_height - 1.5, 1),
                    ),
                )
            )
            y += bar_height + gap
        groups.append(NodeBars(row.name, row.figures.received, row.figures.overdue, name_y, bars, row.depth == 0))
        y += 6
    return NodeChart(WIDTH, int(y) + 4, label_width, bar_span, groups)
