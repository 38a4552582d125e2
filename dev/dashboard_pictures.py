#!/usr/bin/env python3
"""Pictures of the Grafana dashboards without a Grafana: every panel of the generated dashboards
(charts/modeldeploy/dashboards/*.json) queried from a real Prometheus and drawn with matplotlib,
one PNG per panel, plus an index.md that links them with each panel's description.

This is not Grafana: it draws what a reader needs to recognise a panel (lines, the last value, a
bucket heatmap, a table, state bands) and does the interpolation Grafana would do first:

- dashboard variables: the value given with `--var name=value` (used as the regex it is in
  `label=~"$var"`, so `a|b` selects two), otherwise the variable's "All" value `.*`;
- `$__interval` = the step: the time range over ~200 points, rounded up to a round duration and
  at least Prometheus' scrape interval (Grafana floors the interval at the data source's);
- `$__rate_interval` = max(step + scrape interval, 4 x scrape interval), Grafana's own definition:
  a rate window always holds at least four samples and never skips one between steps;
- `$__range` = the whole time range (instant queries are evaluated at its end).

Panels whose queries return nothing get a "(no data)" note and are listed on stderr; a query
Prometheus rejects gets its error in the picture. Neither fails the run; an unreachable
Prometheus does (exit 1). Figures are made without pyplot, so they are drawn by Agg whatever
MPLBACKEND says, with no GUI and no global figure state.

Usage: dev/dashboard_pictures.py [--prometheus URL] [--out DIR] [--since 1h | --start T --end T]
                                 [--var name=value ...]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import requests
from matplotlib import colors as mcolors
from matplotlib import dates as mdates
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

REPO = Path(__file__).resolve().parent.parent
DASHBOARDS = REPO / "charts" / "modeldeploy" / "dashboards"
OUT = REPO / "docs" / "dashboards"
POINTS = 200
DEFAULT_SCRAPE_INTERVAL = 15.0  # Grafana's default when a data source sets none
ROUND_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)
WIDTH, HEIGHT, DPI = 8.0, 3.0, 80
MAX_LEGEND, MAX_ROWS, MAX_STAT_TEXT = 10, 12, 6
TABLE_CHARS = 110  # characters of 8 pt text across a WIDTH x DPI picture
UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


# --- pure parts ---------------------------------------------------------------------------------


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus-style duration: `90s`, `30m`, `1h30m`, `2d`."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)", text)
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ValueError(f"not a duration: {text!r} (e.g. 90s, 30m, 1h30m)")
    return sum(float(n) * UNITS[u] for n, u in parts)


def duration(seconds: float) -> str:
    """A PromQL range in whole seconds, at least 1s."""
    return f"{max(1, math.ceil(seconds))}s"


def choose_step(span: float, minimum: float = 1.0, points: int = POINTS) -> float:
    """The first round step that gives at most `points` points over `span`, at least `minimum`."""
    wanted = max(span / points, minimum)
    return float(next((s for s in ROUND_STEPS if s >= wanted), math.ceil(wanted)))


def rate_interval(step: float, scrape: float) -> float:
    """Grafana's `$__rate_interval`: max($__interval + scrape interval, 4 x scrape interval)."""
    return max(step + scrape, 4 * scrape)


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """`$name`, `${name}`, `${name:format}` and `[[name]]` replaced by `values[name]`; names not
    in `values` stay as they are (Prometheus then names the problem)."""

    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        return values.get(name, m.group(0))

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", one, expr)


def legend(fmt: str, labels: Mapping[str, str]) -> str:
    """Grafana's legendFormat: `{{label}}` from the series' labels (missing: empty); without a
    format, the series as PromQL writes it, `name{a="b"}`."""
    if fmt and fmt != "__auto":
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return labels.get("__name__", "") + (
        "{" + inner + "}" if inner or "__name__" not in labels else ""
    )


def slug(title: str) -> str:
    """`Alert → rollback latency` → `alert-rollback-latency`: ASCII, lowercase, dashes."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-") or "panel"


def picture_name(order: int, title: str) -> str:
    """`<nn>-<slug>.png`, nn the panel's place among the pictured panels (from 1)."""
    return f"{order:02d}-{slug(title)}.png"


