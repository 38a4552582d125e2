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
MPLBACKEND says, with no GUI and no global figure state. The interpolation, naming and unit
arithmetic, which needs neither matplotlib nor a network, is in dev/picture_kit.py.

Usage: dev/dashboard_pictures.py [--prometheus URL] [--out DIR] [--since 1h | --start T --end T]
                                 [--var name=value ...]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
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
from picture_kit import (  # dev/ is not a package: its scripts put it on sys.path
    Dashboard,
    Panel,
    Results,
    Series,
    Window,
    align,
    bound_label,
    bucket_differences,
    duration,
    format_value,
    last_values,
    legend,
    merge_rows,
    parse_duration,
    parse_series,
    picture_name,
    runs,
    shorten,
    substitute,
    time_format,
    value_key,
)

REPO = Path(__file__).resolve().parent.parent
DASHBOARDS = REPO / "charts" / "modeldeploy" / "dashboards"
OUT = REPO / "docs" / "dashboards"
DEFAULT_SCRAPE_INTERVAL = 15.0  # Grafana's default when a data source sets none
WIDTH, HEIGHT, DPI = 8.0, 3.0, 80
MAX_LEGEND, MAX_ROWS, MAX_STAT_TEXT = 10, 12, 6
TABLE_CHARS = 110  # characters of 8 pt text across a WIDTH x DPI picture


# --- Prometheus ---------------------------------------------------------------------------------


class PrometheusUnreachable(RuntimeError):
    """No Prometheus answers at the URL: nothing can be drawn."""


class QueryFailed(RuntimeError):
    """Prometheus answered with an error for one query (shown in that panel's picture)."""


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
        return parse_series(self._get("/api/v1/query", {"query": expr, "time": at}))

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        params: dict[str, str | float] = {"query": expr, "start": start, "end": end, "step": step}
        return parse_series(self._get("/api/v1/query_range", params))


# --- drawing ------------------------------------------------------------------------------------


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
