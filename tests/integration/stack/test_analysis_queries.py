"""The canary analysis' queries on the stack's real Prometheus: every one is valid PromQL, a
ModelDeployment without series measures as no traffic, a closed port is AnalysisUnavailable, and
series pushed through the Pushgateway come back as the figures they were pushed as.

Pushed series are scraped with honor_labels, so they keep the namespace, modeldeployment and
model_version labels a ServiceMonitor would give a serving pod's series. `increase()`
extrapolates to the window's edges, so absolute counts depend on when Prometheus scraped; every
series here is scraped at the same instants and doubles between two pushes (its first value is
its increase), so every increase is extrapolated by the same factor and the ratios the judge
reads (error rate, class shares, mean confidence, p99, PSI) are exact.
"""

from __future__ import annotations

import math
import socket
import time
import uuid
from collections.abc import Iterator, Mapping

import pytest
import requests

from modeldeploy import names
from modeldeploy.analysis.prometheus import PrometheusAPI, Vector, measure, queries
from modeldeploy.analysis.types import AnalysisUnavailable, VersionSample
from tests.conftest import wait_for

CANARY, STABLE = "2", "1"


class RecordingAPI(PrometheusAPI):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.sent: list[str] = []

    def query(self, expr: str, at: float) -> Vector:
        self.sent.append(expr)
        return super().query(expr, at)


def test_every_query_is_valid_and_no_series_is_no_traffic(prometheus_url: str) -> None:
    api = RecordingAPI(prometheus_url)
    assert api.is_online()
    ns = f"analysis-{uuid.uuid4().hex[:8]}"
    m = measure(api, ns, "nothing", CANARY, STABLE, window_seconds=300, at=time.time())
    assert m.canary == VersionSample() and m.stable == VersionSample()
    assert api.sent == list(queries(ns, "nothing", (CANARY, STABLE), 300).values())


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_closed_port_is_unavailable() -> None:
    port = closed_port()
    api = PrometheusAPI(f"http://user:secret@127.0.0.1:{port}", timeout=2)
    assert not api.is_online()
    with pytest.raises(AnalysisUnavailable) as caught:
        measure(api, "ml", "iris", CANARY, STABLE, 60, time.time())
    message = str(caught.value)
    assert f"Prometheus at 127.0.0.1:{port}: ConnectionError" in message
    assert "secret" not in message


Row = tuple[str, dict[str, str], float]  # name suffix, labels, increase over the window


def row(version: str, value: float, suffix: str = "", **labels: str) -> Row:
    return suffix, {names.PROM_MODEL_VERSION: version, **labels}, value


def histogram(version: str, buckets: Mapping[str, float], total: float) -> list[Row]:
    count = buckets["+Inf"]
    return [
        *(row(version, c, "_bucket", le=le) for le, c in buckets.items()),
        row(version, total, "_sum"),
        row(version, count, "_count"),
    ]


n = names
CLASS_COUNTS = [(CANARY, "a", 30), (CANARY, "b", 10), (STABLE, "a", 50), (STABLE, "b", 50)]
# What each version served in the window, as a serving pod's metric families would show it.
# Canary: 20 % 5xx (the 404s do not count), p99 in (0.1, 0.5], classes 3:1, confidence 0.6, and
# feature x at 3:1 against a 1:1 baseline. Stable: no errors, p99 in (0, 0.1], as in training.
FAMILIES: list[tuple[str, str, list[Row]]] = [
    (
        n.PREDICTION_REQUESTS,
        "counter",
        [
            row(CANARY, 80, code="200"),
            row(CANARY, 20, code="500"),
            row(CANARY, 40, code="404"),
            row(STABLE, 100, code="200"),
        ],
    ),
    (
        n.PREDICTION_LATENCY,
        "histogram",
        histogram(CANARY, {"0.1": 0, "0.5": 100, "+Inf": 100}, 30.0)
        + histogram(STABLE, {"0.1": 100, "0.5": 100, "+Inf": 100}, 5.0),
    ),
    (
        n.PREDICTION_CLASS,
        "counter",
        [row(version, count, **{n.LABEL_CLASS: cls}) for version, cls, count in CLASS_COUNTS],
    ),
    (
        n.PREDICTION_CONFIDENCE,
        "histogram",
        histogram(CANARY, {"+Inf": 40}, 24.0) + histogram(STABLE, {"+Inf": 100}, 90.0),
    ),
    (
        n.FEATURE_BIN_ROWS,
        "counter",
        [
            row(CANARY, 30, feature="x", bin="0"),
            row(CANARY, 10, feature="x", bin="1"),
            row(CANARY, 50, feature="x", bin=n.BIN_MISSING),
            row(STABLE, 20, feature="x", bin="0"),
            row(STABLE, 20, feature="x", bin="1"),
        ],
    ),
    (
        n.FEATURE_BASELINE_SHARE,
        "gauge",
        [row(v, 0.5, feature="x", bin=b) for v in (CANARY, STABLE) for b in ("0", "1")],
    ),
]


