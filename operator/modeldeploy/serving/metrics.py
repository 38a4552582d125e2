"""The serving runtime's Prometheus metrics, every series labelled with model name and version.

Request metrics use prometheus_client's own types with the label children bound once (a
`.labels()` call per request would cost more than the observation). Per-row observations
(confidence, regression outputs) use `BatchHistogram`, which counts a whole batch with one numpy
pass; window-derived values (PSI, missing ratios, feedback quality) are computed by a collector
only when Prometheus scrapes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from modeldeploy import names
from modeldeploy.serving import constants as c
from modeldeploy.serving.drift import FeatureWindow
from modeldeploy.serving.feedback import OTHER_LABEL, OutcomeWindow, PendingPredictions, class_key

MODEL_LABELS = (names.PROM_MODEL_NAME, names.PROM_MODEL_VERSION)
CONFIDENCE_BUCKETS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
DEFAULT_VALUE_BUCKETS = tuple(
    sorted({s * 10.0**e for e in range(-2, 5) for s in (-1, 1)} | {0.0})
)  # fmt: skip
MAX_CLASSES = 100
OTHER_CLASS = OTHER_LABEL


class BatchHistogram:
    """A histogram fed a batch at a time (one searchsorted + bincount per batch)."""

    def __init__(self, name: str, doc: str, buckets: Sequence[float]) -> None:
        self.name = name
        self.doc = doc
        self.edges = np.asarray(sorted(buckets), dtype=float)
        self.counts = np.zeros(len(self.edges) + 1, dtype=np.int64)  # last: above all edges
        self.total = 0.0

    def observe(self, values: npt.NDArray[np.float64]) -> None:
        v = values[~np.isnan(values)]
        if not len(v):
            return
        # Prometheus buckets are upper-inclusive: le=edge counts values <= edge.
        self.counts += np.bincount(
            np.searchsorted(self.edges, v, side="left"), minlength=len(self.counts)
        )
        self.total += float(v.sum())

    def family(self, labels: Sequence[str], values: Sequence[str]) -> HistogramMetricFamily:
        cum = np.cumsum(self.counts)
        buckets = [(_fmt(e), float(n)) for e, n in zip(self.edges, cum[:-1], strict=True)]
        buckets.append(("+Inf", float(cum[-1])))
        fam = HistogramMetricFamily(self.name, self.doc, labels=list(labels))
        fam.add_metric(list(values), buckets, self.total)
        return fam


def _fmt(v: float) -> str:
    return repr(float(v))


@dataclass
class Windows:
    """What the collector reads at scrape time; `outcomes` appears once the task is known."""

    drift: FeatureWindow | None = None
    pending: PendingPredictions | None = None
    outcomes: OutcomeWindow | None = None


class ServingMetrics:
    def __init__(
        self,
        model_name: str,
        model_version: str,
        run_id: str,
        load_seconds: float,
        windows: Windows,
        latency_buckets: Sequence[float],
        value_buckets: Sequence[float],
    ) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        lv = (model_name, model_version)
        self.label_values = lv
        reg = self.registry
        self.latency = Histogram(
            names.PREDICTION_LATENCY,
            "Seconds a prediction took on /invocations, from the parsed input to the written "
            "answer (upload, parsing and client errors excluded).",
            MODEL_LABELS,
            registry=reg,
            buckets=latency_buckets,
        ).labels(*lv)
        self._requests = Counter(
            names.PREDICTION_REQUESTS,
            "/invocations requests by HTTP status code.",
            (*MODEL_LABELS, names.LABEL_CODE),
            registry=reg,
        )
        self._errors = Counter(
            names.PREDICTION_ERRORS,
            "/invocations failures by type; client: bad_input, payload_too_large, "
            "unsupported_media_type, method_not_allowed, request_timeout, client_disconnected; "
            "server: model_error, timeout, internal_error.",
            (*MODEL_LABELS, names.LABEL_ERROR_TYPE),
            registry=reg,
        )
        self.in_flight = Gauge(
            names.PREDICTIONS_IN_FLIGHT,
            "/invocations requests being served now.",
            MODEL_LABELS,
            registry=reg,
        ).labels(*lv)
        Gauge(
            names.MODEL_VERSION_INFO,
            "The model version this process serves (always 1).",
            (*MODEL_LABELS, c.LABEL_RUN_ID),
            registry=reg,
        ).labels(*lv, run_id).set(1)
        Gauge(
            names.MODEL_LOAD_SECONDS,
            "Seconds spent downloading and loading the model at start.",
            MODEL_LABELS,
            registry=reg,
        ).labels(*lv).set(load_seconds)
        self._classes = Counter(
            names.PREDICTION_CLASS,
            f"Predicted rows per class (at most {MAX_CLASSES} classes, then {OTHER_CLASS}).",
            (*MODEL_LABELS, names.LABEL_CLASS),
            registry=reg,
        )
        self._feedback = Counter(
            c.FEEDBACK_TOTAL,
            "Feedback items by outcome: accepted, unknown_or_expired, length_mismatch, "
            "invalid_label.",
            (*MODEL_LABELS, c.LABEL_OUTCOME),
            registry=reg,
        )
        self._refused = Counter(
            c.HTTP_REFUSED,
            "Requests refused outside /invocations, by route (or 'other') and status code.",
            (*MODEL_LABELS, c.LABEL_PATH, names.LABEL_CODE),
            registry=reg,
        )
        self._code_children: dict[int, Any] = {}
        self._error_children: dict[str, Any] = {}
        self._class_children: dict[str, Any] = {}
        self._feedback_children: dict[str, Any] = {}
        self.confidence = BatchHistogram(
            names.PREDICTION_CONFIDENCE,
            "Top class probability per predicted row (classifiers with predict_proba).",
            CONFIDENCE_BUCKETS,
        )
        self.values = BatchHistogram(
            names.PREDICTION_VALUE,
            "Predicted values of regression models, per row.",
            value_buckets or DEFAULT_VALUE_BUCKETS,
        )
        reg.register(_WindowCollector(self, windows))

    def request(self, code: int, seconds: float | None, error_type: str | None) -> None:
        """One /invocations answer; `seconds` is None when no prediction ran (client errors,
        abandoned requests), which the latency histogram must not see."""
        child = self._code_children.get(code)
        if child is None:
            child = self._code_children[code] = self._requests.labels(*self.label_values, str(code))
        child.inc()
        if seconds is not None:
            self.latency.observe(seconds)
        if error_type:
            err = self._error_children.get(error_type)
            if err is None:
                err = self._requests_error(error_type)
            err.inc()

    def _requests_error(self, error_type: str) -> Any:
        child = self._errors.labels(*self.label_values, error_type)
        self._error_children[error_type] = child
        return child

    def refused(self, path: str, code: int) -> None:
        """`path` must be one of the server's routes or OTHER_PATH: never the client's string."""
        self._refused.labels(*self.label_values, path, str(code)).inc()

    def classes(self, predictions: npt.NDArray[Any]) -> None:
        uniq, counts = np.unique(predictions, return_counts=True)
        for value, n in zip(uniq.tolist(), counts.tolist(), strict=True):
            key = class_key(value)
            child = self._class_children.get(key)
            if child is None:
                if len(self._class_children) >= MAX_CLASSES:
                    key = OTHER_CLASS
                child = self._class_children.get(key) or self._classes.labels(
                    *self.label_values, key
                )
                self._class_children[key] = child
            child.inc(n)

    def feedback(self, outcome: str, n: int = 1) -> None:
        child = self._feedback_children.get(outcome)
        if child is None:
            child = self._feedback.labels(*self.label_values, outcome)
            self._feedback_children[outcome] = child
        child.inc(n)


class _WindowCollector(Collector):
    """Values derived from the windows, computed at scrape time."""

    def __init__(self, metrics: ServingMetrics, windows: Windows) -> None:
        self.m = metrics
        self.w = windows

    def collect(self) -> Iterable[Metric]:
        lv = list(self.m.label_values)
        labels = list(MODEL_LABELS)
        yield self.m.confidence.family(labels, lv)
        yield self.m.values.family(labels, lv)
        if self.w.drift is not None:
            yield from self._drift(labels, lv, self.w.drift)
        pending = self.w.pending
        if pending is not None:
            yield _gauge(c.FEEDBACK_PENDING, "Predictions waiting for feedback.", labels, lv,
                         len(pending))  # fmt: skip
            evicted = CounterMetricFamily(
                c.FEEDBACK_EVICTED,
                "Predictions forgotten before feedback came, by reason (memory, ttl).",
                labels=[*labels, c.LABEL_REASON],
            )
            evicted.add_metric([*lv, "memory"], pending.evicted)
            evicted.add_metric([*lv, "ttl"], pending.expired)
            yield evicted
        if self.w.outcomes is not None:
            yield from self._quality(labels, lv, self.w.outcomes)

    def _drift(self, labels: list[str], lv: list[str], window: FeatureWindow) -> Iterable[Metric]:
        snaps = window.snapshot()
        yield _gauge(c.DRIFT_WINDOW_ROWS, "Rows in the drift window.", labels, lv, len(window))
        psi = GaugeMetricFamily(
            names.FEATURE_DRIFT_PSI,
            "Population stability index of a feature over the window vs the training baseline.",
            labels=[*labels, names.LABEL_FEATURE],
        )
        missing = GaugeMetricFamily(
            names.FEATURE_MISSING_RATIO,
            "Share of rows in the window where the feature is missing (null/NaN or absent).",
            labels=[*labels, names.LABEL_FEATURE],
        )
        for s in snaps:
            if len(window):
                missing.add_metric([*lv, s.name], s.missing_ratio)
            if s.psi is not None:
                psi.add_metric([*lv, s.name], s.psi)
        yield psi
        yield missing

    def _quality(self, labels: list[str], lv: list[str], w: OutcomeWindow) -> Iterable[Metric]:
        yield _gauge(c.FEEDBACK_WINDOW_ROWS, "Labelled rows in the quality window.", labels, lv,
                     len(w))  # fmt: skip
        cls = w.classification()
        if cls is not None:
            for name, doc, value in (
                (c.MODEL_ACCURACY, "Accuracy over the feedback window.", cls.accuracy),
                (c.MODEL_PRECISION, "Macro precision over the feedback window.", cls.precision),
                (c.MODEL_RECALL, "Macro recall over the feedback window.", cls.recall),
                (c.MODEL_F1, "Macro F1 over the feedback window.", cls.f1),
            ):
                yield _gauge(name, doc, labels, lv, value)
            ratio = GaugeMetricFamily(
                c.FEEDBACK_LABEL_RATIO,
                "Share of each true label in the feedback window (target drift).",
                labels=[*labels, names.LABEL_CLASS],
            )
            for key, value in cls.label_ratio.items():
                ratio.add_metric([*lv, key], value)
            yield ratio
        reg = w.regression()
        if reg is not None:
            yield _gauge(c.MODEL_MAE, "Mean absolute error over the feedback window.", labels,
                         lv, reg.mae)  # fmt: skip
            yield _gauge(c.MODEL_RMSE, "Root mean squared error over the feedback window.",
                         labels, lv, reg.rmse)  # fmt: skip
            yield _gauge(c.FEEDBACK_LABEL_MEAN, "Mean true value in the feedback window.",
                         labels, lv, reg.label_mean)  # fmt: skip


def _gauge(name: str, doc: str, labels: list[str], lv: list[str], value: float) -> Metric:
    g = GaugeMetricFamily(name, doc, labels=labels)
    g.add_metric(lv, value if math.isfinite(value) else math.nan)
    return g


def as_floats(values: Any) -> npt.NDArray[np.float64] | None:
    try:
        return np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError):
        return None
