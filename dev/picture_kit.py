"""The arithmetic dev/dashboard_pictures.py does before it draws, without matplotlib or a
network: the generated dashboards' JSON read into panels and targets, Grafana's interpolation
(variables, `$__interval`, `$__rate_interval`, `$__range`) and step choice, Prometheus' answers
as series on the time grid, legends, picture names, heatmap bucket differences, state runs,
table merges and the panels' units.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

POINTS = 200
ROUND_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)
UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


# --- interpolation, names and units -------------------------------------------------------------


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


# --- Prometheus' answers ------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    labels: Mapping[str, str]
    times: tuple[float, ...]
    values: tuple[float, ...]


def parse_series(data: Mapping[str, Any]) -> list[Series]:
    """The `data` of a query or query_range answer as series (a scalar as one point)."""
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


def last_values(panel: Panel, results: Results) -> list[tuple[str, float]]:
    out = []
    for target, series in results:
        for s in series:
            known = [v for v in s.values if not math.isnan(v)]
            out.append((legend(target.legend, s.labels), known[-1] if known else math.nan))
    return out
