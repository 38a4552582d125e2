"""Pipeline stages push what they did; monitoring never breaks the job.

Pushes go to a tiny HTTP server on loopback that records each request the way a Pushgateway
would receive it (method, grouping path, text exposition body)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client.parser import text_string_to_metric_families

from modeldeploy import names
from modeldeploy.tracking import pipeline as pl
from modeldeploy.tracking import pipeline_stage, record_retraining_trigger


@dataclass
class Push:
    method: str
    path: str
    samples: dict[str, float]  # "name" or 'name{check="x"}' → value


@dataclass
class Gateway:
    url: str
    pushes: list[Push] = field(default_factory=list)

    def only(self) -> Push:
        assert len(self.pushes) == 1, self.pushes
        return self.pushes[0]


def parse(body: str) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[s.name + (f"{{{labels}}}" if labels else "")] = s.value
    return out


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    pushes: list[Push] = []

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            pushes.append(Push(self.command, self.path, parse(body)))
            self.send_response(200)
            self.end_headers()

        do_POST = do_PUT = _record

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield Gateway(f"http://127.0.0.1:{server.server_address[1]}", pushes)
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def no_env_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(pl.GATEWAY_ENV, raising=False)
    pl._warned.clear()


def test_successful_stage_pushes_outcome_duration_rows_and_checks_to_its_own_group(
    gateway: Gateway,
) -> None:
    with pipeline_stage(
        "etl", pipeline="fraud", expected_every=timedelta(hours=1), gateway=gateway.url
    ) as s:
        s.rows_in(1000)
        s.rows_out(990)
        s.check("no_null_ids", passed=True)
        s.check("null_ratio", passed=False, value=0.2)

    push = gateway.only()
    # POST keeps the metric names this push does not send (an earlier success timestamp).
    assert push.method == "POST"
    assert push.path == f"/metrics/job/{names.PIPELINE_JOB}/pipeline/fraud/stage/etl"
    m = push.samples
    assert m[names.PIPELINE_STAGE_SUCCESS] == 1
    assert m[names.PIPELINE_STAGE_DURATION] >= 0
    assert m[names.PIPELINE_STAGE_LAST_SUCCESS] == m[names.PIPELINE_STAGE_LAST_RUN] > 0
    assert names.PIPELINE_STAGE_LAST_FAILURE not in m
    assert m[names.PIPELINE_STAGE_EXPECTED_PERIOD] == 3600
    assert m[names.PIPELINE_STAGE_ROWS_IN] == 1000
    assert m[names.PIPELINE_STAGE_ROWS_OUT] == 990
    assert m[f'{names.PIPELINE_CHECK_PASSED}{{check="no_null_ids"}}'] == 1
    assert m[f'{names.PIPELINE_CHECK_PASSED}{{check="null_ratio"}}'] == 0
    assert m[f'{names.PIPELINE_CHECK_VALUE}{{check="null_ratio"}}'] == 0.2
    assert f'{names.PIPELINE_CHECK_VALUE}{{check="no_null_ids"}}' not in m


def test_training_metrics_are_pushed_per_metric_name_with_the_stage(gateway: Gateway) -> None:
    with pipeline_stage("training", pipeline="fraud", gateway=gateway.url) as s:
        s.metric("accuracy", 0.5)
        s.metric("accuracy", 0.93)  # the last figure per name wins
        s.metric("log_loss", 0.21)

    push = gateway.only()
    assert push.path.endswith("/pipeline/fraud/stage/training")
    m = push.samples
    assert m[f'{names.PIPELINE_STAGE_METRIC}{{{names.PIPELINE_LABEL_METRIC}="accuracy"}}'] == 0.93
    assert m[f'{names.PIPELINE_STAGE_METRIC}{{{names.PIPELINE_LABEL_METRIC}="log_loss"}}'] == 0.21
    assert m[names.PIPELINE_STAGE_SUCCESS] == 1


def test_a_run_without_metrics_pushes_none_so_the_last_reported_ones_stay(
    gateway: Gateway,
) -> None:
    with pipeline_stage("etl", pipeline="fraud", gateway=gateway.url):
        pass
    assert not [k for k in gateway.only().samples if k.startswith(names.PIPELINE_STAGE_METRIC)]


def test_metrics_recorded_before_a_failure_are_pushed_with_it(gateway: Gateway) -> None:
    with (
        pytest.raises(RuntimeError),
        pipeline_stage("training", pipeline="fraud", gateway=gateway.url) as s,
    ):
        s.metric("accuracy", 0.4)
        raise RuntimeError("evaluation crashed")
    m = gateway.only().samples
    assert m[names.PIPELINE_STAGE_SUCCESS] == 0
    assert m[f'{names.PIPELINE_STAGE_METRIC}{{{names.PIPELINE_LABEL_METRIC}="accuracy"}}'] == 0.4


def test_metric_needs_a_name() -> None:
    with pytest.raises(ValueError, match="non-empty name"):
        pipeline_stage("training", pipeline="p").metric("", 1.0)


def test_exception_in_stage_is_recorded_as_failure_and_propagates_unchanged(
    gateway: Gateway,
) -> None:
    error = KeyError("customer_id")
    with (
        pytest.raises(KeyError) as raised,
        pipeline_stage("train", pipeline="fraud", gateway=gateway.url),
    ):
        raise error
    assert raised.value is error
    m = gateway.only().samples
    assert m[names.PIPELINE_STAGE_SUCCESS] == 0
    assert m[names.PIPELINE_STAGE_LAST_FAILURE] > 0
    # The failure leaves the last success of an earlier run in place on the gateway.
    assert names.PIPELINE_STAGE_LAST_SUCCESS not in m
    assert names.PIPELINE_STAGE_EXPECTED_PERIOD not in m  # none given: never stale


def test_decorator_records_each_call_from_a_clean_slate(gateway: Gateway) -> None:
    calls = []

    @pipeline_stage("score", pipeline="fraud", gateway=gateway.url, expected_every=60)
    def score(fail: bool) -> str:
        calls.append(fail)
        if fail:
            raise RuntimeError("model missing")
        return "ok"

    assert score(False) == "ok"
    with pytest.raises(RuntimeError, match="model missing"):
        score(True)
    assert calls == [False, True]
    assert [p.samples[names.PIPELINE_STAGE_SUCCESS] for p in gateway.pushes] == [1, 0]
    assert all(p.path.endswith("/pipeline/fraud/stage/score") for p in gateway.pushes)


def test_stage_reads_the_gateway_from_the_environment(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(pl.GATEWAY_ENV, gateway.url)
    with pipeline_stage("etl", pipeline="env"):
        pass
    assert gateway.only().samples[names.PIPELINE_STAGE_SUCCESS] == 1


def test_without_a_gateway_the_stage_runs_and_nothing_is_pushed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran = []
    with caplog.at_level(logging.DEBUG, logger=pl.__name__), pipeline_stage("etl", pipeline="p"):
        ran.append(True)
    assert ran == [True]
    assert "not pushed" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_push_failure_warns_once_and_never_fails_the_job(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead = "http://127.0.0.1:9"  # discard port: connection refused
    with caplog.at_level(logging.DEBUG, logger=pl.__name__):
        for _ in range(3):
            with pipeline_stage("etl", pipeline="p", gateway=dead):
                pass
        record_retraining_trigger("p", "drift", gateway=dead)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "job continues" in warnings[0].getMessage()


def test_push_failure_raises_when_strict() -> None:
    with (
        pytest.raises(OSError),
        pipeline_stage("etl", pipeline="p", gateway="http://127.0.0.1:9", strict=True),
    ):
        pass


def test_push_failure_does_not_replace_the_stage_exception() -> None:
    with (
        pytest.raises(ValueError, match="bad rows"),
        pipeline_stage("etl", pipeline="p", gateway="http://127.0.0.1:9"),
    ):
        raise ValueError("bad rows")


def test_retraining_trigger_pushes_its_time_per_pipeline_and_reason(gateway: Gateway) -> None:
    record_retraining_trigger("fraud", "drift", gateway=gateway.url)
    push = gateway.only()
    assert push.method == "POST"
    assert push.path == f"/metrics/job/{names.PIPELINE_JOB}/pipeline/fraud/reason/drift"
    assert push.samples[names.PIPELINE_RETRAINING_TRIGGER] > 0


@pytest.mark.parametrize("every", [0, -5, timedelta(0)])
def test_expected_every_must_be_positive(every: float | timedelta) -> None:
    with pytest.raises(ValueError, match="positive"):
        pipeline_stage("etl", pipeline="p", expected_every=every)


class FakeMlflow:
    """The three mlflow calls the stage makes; the real run store is tested in
    tests/e2e/test_pipeline_alerts.py against the stack's MLflow."""

    def __init__(self, active: bool) -> None:
        self.active = active
        self.metrics: dict[str, float] = {}
        self.tags: dict[str, str] = {}

    def active_run(self) -> object | None:
        return object() if self.active else None

    def log_metrics(self, metrics: dict[str, float]) -> None:
        self.metrics.update(metrics)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.tags.update(tags)


