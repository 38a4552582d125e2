"""Pipeline monitoring for batch jobs: what a stage did, pushed to a Prometheus Pushgateway.

A batch job exits before Prometheus could scrape it, so each stage pushes its figures when it
ends (docs/tracking.md, "Pipeline monitoring"):

    with pipeline_stage("etl", pipeline="fraud", expected_every=timedelta(hours=1)) as s:
        s.rows_in(len(raw))
        ...
        s.check("no_null_ids", passed=ids.notna().all())

    with pipeline_stage("training", pipeline="fraud", mlflow=True) as s:
        ...
        s.metric("accuracy", accuracy_score(y_test, model.predict(x_test)))

Push semantics. Each stage is one Pushgateway group (job=modeldeploy-pipeline, pipeline, stage),
so stages never overwrite each other. Pushes are POSTs (`pushadd_to_gateway`): a push replaces
the series of the metric names it sends and keeps the others. A run sends the success *or* the
failure timestamp, never both, so a failed run keeps the last success of an earlier run: that
is what the stale rule measures. A figure a run does not report (rows, checks, metrics) keeps
the value of the last run that reported it; checks and metrics are one metric name each, so a
run that reports any check (metric) replaces all of the stage's earlier checks (metrics).

Monitoring never breaks the job: no gateway URL means nothing is pushed, and a failed push or
MLflow call is logged (a warning once per gateway) and the job goes on, unless `strict=True`.
An exception in the stage is recorded as a failure and re-raised unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from datetime import timedelta
from types import TracebackType
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway

from modeldeploy import names

log = logging.getLogger(__name__)

GATEWAY_ENV = "PUSHGATEWAY_URL"
PUSH_TIMEOUT = 5.0  # seconds; a gateway that hangs must not hold the job for long
_warned: set[str] = set()


def _seconds(value: timedelta | float | None) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds <= 0:
        raise ValueError(f"expected_every must be positive, not {value!r}")
    return seconds


def _gateway(gateway: str | None) -> str | None:
    return gateway or os.environ.get(GATEWAY_ENV) or None


def _push(
    gateway: str | None, grouping: dict[str, str], registry: CollectorRegistry, strict: bool
) -> None:
    """POSTs `registry` to the group; a failure warns once per gateway (raises if strict)."""
    url = _gateway(gateway)
    if url is None:
        log.debug("no %s: pipeline metrics for %s not pushed", GATEWAY_ENV, grouping)
        return
    try:
        pushadd_to_gateway(
            url, names.PIPELINE_JOB, registry, grouping_key=grouping, timeout=PUSH_TIMEOUT
        )
    except Exception as exc:
        if strict:
            raise
        if url not in _warned:
            _warned.add(url)
            log.warning("pushing pipeline metrics to %s failed (job continues): %s", url, exc)
        else:
            log.debug("pushing pipeline metrics to %s failed: %s", url, exc)


def _log_mlflow(metrics: dict[str, float], tags: dict[str, str], strict: bool) -> None:
    """Logs to the active MLflow run, if any: the figures then sit next to the model they fed."""
    try:
        import mlflow

        if mlflow.active_run() is None:
            log.debug("mlflow=True but no active MLflow run: pipeline figures not logged")
            return
        if metrics:
            mlflow.log_metrics(metrics)
        if tags:
            mlflow.set_tags(tags)
    except Exception as exc:
        if strict:
            raise
        log.warning("logging pipeline figures to MLflow failed (job continues): %s", exc)


def _gauge(registry: CollectorRegistry, name: str, doc: str, value: float) -> None:
    Gauge(name, doc, registry=registry).set(value)


class PipelineStage(contextlib.ContextDecorator):
    """One run of a stage; a context manager and, through ContextDecorator, a decorator.

    Figures are collected during the run and sent once at its end, so a stage that dies halfway
    reports one consistent outcome rather than half of one. Used as a decorator, the same object
    runs again for each call; `__enter__` starts from a clean slate.

    Use: `with pipeline_stage("etl", pipeline="fraud") as s:` or the decorator
    `@pipeline_stage("etl", pipeline="fraud")`. `expected_every` (a timedelta or seconds) is
    pushed with the stage, so the stale alert needs no per-stage configuration. `gateway`
    defaults to $PUSHGATEWAY_URL; `mlflow=True` also logs the figures to the active MLflow run.
    `strict=True` makes a failed push or MLflow call raise (for tests and for jobs whose
    monitoring is part of their contract)."""

    def __init__(
        self,
        stage: str,
        *,
        pipeline: str,
        expected_every: timedelta | float | None = None,
        gateway: str | None = None,
        mlflow: bool = False,
        strict: bool = False,
    ) -> None:
        if not stage or not pipeline:
            raise ValueError("pipeline_stage needs a non-empty stage and pipeline name")
        self.stage = stage
        self.pipeline = pipeline
        self.expected_every = _seconds(expected_every)
        self.gateway = gateway
        self.mlflow = mlflow
        self.strict = strict
        self._reset()

    def _reset(self) -> None:
        self._started = 0.0
        self._rows_in: int | None = None
        self._rows_out: int | None = None
        self._checks: dict[str, tuple[bool, float | None]] = {}
        self._metrics: dict[str, float] = {}

    def rows_in(self, n: int) -> None:
        self._rows_in = int(n)

    def rows_out(self, n: int) -> None:
        self._rows_out = int(n)

    def check(self, name: str, passed: bool, value: float | None = None) -> None:
        """A data-quality check's result (the last one per name wins); `value` is the measured
        figure (a null ratio, a row count) for dashboards, not for the alert."""
        self._checks[name] = (bool(passed), None if value is None else float(value))

    def metric(self, name: str, value: float) -> None:
        """A training or evaluation figure of this run (accuracy, f1, log loss; the last one per
        name wins): each run is one step of the series, so a dashboard shows the last runs'
        figures side by side. Not a data-quality check: no alert reads it."""
        if not name:
            raise ValueError("a pipeline stage metric needs a non-empty name")
        self._metrics[name] = float(value)

    def __enter__(self) -> PipelineStage:
        self._reset()
        self._started = time.monotonic()  # the wall clock may jump; durations must not
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        # Any BaseException counts: a job stopped by Ctrl-C or SystemExit did not succeed.
        self._record(success=exc_type is None)
        return False  # never swallow the stage's exception

    def _record(self, success: bool) -> None:
        now = time.time()
        duration = time.monotonic() - self._started
        registry = self.registry(success, now, duration)
        grouping = {
            names.PIPELINE_LABEL_PIPELINE: self.pipeline,
            names.PIPELINE_LABEL_STAGE: self.stage,
        }
        _push(self.gateway, grouping, registry, self.strict)
        if self.mlflow:
            metrics, tags = self.mlflow_figures(success, duration)
            _log_mlflow(metrics, tags, self.strict)

    def registry(self, success: bool, now: float, duration: float) -> CollectorRegistry:
        """The figures of this run as they are pushed (the grouping key adds pipeline/stage)."""
        r = CollectorRegistry()
        _gauge(r, names.PIPELINE_STAGE_DURATION, "Duration of the stage's last run.", duration)
        _gauge(
            r, names.PIPELINE_STAGE_SUCCESS, "1 if the last run succeeded, 0 if it failed.", success
        )
        _gauge(r, names.PIPELINE_STAGE_LAST_RUN, "When the last run ended (Unix time).", now)
        if success:
            _gauge(r, names.PIPELINE_STAGE_LAST_SUCCESS, "When a run last succeeded.", now)
        else:
            _gauge(r, names.PIPELINE_STAGE_LAST_FAILURE, "When a run last failed.", now)
        if self.expected_every is not None:
            _gauge(
                r,
                names.PIPELINE_STAGE_EXPECTED_PERIOD,
                "The stage should succeed at least this often.",
                self.expected_every,
            )
        if self._rows_in is not None:
            _gauge(r, names.PIPELINE_STAGE_ROWS_IN, "Rows the last run read.", self._rows_in)
        if self._rows_out is not None:
            _gauge(r, names.PIPELINE_STAGE_ROWS_OUT, "Rows the last run wrote.", self._rows_out)
        if self._checks:
            passed = Gauge(
                names.PIPELINE_CHECK_PASSED,
                "1 if the data-quality check passed in the last run, 0 if it failed.",
                [names.PIPELINE_LABEL_CHECK],
                registry=r,
            )
            values = Gauge(
                names.PIPELINE_CHECK_VALUE,
                "The figure the data-quality check measured.",
                [names.PIPELINE_LABEL_CHECK],
                registry=r,
            )
            for check, (ok, value) in self._checks.items():
                passed.labels(check).set(ok)
                if value is not None:
                    values.labels(check).set(value)
        if self._metrics:
            metric = Gauge(
                names.PIPELINE_STAGE_METRIC,
                "A training or evaluation figure of the stage's last run.",
                [names.PIPELINE_LABEL_METRIC],
                registry=r,
            )
            for name, value in self._metrics.items():
                metric.labels(name).set(value)
        return r

    def mlflow_figures(
        self, success: bool, duration: float
    ) -> tuple[dict[str, float], dict[str, str]]:
        """Run metrics and tags under `pipeline.<stage>.`."""
        p = f"{names.PIPELINE_MLFLOW_PREFIX}{self.stage}."
        metrics: dict[str, float] = {f"{p}duration_seconds": duration}
        if self._rows_in is not None:
            metrics[f"{p}rows_in"] = self._rows_in
        if self._rows_out is not None:
            metrics[f"{p}rows_out"] = self._rows_out
        for check, (ok, value) in self._checks.items():
            metrics[f"{p}check.{check}"] = float(ok)
            if value is not None:
                metrics[f"{p}check.{check}.value"] = value
        for name, value in self._metrics.items():
            metrics[f"{p}metric.{name}"] = value
        tags = {f"{p}outcome": "success" if success else "failure", f"{p}pipeline": self.pipeline}
        return metrics, tags


# The public name: `with pipeline_stage(...)` reads as what it does; the class is the object.
pipeline_stage = PipelineStage


def record_retraining_trigger(
    pipeline: str,
    reason: str,
    *,
    gateway: str | None = None,
    mlflow: bool = False,
    strict: bool = False,
) -> None:
    """Records that `reason` (drift, schedule, new data...) triggered a retraining.

    Pushed as the time of the trigger to its own group (job, pipeline, reason): a counter would
    start from 0 in every short-lived process and the Pushgateway does not add pushes up, so
    each reason keeps its last trigger time and `changes(...[1d])` counts triggers."""
    if not pipeline or not reason:
        raise ValueError("record_retraining_trigger needs a non-empty pipeline and reason")
    now = time.time()
    r = CollectorRegistry()
    _gauge(
        r, names.PIPELINE_RETRAINING_TRIGGER, "When this reason last triggered a retraining.", now
    )
    grouping = {names.PIPELINE_LABEL_PIPELINE: pipeline, names.PIPELINE_LABEL_REASON: reason}
    _push(gateway, grouping, r, strict)
    if mlflow:
        p = f"{names.PIPELINE_MLFLOW_PREFIX}retraining_trigger."
        metrics: dict[str, Any] = {f"{p}timestamp_seconds": now}
        _log_mlflow(metrics, {f"{p}reason": reason, f"{p}pipeline": pipeline}, strict)
