"""The generic parts of the Grafana dashboards dev/dashboards.py generates: template variables,
the `{label=~"$var"}` selector, Prometheus targets and the panel constructors (time series, stat,
table, bucket heatmap), value mappings, threshold lines, dashed reference series and the
dashboard frame every dashboard shares. Nothing here knows a metric name; the dashboards
(dev/dashboards_serving.py, dev/dashboards_operator.py) do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from grafana_foundation_sdk.builders import (
    common,
    dashboard,
    heatmap,
    prometheus,
    stat,
    statetimeline,
    table,
    timeseries,
)
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.common import (
    GraphDrawStyle,
    GraphThresholdsStyleMode,
    LegendDisplayMode,
    LegendPlacement,
    StackingMode,
)
from grafana_foundation_sdk.models.heatmap import HeatmapColorMode
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

HEADER_TAGS = ["modeldeploy"]
DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"


# --- variables --------------------------------------------------------------------------------


def datasource_variable() -> dashboard.DatasourceVariable:
    return dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")


def label_variable(name: str, label: str, query: str) -> dashboard.QueryVariable:
    """A multi-value label variable whose "All" is `.*`, so `=~"$var"` matches every value
    (also series the dropdown has not seen yet)."""
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(DS)
        .query(query)
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dm.VariableOption(selected=True, text="All", value="$__all"))
    )


def sel(**matchers: str) -> str:
    """`{label=~"$var", ...}` in the given order; a value starting with `=` or `!` is used as is."""
    parts = []
    for label, value in matchers.items():
        parts.append(f"{label}{value}" if value[:1] in "=!" else f'{label}=~"{value}"')
    return "{" + ", ".join(parts) + "}"


# --- panels -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Q:
    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False
    heatmap: bool = False


def targets(queries: Sequence[Q]) -> list[cogbuilder.Builder[Any]]:
    out: list[cogbuilder.Builder[Any]] = []
    for i, q in enumerate(queries):
        t = prometheus.Dataquery().expr(q.expr).ref_id(chr(ord("A") + i)).datasource(DS)
        if q.legend:
            t = t.legend_format(q.legend)
        t = t.instant() if q.instant else t.range()
        if q.table:
            t = t.format(PromQueryFormat.TABLE)
        if q.heatmap:
            t = t.format(PromQueryFormat.HEATMAP)
        out.append(t)
    return out


P = TypeVar("P", timeseries.Panel, stat.Panel, table.Panel, heatmap.Panel, statetimeline.Panel)


def common_panel(
    panel: P, pid: int, title: str, description: str, queries: Sequence[Q], w: int, h: int
) -> P:
    panel.id(pid).title(title).description(description).datasource(DS).span(w).height(h)
    panel.targets(targets(queries))
    return panel


def legend_table() -> common.VizLegendOptions:
    return (
        common.VizLegendOptions()
        .display_mode(LegendDisplayMode.TABLE)
        .placement(LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(["lastNotNull", "max"])
    )


def ts(
    pid: int,
    title: str,
    description: str,
    queries: Sequence[Q],
    unit: str,
    *,
    w: int = 12,
    h: int = 8,
    bars: bool = False,
    stacked: bool = False,
) -> timeseries.Panel:
    panel = common_panel(timeseries.Panel(), pid, title, description, queries, w, h)
    panel.unit(unit).legend(legend_table()).fill_opacity(10).line_width(1)
    if bars:
        panel.draw_style(GraphDrawStyle.BARS).fill_opacity(80)
    if stacked:
        panel.stacking(common.StackingConfig().mode(StackingMode.NORMAL))
    return panel


def stat_panel(
    pid: int,
    title: str,
    description: str,
    queries: Sequence[Q],
    unit: str,
    *,
    w: int = 6,
    h: int = 6,
    mappings: list[dm.ValueMapping] | None = None,
) -> stat.Panel:
    panel = common_panel(stat.Panel(), pid, title, description, queries, w, h)
    panel.unit(unit).reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
    if mappings:
        panel.mappings(mappings)
    return panel


def table_panel(
    pid: int,
    title: str,
    description: str,
    queries: Sequence[Q],
    *,
    w: int = 12,
    h: int = 8,
    rename: dict[str, str] | None = None,
    hide: Sequence[str] = (),
    seconds: Sequence[str] = (),
) -> table.Panel:
    """Instant queries as one table: merged on their common labels, values renamed to column
    titles (`Value` for one query, `Value #A`, `#B`, ... for several), `seconds` columns in s."""
    panel = common_panel(table.Panel(), pid, title, description, queries, w, h)
    if len(queries) > 1:
        panel.with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
    panel.with_transformation(
        dm.DataTransformerConfig(
            id_val="organize",
            options={
                "excludeByName": {"Time": True, **dict.fromkeys(hide, True)},
                "renameByName": dict(rename or {}),
            },
        )
    )
    for column in seconds:
        panel.override_by_name(column, [dm.DynamicConfigValue(id_val="unit", value="s")])
    return panel


def value_text(values: dict[str, tuple[str, str]]) -> list[dm.ValueMapping]:
    return [
        dm.ValueMap(
            options={
                k: dm.ValueMappingResult(text=text, color=color, index=i)
                for i, (k, (text, color)) in enumerate(values.items())
            }
        )
    ]


def bucket_heatmap(
    pid: int,
    title: str,
    description: str,
    metric: str,
    selector: str,
    y_unit: str,
    cell_unit: str,
    *,
    w: int = 12,
    h: int = 8,
) -> heatmap.Panel:
    """A histogram's buckets as they are (Prometheus' heatmap format, not recalculated): the
    rate of `metric`'s buckets by `le`, bounds in `y_unit`, cells in `cell_unit`."""
    queries = [Q(f"sum by (le) (rate({metric}_bucket{selector}[{RATE}]))", "{{le}}", heatmap=True)]
    return (
        common_panel(heatmap.Panel(), pid, title, description, queries, w, h)
        .calculate(False)
        .y_axis(heatmap.YAxisConfig().unit(y_unit))
        .cell_values(heatmap.CellValues().unit(cell_unit))
        .color(
            heatmap.HeatmapColorOptions().mode(HeatmapColorMode.SCHEME).scheme("Spectral").steps(64)
        )
    )


def quantiles(metric: str, selector: str, by: str, legend: str) -> list[Q]:
    return [
        Q(
            f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{selector}[{RATE}])))",
            f"p{int(q * 100)} {legend}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def threshold_line(panel: timeseries.Panel, value: float) -> timeseries.Panel:
    """A dashed red line at `value` (an alert threshold) across a time series."""
    steps = [dm.Threshold(value=None, color="green"), dm.Threshold(value=value, color="red")]
    return panel.thresholds(
        dashboard.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(steps)
    ).thresholds_style(common.GraphThresholdsStyleConfig().mode(GraphThresholdsStyleMode.DASHED))


def dashed(panel: timeseries.Panel, ref_id: str) -> timeseries.Panel:
    """Draws the series of query `ref_id` dashed: a reference (the training data) to compare
    the solid lines with."""
    style = {"fill": "dash", "dash": [10, 10]}
    return panel.override_by_query(
        ref_id, [dm.DynamicConfigValue(id_val="custom.lineStyle", value=style)]
    )


def build(
    uid: str, title: str, description: str, variables: Sequence[cogbuilder.Builder[Any]]
) -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(HEADER_TAGS)
        .editable()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .variables(list(variables))
    )
