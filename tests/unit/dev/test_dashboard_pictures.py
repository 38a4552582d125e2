"""dev/dashboard_pictures.py: the Grafana interpolation, naming and bucket arithmetic it does
before drawing (dev/picture_kit.py), and a whole run against a stand-in Prometheus (no network)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import dashboard_pictures as pictures  # tests/conftest.py puts dev/ on sys.path
import numpy as np
import picture_kit as kit
import pytest

ROLLOUTS = pictures.DASHBOARDS / "modeldeploy-rollouts.json"


def test_variables_are_replaced_by_whole_name_and_unknown_ones_are_left() -> None:
    expr = 'x{a=~"$model", b=~"$modeldeployment", c=~"${version}", d=~"[[ns]]"}[$__rate_interval]'
    values = {"model": "m", "modeldeployment": ".*", "version": "1|2", "__rate_interval": "60s"}
    assert kit.substitute(expr, values) == ('x{a=~"m", b=~".*", c=~"1|2", d=~"[[ns]]"}[60s]')


def test_legend_takes_labels_and_falls_back_to_the_series_name() -> None:
    labels = {"__name__": "up", "model_name": "fraud", "model_version": "3"}
    assert kit.legend("{{model_name}} v{{ model_version }}", labels) == "fraud v3"
    assert kit.legend("{{missing}}/{{model_name}}", labels) == "/fraud"
    assert kit.legend("", labels) == 'up{model_name="fraud", model_version="3"}'
    assert kit.legend("", {}) == "{}"


def test_picture_names_are_numbered_ascii_slugs() -> None:
    assert kit.picture_name(7, "Alert → rollback latency") == "07-alert-rollback-latency.png"
    assert kit.slug("Prediction latency p50 / p95 / p99") == "prediction-latency-p50-p95-p99"
    assert kit.slug("→") == "panel"


@pytest.mark.parametrize(
    ("span", "scrape", "step"),
    [(1800, 2, 10), (3600, 2, 30), (6 * 3600, 15, 120), (600, 15, 15), (30 * 86400, 15, 21600)],
)
def test_step_gives_at_most_200_round_points_and_never_beats_the_scrape_interval(
    span: float, scrape: float, step: float
) -> None:
    assert kit.choose_step(span, minimum=scrape) == step


def test_rate_interval_is_grafanas_and_holds_four_scrapes() -> None:
    assert kit.rate_interval(step=10, scrape=2) == 12
    assert kit.rate_interval(step=1, scrape=15) == 60
    window = kit.Window.fit(start=1000.0, end=2800.0, scrape=2.0)
    assert window.builtins() == {
        "__interval": "10s",
        "__rate_interval": "12s",
        "__range": "1800s",
    }
    assert window.grid()[0] == 1000.0 and window.grid()[-1] >= 2800.0


def test_long_legends_keep_their_end_and_ticks_their_resolution() -> None:
    label = "modeldeploy-demo/fraud-detector fraud-detector v3"
    assert kit.shorten(label) == "modeldeploy-demo/fr…or fraud-detector v3"
    assert len(kit.shorten(label)) == 40 and kit.shorten("short") == "short"
    assert kit.time_format(300) == "%H:%M:%S"
    assert kit.time_format(3600) == "%H:%M"
    assert kit.time_format(7 * 86400) == "%m-%d %H:%M"


def test_durations_parse_like_prometheus() -> None:
    assert kit.parse_duration("1h30m") == 5400
    assert kit.parse_duration("90s") == 90
    with pytest.raises(ValueError, match="not a duration"):
        kit.parse_duration("30 minutes")


def test_heatmap_buckets_are_sorted_and_differenced() -> None:
    les = ["+Inf", "0.1", "0.5"]
    cumulative = np.array([[10.0, 4.0], [2.0, 1.0], [5.0, math.nan]])
    bounds, cells = kit.bucket_differences(les, cumulative)
    assert bounds == ["0.1", "0.5", "+Inf"]
    assert cells[:, 0].tolist() == [2.0, 3.0, 5.0]
    assert cells[0, 1] == 1.0 and math.isnan(cells[1, 1]) and math.isnan(cells[2, 1])
    # A bucket scraped a moment before the one below it must not go negative.
    _, noisy = kit.bucket_differences(["1", "2"], np.array([[3.0], [2.9]]))
    assert noisy[:, 0].tolist() == [3.0, 0.0]


def test_values_are_shown_in_the_panels_unit() -> None:
    assert kit.format_value(0.05, "percentunit") == "5%"
    assert kit.format_value(0.0042, "s") == "4.2 ms"
    assert kit.format_value(90, "s") == "1.5 min"
    assert kit.format_value(1536, "bytes") == "1.5 KiB"
    assert kit.format_value(12, "reqps") == "12 req/s"
    assert kit.format_value(25000, "short") == "25K"
    assert kit.format_value(math.nan, "s") == "n/a"


def test_table_rows_merge_on_the_labels_they_share() -> None:
    phases = [({"namespace": "a", "name": "x", "phase": "Healthy"}, 1.0)]
    versions = [
        ({"namespace": "a", "name": "x", "version": "2"}, 1.0),
        ({"namespace": "a", "name": "y", "version": "1"}, 1.0),
    ]
    rows = kit.merge_rows([("Value #A", phases), ("Value #B", versions)])
    assert rows == [
        {
            "namespace": "a",
            "name": "x",
            "phase": "Healthy",
            "Value #A": 1.0,
            "version": "2",
            "Value #B": 1.0,
        },
        {"namespace": "a", "name": "y", "version": "1", "Value #B": 1.0},
    ]


def test_state_bands_are_runs_of_equal_values() -> None:
    assert kit.runs([1, 1, math.nan, 0, 0, 1]) == [(0, 2, 1), (3, 5, 0), (5, 6, 1)]


def test_dashboards_are_read_without_rows_and_with_their_overrides() -> None:
    dash = kit.Dashboard.load(ROLLOUTS)
    assert dash.variables == {
        "namespace": ".*",
        "modeldeployment": ".*",
        "model": ".*",
        "version": ".*",
    }
    assert "row" not in {p.kind for p in dash.panels}
    latency = next(p for p in dash.panels if p.title == "Alert → rollback latency")
    assert latency.units_by_name == {"rollbacks": "short"}
    assert all(t.instant for t in latency.targets)
    pipeline = kit.Dashboard.load(pictures.DASHBOARDS / "modeldeploy-pipeline.json")
    status = next(p for p in pipeline.panels if p.title == "Stage status")
    assert status.renames["Value #A"] == "since last run" and "Time" in status.hidden
    outcome = next(p for p in pipeline.panels if p.title == "Last outcome")
    assert outcome.mappings["1"] == ("success", "green")
    names = [kit.picture_name(i, p.title) for i, p in enumerate(dash.panels, 1)]
    assert len(set(names)) == len(names)


class FakePrometheus:
    """Answers every query with one series per `le` (heatmaps) or one labelled series."""

    def __init__(self, url: str) -> None:
        self.exprs: list[str] = []

    def scrape_interval(self) -> float:
        return 2.0

    def query(self, expr: str, at: float) -> list[kit.Series]:
        self.exprs.append(expr)
        return [kit.Series({"stage": "train"}, (at,), (1.0,))]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[kit.Series]:
        self.exprs.append(expr)
        if "absent_metric" in expr:
            return []
        times = tuple(start + k * step for k in range(int((end - start) / step) + 1))
        les = ("0.1", "1", "+Inf") if "_bucket" in expr else ("",)
        return [
            kit.Series({"le": le, "stage": "train"}, times, tuple(float(i + 1) for _ in times))
            for i, le in enumerate(les)
        ]


def test_render_all_writes_one_picture_per_panel_and_an_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def panel(kind: str, title: str, expr: str, **target: object) -> dict[str, object]:
        query = {"refId": "A", "expr": expr, "legendFormat": "{{stage}}", **target}
        return {"type": kind, "title": title, "description": f"about {title}", "targets": [query]}

    board = {
        "title": "Test board",
        "templating": {"list": [{"name": "stage", "type": "query", "allValue": ".*"}]},
        "panels": [
            {"type": "row", "title": "Row", "panels": []},
            panel("timeseries", "Rate", 'rate(x{stage=~"$stage"}[$__rate_interval])'),
            panel("heatmap", "Latency", "sum by (le) (rate(x_bucket[$__rate_interval]))"),
            panel("stat", "Last", "x", instant=True),
            panel("table", "Table", "x", instant=True),
            panel("state-timeline", "States", "x"),
            panel("timeseries", "Nothing", "absent_metric"),
        ],
    }
    (tmp_path / "boards").mkdir()
    (tmp_path / "boards" / "test-board.json").write_text(json.dumps(board))
    (tmp_path / "out" / "test-board").mkdir(parents=True)
    (tmp_path / "out" / "test-board" / "99-renamed-panel.png").write_bytes(b"old")
    fake = FakePrometheus("")
    monkeypatch.setattr(pictures, "Prometheus", lambda url: fake)

    paths = pictures.render_all(
        "http://prometheus", tmp_path / "out", 0.0, 1800.0, {"stage": "train"}, tmp_path / "boards"
    )

    assert [p.name for p in paths] == [
        "01-rate.png",
        "02-latency.png",
        "03-last.png",
        "04-table.png",
        "05-states.png",
        "06-nothing.png",
    ]
    assert sorted((tmp_path / "out" / "test-board").iterdir()) == sorted(paths)
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths)
    assert fake.exprs[0] == 'rate(x{stage=~"train"}[12s])'
    index = (tmp_path / "out" / "index.md").read_text()
    assert "![Rate](test-board/01-rate.png)" in index and "about Rate" in index
    assert index.count("*No data in this time range.*") == 1
    assert "no data (1 of 6): test-board/06-nothing.png" in capsys.readouterr().err