def le_value(le: str) -> float:
    try:
        return float(le)
    except ValueError:
        return math.inf


def bucket_differences(les: Sequence[str], cumulative: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Per-bucket values from cumulative `le` rows (one row per bucket, one column per time):
    rows sorted by bound, each minus the one below, as Grafana's heatmap format does. Small
    negatives (rates of counters scraped at different moments) are clipped to 0; gaps stay NaN."""
    order = sorted(range(len(les)), key=lambda i: le_value(les[i]))
    rows = cumulative[order] if len(order) else cumulative.reshape(0, cumulative.shape[-1])
    below = np.vstack([np.zeros((1, rows.shape[1])), rows[:-1]]) if len(order) else rows
    return [les[i] for i in order], np.maximum(rows - below, 0.0)


def bound_label(le: str, unit: str) -> str:
    """A heatmap row's label: its bucket's upper bound in the panel's unit (`≤ 5 ms`)."""
    bound = le_value(le)
    return "≤ " + (le if math.isinf(bound) else format_value(bound, unit))


def runs(values: Sequence[float]) -> list[tuple[int, int, float]]:
    """(first, end, value) for each stretch of equal, non-NaN values: a state timeline's bands."""
    out: list[tuple[int, int, float]] = []
    for i, v in enumerate(values):
        if math.isnan(v):
            continue
        if out and out[-1][1] == i and out[-1][2] == v:
            out[-1] = (out[-1][0], i + 1, v)
        else:
            out.append((i, i + 1, v))
    return out


def shorten(text: str, width: int = 40) -> str:
    """Long legends lose their middle, not their end: `ns/name model v3` keeps the version."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head) :]


def time_format(span: float) -> str:
    """Tick labels that differ from each other over `span` seconds."""
    return "%H:%M:%S" if span < 600 else "%H:%M" if span < 2 * 86400 else "%m-%d %H:%M"


def _scaled(value: float, base: float, suffixes: Sequence[str]) -> str:
    i = 0
    while abs(value) >= base and i < len(suffixes) - 1:
        value, i = value / base, i + 1
    return f"{value:.3g}{suffixes[i]}"


def format_value(value: float, unit: str) -> str:
    """A value as the panel's unit shows it (Grafana's names: percentunit, s, reqps, bytes ...)."""
    if math.isnan(value):
        return "n/a"
    if unit == "percentunit":
        return f"{value * 100:.3g}%"
    if unit == "percent":
        return f"{value:.3g}%"
    if unit in ("s", "ms"):
        secs = value / 1000 if unit == "ms" else value
        if secs == 0:
            return "0 s"
        for limit, div, name in (
            (1e-3, 1e-6, "µs"),
            (1, 1e-3, "ms"),
            (60, 1, "s"),
            (3600, 60, "min"),
            (86400, 3600, "h"),
        ):
            if abs(secs) < limit:
                return f"{secs / div:.3g} {name}"
        return f"{secs / 86400:.3g} d"
    if unit == "bytes":
        return _scaled(value, 1024, [" B", " KiB", " MiB", " GiB", " TiB"])
    short = _scaled(value, 1000, ["", "K", "M", "G", "T"])
    return {"reqps": f"{short} req/s", "cores": f"{short} cores"}.get(unit, short)


def value_key(value: float) -> str:
    """How a value mapping's key spells a number: `1`, not `1.0`."""
    return str(int(value)) if value.is_integer() else repr(value)


def merge_rows(
    columns: Sequence[tuple[str, Sequence[tuple[Mapping[str, str], float]]]],
) -> list[dict[str, str | float]]:
    """Grafana's "merge" of instant results into one table: a sample joins the first row that
    shares at least one label with it, agrees on every shared label and has no value for its
    column yet; otherwise it starts a row."""
    rows: list[dict[str, str | float]] = []
    for column, samples in columns:
        for labels, value in samples:
            for row in rows:
                shared = [k for k in labels if k in row]
                if column not in row and shared and all(row[k] == labels[k] for k in shared):
                    row.update(labels)
                    row[column] = value
                    break
            else:
                rows.append({**labels, column: value})
    return rows