@pytest.fixture
def fake_mlflow(monkeypatch: pytest.MonkeyPatch) -> FakeMlflow:
    import mlflow

    fake = FakeMlflow(active=True)
    for name in ("active_run", "log_metrics", "set_tags"):
        monkeypatch.setattr(mlflow, name, getattr(fake, name))
    return fake


def test_mlflow_true_logs_the_same_figures_to_the_active_run(
    gateway: Gateway, fake_mlflow: FakeMlflow
) -> None:
    with pipeline_stage("etl", pipeline="fraud", gateway=gateway.url, mlflow=True) as s:
        s.rows_in(10)
        s.rows_out(8)
        s.check("schema", passed=False, value=3)
        s.metric("accuracy", 0.9)
    record_retraining_trigger("fraud", "drift", mlflow=True)

    m = fake_mlflow.metrics
    assert m["pipeline.etl.rows_in"] == 10
    assert m["pipeline.etl.rows_out"] == 8
    assert m["pipeline.etl.check.schema"] == 0
    assert m["pipeline.etl.check.schema.value"] == 3
    assert m["pipeline.etl.duration_seconds"] >= 0
    assert m["pipeline.etl.metric.accuracy"] == 0.9
    assert m["pipeline.retraining_trigger.timestamp_seconds"] > 0
    assert fake_mlflow.tags["pipeline.etl.outcome"] == "success"
    assert fake_mlflow.tags["pipeline.retraining_trigger.reason"] == "drift"
    # MLflow and Prometheus get the same figures.
    pushed = gateway.only().samples
    assert pushed[names.PIPELINE_STAGE_ROWS_IN] == 10
    assert pushed[names.PIPELINE_STAGE_DURATION] == m["pipeline.etl.duration_seconds"]
    assert pushed[f'{names.PIPELINE_STAGE_METRIC}{{metric="accuracy"}}'] == 0.9


def test_mlflow_failure_never_fails_the_job(
    gateway: Gateway, fake_mlflow: FakeMlflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    def broken(metrics: dict[str, float]) -> None:
        raise ConnectionError("tracking server down")

    monkeypatch.setattr(mlflow, "log_metrics", broken)
    with pipeline_stage("etl", pipeline="p", gateway=gateway.url, mlflow=True):
        pass
    assert gateway.only().samples[names.PIPELINE_STAGE_SUCCESS] == 1
    with (
        pytest.raises(ConnectionError),
        pipeline_stage("etl", pipeline="p", mlflow=True, strict=True),
    ):
        pass


def test_mlflow_true_without_an_active_run_still_pushes(
    gateway: Gateway, fake_mlflow: FakeMlflow
) -> None:
    fake_mlflow.active = False
    with pipeline_stage("etl", pipeline="p", gateway=gateway.url, mlflow=True):
        pass
    assert gateway.only().samples[names.PIPELINE_STAGE_SUCCESS] == 1
    assert not fake_mlflow.metrics and not fake_mlflow.tags
