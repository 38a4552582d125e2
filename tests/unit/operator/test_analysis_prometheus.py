"""The canary analysis' Prometheus client, against canned answers of Prometheus' HTTP API: the
PromQL it sends, how it folds the answers into one VersionSample per version, and that a failed
question raises AnalysisUnavailable without showing the credentials of the URL."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any, cast

import pytest
import requests

from modeldeploy import names
from modeldeploy.analysis.prometheus import (
    BASELINE_SHARE,
    CLASSES,
    CONFIDENCE_COUNT,
    CONFIDENCE_SUM,
    FEATURE_ROWS,
    LATENCY,
    REQUESTS,
    PrometheusAPI,
    measure,
    queries,
)
from modeldeploy.analysis.types import AnalysisUnavailable, VersionSample
from modeldeploy.serving.drift import psi

URL = "http://user:secret@127.0.0.1:1"
NS, MD, CANARY, STABLE = "ml", "iris", "4", "3"
AT = 1_700_000_000.25


class FakeResponse:
    def __init__(self, status_code: int, text: str) -> None:
        self.status_code, self.text = status_code, text

    def json(self) -> Any:
        return json.loads(self.text)


class FakeSession:
    """Answers GETs with `answer(url, params)` and keeps every call."""

    def __init__(self, answer: Callable[[str, Mapping[str, str]], FakeResponse]) -> None:
        self.answer = answer
        self.calls: list[tuple[str, dict[str, str], float | None]] = []

    def get(
        self, url: str, params: Mapping[str, str] | None = None, timeout: float | None = None
    ) -> FakeResponse:
        self.calls.append((url, dict(params or {}), timeout))
        return self.answer(url, params or {})


Answer = Callable[[str, Mapping[str, str]], FakeResponse]


def fake(answer: Answer) -> tuple[PrometheusAPI, FakeSession]:
    session = FakeSession(answer)
    return PrometheusAPI(URL, timeout=2.5, session=cast(requests.Session, session)), session


def api_with(answer: Answer) -> PrometheusAPI:
    return fake(answer)[0]


def vector(*series: tuple[dict[str, str], str]) -> FakeResponse:
    result = [{"metric": labels, "value": [AT, value]} for labels, value in series]
    body = {"status": "success", "data": {"resultType": "vector", "result": result}}
    return FakeResponse(200, json.dumps(body))


def v(version: str, **labels: str) -> dict[str, str]:
    return {names.PROM_MODEL_VERSION: version, **labels}


# One answer per figure: canary 4 and stable 3 of ml/iris.
ANSWERS: dict[str, FakeResponse] = {
    REQUESTS: vector(
        (v(CANARY, code="200"), "85"),
        (v(CANARY, code="500"), "10"),
        (v(CANARY, code="503"), "5"),
        (v(CANARY, code="404"), "50"),  # the client's error: not an answer that counts
        (v(STABLE, code="200"), "400"),
    ),
    LATENCY: vector((v(CANARY), "0.25"), (v(STABLE), "NaN")),  # NaN: no observations
    CLASSES: vector(
        (v(CANARY, **{"class": "setosa"}), "10"),
        (v(CANARY, **{"class": "versicolor"}), "30"),
        (v(STABLE, **{"class": "setosa"}), "200"),
    ),
    CONFIDENCE_SUM: vector((v(CANARY), "30"), (v(STABLE), "380")),
    CONFIDENCE_COUNT: vector((v(CANARY), "40"), (v(STABLE), "400")),
    FEATURE_ROWS: vector(
        # canary: x is 3:1 against a 1:1 baseline, y as in training, w has no baseline
        (v(CANARY, feature="x", bin="0"), "30"),
        (v(CANARY, feature="x", bin="1"), "10"),
        (v(CANARY, feature="x", bin=names.BIN_MISSING), "1000"),  # never a share
        (v(CANARY, feature="y", bin="a"), "20"),
        (v(CANARY, feature="y", bin="b"), "20"),
        (v(CANARY, feature="w", bin=names.BIN_PRESENT), "40"),
        # stable: z saw only bin a, its bin b is empty
        (v(STABLE, feature="z", bin="a"), "10"),
    ),
    BASELINE_SHARE: vector(
        (v(CANARY, feature="x", bin="0"), "0.5"),
        (v(CANARY, feature="x", bin="1"), "0.5"),
        (v(CANARY, feature="y", bin="a"), "0.5"),
        (v(CANARY, feature="y", bin="b"), "0.5"),
        (v(CANARY, feature="v", bin="0"), "1"),  # a baseline without rows
        (v(STABLE, feature="z", bin="a"), "0.5"),
        (v(STABLE, feature="z", bin="b"), "0.5"),
    ),
}


def canned(canary: str = CANARY, stable: str = STABLE, window: int = 90) -> Answer:
    """Answers each figure's query (for these versions and window) with ANSWERS[figure]."""
    figure_of = {e: f for f, e in queries(NS, MD, (canary, stable), window).items()}
    return lambda url, params: ANSWERS[figure_of[params["query"]]]