# --- dashboards, as read once -------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    ref: str
    expr: str
    legend: str
    instant: bool


@dataclass(frozen=True)
class Panel:
    kind: str
    title: str
    description: str
    unit: str
    cell_unit: str
    targets: tuple[Target, ...]
    mappings: Mapping[str, tuple[str, str | None]]  # value → (text, colour)
    units_by_name: Mapping[str, str]  # field overrides by display name
    renames: Mapping[str, str]
    hidden: frozenset[str]

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Panel:
        config = raw.get("fieldConfig") or {}
        defaults = config.get("defaults") or {}
        options = raw.get("options") or {}
        mappings = {
            key: (str(m.get("text", key)), m.get("color"))
            for mapping in defaults.get("mappings") or []
            if mapping.get("type") == "value"
            for key, m in (mapping.get("options") or {}).items()
        }
        units = {
            o["matcher"]["options"]: p["value"]
            for o in config.get("overrides") or []
            if o.get("matcher", {}).get("id") == "byName"
            for p in o.get("properties") or []
            if p.get("id") == "unit"
        }
        organize = next(
            (
                t.get("options") or {}
                for t in raw.get("transformations") or []
                if t.get("id") == "organize"
            ),
            {},
        )
        return cls(
            kind=str(raw.get("type", "timeseries")),
            title=str(raw.get("title", "")),
            description=str(raw.get("description", "")),
            unit=str(defaults.get("unit") or (options.get("yAxis") or {}).get("unit") or ""),
            cell_unit=str((options.get("cellValues") or {}).get("unit") or ""),
            targets=tuple(
                Target(
                    str(t.get("refId", "A")),
                    str(t.get("expr", "")),
                    str(t.get("legendFormat", "")),
                    bool(t.get("instant")) and not t.get("range"),
                )
                for t in raw.get("targets") or []
                if t.get("expr")
            ),
            mappings=mappings,
            units_by_name=units,
            renames=dict(organize.get("renameByName") or {}),
            hidden=frozenset(k for k, v in (organize.get("excludeByName") or {}).items() if v),
        )


@dataclass(frozen=True)
class Dashboard:
    stem: str
    title: str
    variables: Mapping[str, str]  # name → "All" value
    panels: tuple[Panel, ...]  # the ones with queries, rows' children included, in order

    @classmethod
    def load(cls, path: Path) -> Dashboard:
        raw = json.loads(path.read_text())
        flat: list[Mapping[str, Any]] = []
        for p in raw.get("panels") or []:
            flat += p.get("panels") or [] if p.get("type") == "row" else [p]
        variables = {
            v["name"]: str(v.get("allValue") or ".*")
            for v in (raw.get("templating") or {}).get("list") or []
            if v.get("type") in ("query", "custom")
        }
        panels = tuple(Panel.parse(p) for p in flat if p.get("targets"))
        return cls(path.stem, str(raw.get("title", path.stem)), variables, panels)


@dataclass(frozen=True)
class Window:
    """The time range and the Grafana interval variables that follow from it."""

    start: float
    end: float
    step: float
    scrape: float

    @classmethod
    def fit(cls, start: float, end: float, scrape: float) -> Window:
        return cls(start, end, choose_step(end - start, minimum=scrape), scrape)

    def builtins(self) -> dict[str, str]:
        return {
            "__interval": duration(self.step),
            "__rate_interval": duration(rate_interval(self.step, self.scrape)),
            "__range": duration(self.end - self.start),
        }

    def grid(self) -> list[float]:
        return [
            self.start + k * self.step
            for k in range(math.ceil((self.end - self.start) / self.step) + 1)
        ]


# --- Prometheus ---------------------------------------------------------------------------------


class PrometheusUnreachable(RuntimeError):
    """No Prometheus answers at the URL: nothing can be drawn."""


class QueryFailed(RuntimeError):
    """Prometheus answered with an error for one query (shown in that panel's picture)."""


@dataclass(frozen=True)
class Series:
    labels: Mapping[str, str]
    times: tuple[float, ...]
    values: tuple[float, ...]