def exposition(scale: int) -> str:
    """The families in the text format, every counter at `scale` times its increase."""
    lines = []
    for metric, kind, rows in FAMILIES:
        lines.append(f"# TYPE {metric} {kind}")
        for suffix, labels, value in rows:
            text = ",".join(f'{k}="{v}"' for k, v in labels.items())
            lines.append(
                f"{metric}{suffix}{{{text}}} {value if kind == 'gauge' else value * scale}"
            )
    return "\n".join(lines) + "\n"


@pytest.fixture
def pushed_group(pushgateway_url: str) -> Iterator[tuple[str, str, str]]:
    ns, name = f"analysis-{uuid.uuid4().hex[:8]}", "iris"
    job = "modeldeploy-analysis-test"
    group = f"{pushgateway_url}/metrics/job/{job}/namespace/{ns}/modeldeployment/{name}"
    yield group, ns, name
    requests.delete(group, timeout=5)


def scraped(prometheus_url: str, ns: str, value: float) -> bool:
    expr = f'{names.PREDICTION_REQUESTS}{{namespace="{ns}", code="200", model_version="{STABLE}"}}'
    body = requests.get(f"{prometheus_url}/api/v1/query", params={"query": expr}, timeout=5).json()
    result: list[Mapping[str, list[str]]] = body["data"]["result"]
    return bool(result) and float(result[0]["value"][1]) == value


def test_pushed_series_measure_as_pushed(
    prometheus_url: str, pushed_group: tuple[str, str, str]
) -> None:
    group, ns, name = pushed_group
    for scale in (1, 2):
        requests.put(group, data=exposition(scale), timeout=5).raise_for_status()
        value = 100.0 * scale
        wait_for(lambda v=value: scraped(prometheus_url, ns, v), 30, f"push {scale} scraped")
    time.sleep(2.5)  # one more scrape of the second push: the window ends past both

    m = measure(PrometheusAPI(prometheus_url), ns, name, CANARY, STABLE, 300, time.time())

    c, s = m.canary, m.stable
    assert c.requests > 0 and s.requests > 0
    assert c.requests / s.requests == pytest.approx(1.0)  # 80 + 20 (the 404s do not count)
    assert c.error_rate == pytest.approx(0.2) and s.errors == 0
    assert c.latency_p99 == pytest.approx(0.1 + 0.4 * 0.99)  # all in (0.1, 0.5]
    assert s.latency_p99 == pytest.approx(0.1 * 0.99)  # all in (0, 0.1]
    assert c.class_counts["a"] / c.class_counts["b"] == pytest.approx(3.0)
    assert s.class_counts["a"] / s.class_counts["b"] == pytest.approx(1.0)
    assert c.mean_confidence == pytest.approx(0.6) and s.mean_confidence == pytest.approx(0.9)
    # x: 3/4, 1/4 against 1/2, 1/2 (the missing bin left out): ln(3)/4; stable as in training.
    assert c.input_psi == pytest.approx(math.log(3) / 4) and c.input_psi_feature == "x"
    assert s.input_psi == pytest.approx(0.0, abs=1e-9) and s.input_psi_feature == "x"