def test_measure_sends_one_scoped_query_per_figure_over_the_window_in_seconds() -> None:
    api, session = fake(canned())
    measure(api, NS, MD, CANARY, STABLE, window_seconds=90.4, at=AT)
    scope = 'namespace="ml", modeldeployment="iris", model_version=~"4|3"'
    assert [params["query"] for _, params, _ in session.calls] == [
        "sum by (model_version, code) "
        f'(increase(prediction_requests_total{{{scope}, code!~"4.."}}[90s]))',
        "histogram_quantile(0.99, sum by (model_version, le) "
        f"(increase(prediction_latency_seconds_bucket{{{scope}}}[90s])))",
        f"sum by (model_version, class) (increase(prediction_class_total{{{scope}}}[90s]))",
        f"sum by (model_version) (increase(prediction_confidence_sum{{{scope}}}[90s]))",
        f"sum by (model_version) (increase(prediction_confidence_count{{{scope}}}[90s]))",
        "sum by (model_version, feature, bin) "
        f'(increase(feature_bin_rows_total{{{scope}, bin!="__missing__"}}[90s]))',
        f"max by (model_version, feature, bin) (feature_baseline_share{{{scope}}})",
    ]
    for url, params, timeout in session.calls:
        assert url == f"{URL}/api/v1/query"
        assert params["time"] == "1700000000.250"
        assert timeout == 2.5


def test_window_is_whole_seconds_and_at_least_one() -> None:
    assert measure(api_with(canned()), NS, MD, CANARY, STABLE, 90.4, AT).window_seconds == 90.0
    api, session = fake(lambda url, params: vector())
    assert measure(api, NS, MD, CANARY, STABLE, 0.2, AT).window_seconds == 1.0
    windows = [p["query"] for _, p, _ in session.calls if "increase" in p["query"]]
    assert len(windows) == 6 and all("[1s]" in q for q in windows)


def test_versions_are_escaped_for_the_regex_matcher() -> None:
    expr = queries(NS, MD, ("1.0", "1+0"), 60)[REQUESTS]
    assert 'model_version=~"1\\\\.0|1\\\\+0"' in expr


def test_answers_fold_into_a_sample_per_version() -> None:
    m = measure(api_with(canned()), NS, MD, CANARY, STABLE, 90, AT)
    assert (m.canary.requests, m.canary.errors) == (100.0, 15.0)  # 200 + 5xx; 404 left out
    assert m.canary.error_rate == pytest.approx(0.15)
    assert (m.stable.requests, m.stable.errors) == (400.0, 0.0)
    assert m.canary.latency_p99 == 0.25
    assert m.stable.latency_p99 is None  # NaN dropped: no observations
    assert m.canary.class_counts == {"setosa": 10.0, "versicolor": 30.0}
    assert m.stable.class_counts == {"setosa": 200.0}
    assert (m.canary.confidence_sum, m.canary.confidence_count) == (30.0, 40.0)
    assert m.canary.mean_confidence == pytest.approx(0.75)
    assert m.stable.mean_confidence == pytest.approx(0.95)