class Prometheus:
    """The three calls the pictures need from Prometheus' HTTP API."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url, self.timeout = url.rstrip("/"), timeout
        self.session = requests.Session()

    def _get(self, path: str, params: Mapping[str, str | float]) -> Any:
        try:
            resp = self.session.get(f"{self.url}{path}", params=params, timeout=self.timeout)
            body = resp.json()
        except requests.RequestException as exc:
            raise PrometheusUnreachable(f"no Prometheus at {self.url}: {exc}") from exc
        except ValueError as exc:
            raise PrometheusUnreachable(f"{self.url}{path} did not answer JSON") from exc
        if body.get("status") != "success":
            raise QueryFailed(f"{body.get('errorType', resp.status_code)}: {body.get('error')}")
        return body["data"]

    def scrape_interval(self) -> float:
        """The global scrape interval in Prometheus' configuration (else Grafana's default)."""
        import yaml

        config = yaml.safe_load(self._get("/api/v1/status/config", {})["yaml"]) or {}
        interval = (config.get("global") or {}).get("scrape_interval")
        return parse_duration(str(interval)) if interval else DEFAULT_SCRAPE_INTERVAL

    def query(self, expr: str, at: float) -> list[Series]:
        return _series(self._get("/api/v1/query", {"query": expr, "time": at}))

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        params: dict[str, str | float] = {"query": expr, "start": start, "end": end, "step": step}
        return _series(self._get("/api/v1/query_range", params))


def _series(data: Mapping[str, Any]) -> list[Series]:
    if data["resultType"] == "scalar":
        t, v = data["result"]
        return [Series({}, (float(t),), (float(v),))]
    out = []
    for r in data["result"]:
        points = r.get("values") or [r["value"]]
        out.append(
            Series(
                r["metric"], tuple(float(t) for t, _ in points), tuple(float(v) for _, v in points)
            )
        )
    return out


# --- drawing ------------------------------------------------------------------------------------

Results = list[tuple[Target, list[Series]]]


def align(series: Sequence[Series], window: Window) -> np.ndarray:
    """One row per series on the window's grid, NaN where a series has no point."""
    grid = window.grid()
    out = np.full((len(series), len(grid)), np.nan)
    for row, s in enumerate(series):
        for t, v in zip(s.times, s.values, strict=True):
            k = round((t - window.start) / window.step)
            if 0 <= k < len(grid):
                out[row, k] = v
    return out


def dates(times: Iterable[float]) -> np.ndarray:
    moments = [datetime.fromtimestamp(t, UTC) for t in times]
    return np.asarray(mdates.date2num(moments))  # type: ignore[no-untyped-call]


def time_axis(ax: Axes, window: Window) -> None:
    ax.set_xlim(float(dates([window.start])[0]), float(dates([window.end])[0]))
    formatter = mdates.DateFormatter(time_format(window.end - window.start), tz=UTC)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_formatter(formatter)
    ax.set_xlabel("UTC", fontsize=7, loc="right")
    ax.tick_params(labelsize=7)


def unit_axis(ax: Axes, unit: str) -> None:
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_value(v, unit)))


def put_legend(ax: Axes) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    more = len(handles) - MAX_LEGEND
    labels = [shorten(lb) for lb in labels[:MAX_LEGEND]]
    title = f"+{more} more" if more > 0 else None
    ax.legend(
        handles[:MAX_LEGEND],
        labels,
        fontsize=7,
        title=title,
        title_fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
    )


def draw_lines(ax: Axes, panel: Panel, results: Results, window: Window) -> None:
    x = dates(window.grid())
    for target, series in results:
        for s, y in zip(series, align(series, window), strict=True):
            marker = "o" if len(s.times) < 3 else None
            ax.plot(x, y, linewidth=1.2, marker=marker, label=legend(target.legend, s.labels))
    time_axis(ax, window)
    unit_axis(ax, panel.unit)
    ax.grid(alpha=0.3)
    put_legend(ax)


def last_values(panel: Panel, results: Results) -> list[tuple[str, float]]:
    out = []
    for target, series in results:
        for s in series:
            known = [v for v in s.values if not math.isnan(v)]
            out.append((legend(target.legend, s.labels), known[-1] if known else math.nan))
    return out


