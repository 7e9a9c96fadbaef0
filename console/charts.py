"""Charts as geometry for the templates to draw in SVG: no script, no library. No I/O here.

Each chart is stacked bars: a series per class (the CSS colours it and the
legend names it), every bar titled with its counts, so that a screen reader
and a keyboard user read what the eye sees.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

WIDTH, HEIGHT, LEFT, BOTTOM = 720, 160, 40, 20


@dataclass(frozen=True)
class Segment:
    series: str
    y: float
    height: float
    count: int


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    segments: tuple[Segment, ...]
    title: str


@dataclass(frozen=True)
class Chart:
    title: str
    series: tuple[tuple[str, str], ...]  # (css class, name)
    bars: tuple[Bar, ...]
    ticks: tuple[tuple[float, str], ...]  # (x, text) under the bars
    peak: int
    total: int
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    bottom: int = BOTTOM

    @property
    def plot_bottom(self) -> int:
        return self.height - self.bottom


def stacked(title: str, series: Sequence[tuple[str, str]], columns: Sequence[tuple[str, dict[str, int]]], labels: Sequence[str]) -> Chart:
    """Bars from ``columns`` (a title and the count of each series), ``labels`` under some of them ("" for none)."""
    peak = max((sum(c.values()) for _, c in columns), default=0)
    scale = (HEIGHT - BOTTOM - 10) / peak if peak else 0.0
    slot = (WIDTH - LEFT) / max(1, len(columns))
    bars, ticks = [], []
    for i, (name, counts) in enumerate(columns):
        x = LEFT + i * slot
        y = float(HEIGHT - BOTTOM)
        segments = []
        for css, _ in series:
            n = counts.get(css, 0)
            if n:
                h = n * scale
                y -= h
                segments.append(Segment(css, round(y, 1), round(h, 1), n))
        parts = ", ".join(f"{counts.get(css, 0)} {label}" for css, label in series)
        bars.append(Bar(round(x + 1, 1), round(max(1.0, slot - 2), 1), tuple(segments), f"{name}: {parts}"))
        if labels[i]:
            ticks.append((round(x + slot / 2, 1), labels[i]))
    total = sum(sum(c.values()) for _, c in columns)
    return Chart(title, tuple(series), tuple(bars), tuple(ticks), peak, total)


def _buckets(since: datetime, until: datetime, count: int) -> tuple[timedelta, list[datetime]]:
    step = max((until - since) / count, timedelta(seconds=1))
    return step, [since + step * i for i in range(count)]


def _tick_labels(starts: list[datetime], every: int, step: timedelta) -> list[str]:
    fmt = "%H:%M" if step < timedelta(hours=12) else "%m-%d %H:%M"
    return [s.strftime(fmt) if i % every == 0 else "" for i, s in enumerate(starts)]


def over_time(
    title: str,
    series: Sequence[tuple[str, str]],
    points: Iterable[tuple[datetime, str]],
    since: datetime,
    until: datetime,
    count: int = 48,
) -> Chart:
    """Events (a time and a series) counted in ``count`` buckets from ``since`` to ``until``."""
    step, starts = _buckets(since, until, count)
    columns: list[dict[str, int]] = [{} for _ in starts]
    for when, css in points:
        if since <= when < until:
            i = min(count - 1, int((when - since) / step))
            columns[i][css] = columns[i].get(css, 0) + 1
    fmt = "%H:%M:%S" if step < timedelta(minutes=1) else "%H:%M" if step < timedelta(hours=12) else "%m-%d %H:%M"
    named = [(f"{s.strftime(fmt)} UTC", c) for s, c in zip(starts, columns, strict=True)]
    return stacked(title, series, named, _tick_labels(starts, max(1, count // 6), step))


# Remediation times: where the bucket edges fall (seconds), and their names.
DURATION_EDGES = (10, 30, 60, 300, 900, 3600)
DURATION_NAMES = ("< 10 s", "10-30 s", "30 s-1 min", "1-5 min", "5-15 min", "15-60 min", "> 1 h")


def durations(title: str, values: Iterable[tuple[float, str]], series: Sequence[tuple[str, str]]) -> Chart:
    """A histogram of durations (seconds, series) in the buckets of DURATION_EDGES."""
    columns: list[dict[str, int]] = [{} for _ in DURATION_NAMES]
    for seconds, css in values:
        i = next((i for i, edge in enumerate(DURATION_EDGES) if seconds < edge), len(DURATION_EDGES))
        columns[i][css] = columns[i].get(css, 0) + 1
    return stacked(title, series, list(zip(DURATION_NAMES, columns, strict=True)), list(DURATION_NAMES))