def test_input_psi_is_the_largest_feature_psi_against_the_baseline() -> None:
    m = measure(api_with(canned()), NS, MD, CANARY, STABLE, 90, AT)
    # x: shares 3/4, 1/4 against 1/2, 1/2 -> 1/4 ln(3/2) + 1/4 ln 2 = ln(3)/4; y: 0.
    assert m.canary.input_psi == pytest.approx(math.log(3) / 4, rel=1e-12)
    assert m.canary.input_psi_feature == "x"
    # z's empty bin counts, floored at PSI_EPSILON, as serving.drift.psi counts it.
    assert m.stable.input_psi == pytest.approx(psi([0.5, 0.5], [1.0, 0.0]), rel=1e-12)
    assert m.stable.input_psi == pytest.approx(
        0.5 * math.log(2) + (names.PSI_EPSILON - 0.5) * math.log(names.PSI_EPSILON / 0.5)
    )
    assert m.stable.input_psi_feature == "z"


def test_input_psi_is_none_without_a_baseline_or_rows() -> None:
    answers = dict(ANSWERS)
    answers[BASELINE_SHARE] = vector((v(CANARY, feature="v", bin="0"), "1"))
    figure_of = {e: f for f, e in queries(NS, MD, (CANARY, STABLE), 90).items()}
    api = api_with(lambda url, params: answers[figure_of[params["query"]]])
    m = measure(api, NS, MD, CANARY, STABLE, 90, AT)
    assert (m.canary.input_psi, m.canary.input_psi_feature) == (None, None)  # v has no rows
    assert (m.stable.input_psi, m.stable.input_psi_feature) == (None, None)  # no baseline


def test_a_version_without_series_has_no_traffic() -> None:
    m = measure(api_with(canned(canary="9")), NS, MD, "9", STABLE, 90, AT)
    assert m.canary == VersionSample()
    assert m.canary.error_rate is None
    assert m.stable.requests == 400.0


def test_query_drops_nan_values() -> None:
    api = api_with(lambda url, params: vector(({"a": "1"}, "NaN"), ({"a": "2"}, "+Inf")))
    assert api.query("up", AT) == [({"a": "2"}, math.inf)]


def refuse(url: str, params: Mapping[str, str]) -> FakeResponse:
    # What requests says for a closed port, with the worst case of the URL in it.
    raise requests.ConnectionError(
        f"HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded with url: {URL}"
        '/api/v1/query (Caused by NewConnectionError("...: Failed to establish a new '
        'connection: [Errno 111] Connection refused"))'
    )


FAILURES: dict[str, tuple[Answer, str]] = {
    "connection refused": (refuse, "ConnectionError ([Errno 111] Connection refused)"),
    "HTTP 500": (lambda url, params: FakeResponse(500, "oops " + URL), "HTTP 500"),
    "status error": (
        lambda url, params: FakeResponse(
            200, json.dumps({"status": "error", "errorType": "timeout", "error": "too slow"})
        ),
        "status error (timeout: too slow)",
    ),
    "bad JSON": (lambda url, params: FakeResponse(200, "<html>" + URL), "not JSON"),
    "not a vector": (
        lambda url, params: FakeResponse(
            200, json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}})
        ),
        "unparsable answer",
    ),
}


@pytest.mark.parametrize("case", FAILURES)
def test_failed_question_is_unavailable_without_credentials(case: str) -> None:
    answer, reason = FAILURES[case]
    with pytest.raises(AnalysisUnavailable) as caught:
        measure(api_with(answer), NS, MD, CANARY, STABLE, 60, AT)
    message = str(caught.value)
    assert message.startswith(f"{REQUESTS}: Prometheus at 127.0.0.1:1: ")
    assert reason in message
    assert "secret" not in message and "user" not in message


def test_bad_query_names_prometheus_error() -> None:
    body = {"status": "error", "errorType": "bad_data", "error": "parse error at char 3"}
    api = api_with(lambda url, params: FakeResponse(400, json.dumps(body)))
    with pytest.raises(AnalysisUnavailable, match=r"HTTP 400 \(bad_data: parse error at char 3\)"):
        api.query("up{", AT)


def test_is_online_asks_ready() -> None:
    api = api_with(lambda url, params: FakeResponse(200 if url.endswith("/-/ready") else 404, ""))
    assert api.is_online()
    assert not api_with(refuse).is_online()
    assert not api_with(lambda url, params: FakeResponse(503, "")).is_online()


def test_endpoint_defaults_the_port_of_the_scheme() -> None:
    assert PrometheusAPI("https://a:b@prom.example/prometheus/").endpoint == "prom.example:443"
    assert PrometheusAPI("http://[::1]:9090").endpoint == "[::1]:9090"