def shown(panel: Panel, name: str, value: float) -> tuple[str, str | None]:
    """Text and colour of a value: its value mapping, or the formatted number."""
    if not math.isnan(value) and value_key(value) in panel.mappings:
        text, color = panel.mappings[value_key(value)]
        return text, color if color and mcolors.is_color_like(color) else None
    return format_value(value, panel.units_by_name.get(name, panel.unit)), None


def draw_stat(ax: Axes, panel: Panel, results: Results) -> None:
    values = last_values(panel, results)
    if len(values) > MAX_STAT_TEXT:
        names = [n for n, _ in values]
        ax.barh(names, [v for _, v in values], color="tab:green")
        ax.invert_yaxis()
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: format_value(v, panel.unit)))
        return
    ax.axis("off")
    size = 26 if len(values) <= 3 else 18
    for i, (name, value) in enumerate(values):
        text, color = shown(panel, name, value)
        x = (i + 0.5) / len(values)
        ax.text(
            x,
            0.5,
            text,
            ha="center",
            va="center",
            fontsize=size,
            color=color or "tab:green",
            fontweight="bold",
            transform=ax.transAxes,
        )
        ax.text(x, 0.12, name, ha="center", fontsize=8, transform=ax.transAxes)


def draw_table(ax: Axes, panel: Panel, results: Results) -> None:
    ax.axis("off")
    many = len(results) > 1
    rows = merge_rows(
        [
            (
                f"Value #{target.ref}" if many else "Value",
                [
                    ({k: v for k, v in s.labels.items() if k != "__name__"}, s.values[-1])
                    for s in series
                ],
            )
            for target, series in results
        ]
    )
    value_cols = [f"Value #{t.ref}" if many else "Value" for t, _ in results]
    label_cols = list(dict.fromkeys(k for r in rows for k in r if k not in value_cols))
    cols = [c for c in label_cols + value_cols if c not in panel.hidden]
    names = [panel.renames.get(c, c) for c in cols]

    def cell(row: Mapping[str, str | float], col: str, name: str) -> str:
        v = row.get(col, "")
        if isinstance(v, float):
            return format_value(v, panel.units_by_name.get(name, panel.unit or "short"))
        return v

    text = [[cell(r, c, n) for c, n in zip(cols, names, strict=True)] for r in rows[:MAX_ROWS]]
    if len(rows) > MAX_ROWS:
        text.append([f"+{len(rows) - MAX_ROWS} more"] + [""] * (len(cols) - 1))
    # Columns as wide as their longest text; the font shrinks when a row would not fit.
    chars = [max(len(x) for x in [n, *(r[i] for r in text)]) + 2 for i, n in enumerate(names)]
    widths = [c / sum(chars) for c in chars]
    table = ax.table(text, colLabels=names, colWidths=widths, loc="upper center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(max(5.0, min(8.0, 8.0 * TABLE_CHARS / sum(chars))))


def draw_heatmap(fig: Figure, ax: Axes, panel: Panel, results: Results, window: Window) -> None:
    series = [s for _, ss in results for s in ss]
    les, cells = bucket_differences([s.labels.get("le", "") for s in series], align(series, window))
    half = window.step / 2
    x = dates([t - half for t in window.grid()] + [window.grid()[-1] + half])
    mesh = ax.pcolormesh(x, np.arange(len(les) + 1), np.ma.masked_invalid(cells), cmap="Spectral_r")
    every = max(1, math.ceil(len(les) / 10))
    ticks = list(range(0, len(les), every))
    ax.set_yticks([i + 0.5 for i in ticks])
    ax.set_yticklabels([bound_label(les[i], panel.unit) for i in ticks], fontsize=7)
    time_axis(ax, window)
    bar = fig.colorbar(mesh, ax=ax, pad=0.01)
    bar.ax.tick_params(labelsize=7)
    bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_value(v, panel.cell_unit)))


def draw_timeline(ax: Axes, panel: Panel, results: Results, window: Window) -> None:
    grid = window.grid()
    width = window.step / 86400  # matplotlib dates count days
    names: list[str] = []
    colors: dict[str, str] = {}  # state text → colour, in order of appearance
    palette = iter(f"C{i}" for i in range(10))
    for target, series in results:
        for s, row in zip(series, align(series, window), strict=True):
            y = len(names)
            names.append(legend(target.legend, s.labels))
            for first, end, value in runs(row.tolist()):
                text, mapped = shown(panel, names[-1], value)
                color = colors.setdefault(text, mapped or next(palette, "grey"))
                x0 = float(dates([grid[first]])[0]) - width / 2
                ax.broken_barh([(x0, (end - first) * width)], (y - 0.4, 0.8), facecolors=color)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels([shorten(n) for n in names], fontsize=7)
    ax.set_ylim(len(names) - 0.5, -0.5)
    time_axis(ax, window)
    if len(colors) > 1:  # one state only (a `== 1` query): the rows say it all
        handles = [Patch(color=c, label=t) for t, c in list(colors.items())[:MAX_LEGEND]]
        ax.legend(
            handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False
        )


def draw(panel: Panel, results: Results, errors: Sequence[str], window: Window) -> Figure:
    rows = sum(len(ss) for _, ss in results)
    tall = panel.kind == "state-timeline" and rows > 6
    fig = Figure(
        figsize=(WIDTH, HEIGHT + (0.25 * (min(rows, MAX_ROWS) - 6) if tall else 0)),
        dpi=DPI,
        layout="constrained",
    )
    ax = fig.add_subplot()
    ax.set_title(panel.title, loc="left", fontsize=10, fontweight="bold")
    if not rows:
        ax.axis("off")
        note = "(query failed: " + "; ".join(errors)[:200] + ")" if errors else "(no data)"
        ax.text(
            0.5,
            0.5,
            note,
            ha="center",
            va="center",
            fontsize=10,
            color="grey",
            wrap=True,
            transform=ax.transAxes,
        )
        return fig
    if panel.kind == "stat":
        draw_stat(ax, panel, results)
    elif panel.kind == "table":
        draw_table(ax, panel, results)
    elif panel.kind == "heatmap":
        draw_heatmap(fig, ax, panel, results, window)
    elif panel.kind == "state-timeline":
        draw_timeline(ax, panel, results, window)
    else:
        draw_lines(ax, panel, results, window)
    return fig


# --- the run ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Picture:
    dashboard: Dashboard
    panel: Panel
    path: Path
    empty: bool


def fetch(
    prom: Prometheus, panel: Panel, window: Window, values: Mapping[str, str]
) -> tuple[Results, list[str]]:
    results: Results = []
    errors = []
    for t in panel.targets:
        expr = substitute(t.expr, {**values, **window.builtins()})
        try:
            if t.instant:
                series = prom.query(expr, window.end)
            else:
                series = prom.query_range(expr, window.start, window.end, window.step)
        except QueryFailed as exc:
            errors.append(f"{t.ref}: {exc}")
            continue
        results.append((t, series))
    return results, errors


def index_markdown(
    pictures: Sequence[Picture], out_dir: Path, window: Window, variables: Mapping[str, str]
) -> str:
    def stamp(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")

    chosen = ", ".join(f"`{k}={v}`" for k, v in sorted(variables.items())) or "none"
    lines = [
        "# Dashboard pictures",
        "",
        "Each panel of the Grafana dashboards (`charts/modeldeploy/dashboards/`), drawn by "
        "`dev/dashboard_pictures.py` from Prometheus without a Grafana "
        '(docs/dashboards.md, "Pictures without a Grafana").',
        "",
        f"Time range: {stamp(window.start)} to {stamp(window.end)} UTC "
        f'(step {duration(window.step)}). Variables: {chosen}; the others "All".',
    ]
    for stem in dict.fromkeys(p.dashboard.stem for p in pictures):
        panels = [p for p in pictures if p.dashboard.stem == stem]
        title = panels[0].dashboard.title
        lines += ["", f"## {title}", "", f"`charts/modeldeploy/dashboards/{stem}.json`"]
        for p in panels:
            link = p.path.relative_to(out_dir).as_posix()
            lines += ["", f"### {p.panel.title}", "", f"![{p.panel.title}]({link})"]
            lines += ["", p.panel.description] if p.panel.description else []
            lines += ["", "*No data in this time range.*"] if p.empty else []
    return "\n".join(lines) + "\n"


def render_all(
    prometheus_url: str,
    out_dir: Path,
    start: float,
    end: float,
    variables: dict[str, str],
    dashboards: Path = DASHBOARDS,
) -> list[Path]:
    """Draws every panel of every dashboard in `dashboards` over [start, end] (Unix seconds)
    into `<out_dir>/<dashboard>/<nn>-<title>.png`, writes `<out_dir>/index.md`, and returns the
    pictures' paths. Old pictures in those folders go first, so a renamed panel leaves none
    behind. Raises PrometheusUnreachable; empty or failed panels are listed on stderr."""
    prom = Prometheus(prometheus_url)
    window = Window.fit(start, end, prom.scrape_interval())
    pictures: list[Picture] = []
    for path in sorted(dashboards.glob("*.json")):
        dash = Dashboard.load(path)
        values = {
            name: variables.get(name, all_value) for name, all_value in dash.variables.items()
        }
        folder = out_dir / dash.stem
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.png"):
            old.unlink()
        for order, panel in enumerate(dash.panels, start=1):
            results, errors = fetch(prom, panel, window, values)
            target = folder / picture_name(order, panel.title)
            draw(panel, results, errors, window).savefig(target, pil_kwargs={"optimize": True})
            has_data = any(series for _, series in results)
            pictures.append(Picture(dash, panel, target, empty=not has_data))
            for error in errors:
                print(f"query failed: {dash.stem} / {panel.title}: {error}", file=sys.stderr)
    (out_dir / "index.md").write_text(index_markdown(pictures, out_dir, window, variables))
    empty = [p.path.relative_to(out_dir).as_posix() for p in pictures if p.empty]
    if empty:
        print(f"no data ({len(empty)} of {len(pictures)}): {', '.join(empty)}", file=sys.stderr)
    return [p.path for p in pictures]


def stack_prometheus_url() -> str | None:
    """$PROMETHEUS_URL, else the local stack's (dev/stack.py; MODELDEPLOY_STACK_DIR or .stack)."""
    if os.environ.get("PROMETHEUS_URL"):
        return os.environ["PROMETHEUS_URL"]
    sys.path.insert(0, str(REPO / "dev"))
    import stack as devstack

    return devstack.Stack().env().get("PROMETHEUS_URL")


def parse_time(text: str) -> float:
    """Unix seconds or ISO 8601 (UTC when it names no offset)."""
    try:
        return float(text)
    except ValueError:
        parsed = datetime.fromisoformat(text)
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--prometheus", help="Prometheus URL (default: $PROMETHEUS_URL, else the local stack's)"
    )
    parser.add_argument(
        "--out", type=Path, default=OUT, help="output folder (default: docs/dashboards)"
    )
    parser.add_argument("--since", default="1h", help="time range ending now (default 1h)")
    parser.add_argument("--start", help="start (Unix seconds or ISO 8601; UTC without offset)")
    parser.add_argument("--end", help="end (default: now)")
    parser.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a dashboard variable's value (a regex); the others are All",
    )
    args = parser.parse_args(argv)
    if any("=" not in v for v in args.var):
        parser.error("--var takes name=value")
    try:
        end = parse_time(args.end) if args.end else time.time()
        start = parse_time(args.start) if args.start else end - parse_duration(args.since)
    except ValueError as exc:
        parser.error(str(exc))
    if start >= end:
        parser.error("the start must be before the end")
    url = args.prometheus or stack_prometheus_url()
    if not url:
        print(
            "error: no Prometheus URL: pass --prometheus, set PROMETHEUS_URL, or start the "
            "local stack (make stack-up)",
            file=sys.stderr,
        )
        return 1
    variables = dict(v.split("=", 1) for v in args.var)
    try:
        paths = render_all(url, args.out, start, end, variables)
    except PrometheusUnreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{len(paths)} pictures: {args.out / 'index.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
