"""The serving runtime's Prometheus metrics, every series labelled with model name and version.

Request metrics use prometheus_client's own types with the label children bound once (a
`.labels()` call per request would cost more than the observation). Per-row observations
(confidence, regression outputs, rows per feature bin) are counted a whole batch at a time with
numpy and exported by a collector when Prometheus scrapes.

Model quality is exported as counts that add up across pods and windows (labelled outcomes by
true and predicted class, rows per baseline bin) and never as per-pod ratios: an average of two
pods' accuracies is not the deployment's accuracy. The operator's recording rules divide
(render/quality_rules.py). Series whose first rows matter are created at zero when the process
starts (every feature bin; every class pair when the classes are known and few), because
`increase()` cannot count what came before a series' first scrape.
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
from modeldeploy.serving.drift import FeatureCounts
from modeldeploy.serving.feedback import OTHER_LABEL, PendingPredictions, class_key

MODEL_LABELS = (names.PROM_MODEL_NAME, names.PROM_MODEL_VERSION)
CONFIDENCE_BUCKETS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
DEFAULT_VALUE_BUCKETS = tuple(
    sorted({s * 10.0**e for e in range(-2, 5) for s in (-1, 1)} | {0.0})
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
MAX_CLASSES = 100
OTHER_CLASS = OTHER_LABEL
# Known classes up to this many get every (true, predicted) outcome series at start: n² series.
PRECREATE_CLASSES = 20


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

    def observe_all(self, parts: Sequence[npt.NDArray[np.float64]]) -> None:
        """`observe` of each part in turn, with one bincount for all of them; the sum still
        adds each part's own sum in order, so it rounds exactly as those calls would."""
        v = np.concatenate(parts)
        v = v[~np.isnan(v)]
        if not len(v):
            return
        self.counts += np.bincount(
            np.searchsorted(self.edges, v, side="left"), minlength=len(self.counts)
        )
        if len(v) == sum(len(part) for part in parts):  # no NaN: each part's sum as it is
            for part in parts:
                self.total += float(part.sum())
            return
        for part in parts:
            kept = part[~np.isnan(part)]
            if len(kept):
                self.total += float(kept.sum())

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
    """What the collector reads at scrape time: the feature-bin counts and pending predictions."""

    drift: FeatureCounts | None = None
    pending: PendingPredictions | None = None


class ClassNames:
    """Class label values, at most MAX_CLASSES of them (the first seen), then OTHER_CLASS: the
    same spelling for predicted and true classes, so that their series join."""

    def __init__(self, limit: int = MAX_CLASSES) -> None:
        self.limit = limit
        self.named: dict[str, None] = {}

    def __call__(self, value: Any) -> str:
        key = class_key(value)
        if key in self.named:
            return key
        if len(self.named) < self.limit:
            self.named[key] = None
            return key
        return OTHER_CLASS


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
        classes: Sequence[Any] = (),
        target_shares: Sequence[tuple[str, float]] = (),
    ) -> None:
        """`classes`: the classifier's classes when known (their series start at zero);
        `target_shares`: (class, share) of the training labels, exported for drift queries."""
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        lv = (model_name, model_version)
        self.label_values = lv
        self.class_names = ClassNames()
        self.target_shares = tuple(target_shares)
        reg = self.registry
        self.latency = Histogram(
            names.PREDICTION_LATENCY,
            "Seconds a prediction took on /invocations, from the parsed input to the written "
            "answer (upload, parsing and client errors excluded).",
            MODEL_LABELS,
            registry=reg,
            buckets=latency_buckets,
        ).labels(*lv)
        self.batch_size = Histogram(
            names.PREDICTION_BATCH_SIZE,
            "Requests answered by one call to the model on the fast path (1: alone; more: "
            "adaptive batching gathered concurrent requests).",
            MODEL_LABELS,
            registry=reg,
            buckets=BATCH_BUCKETS,
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
            (*MODEL_LABELS, names.LABEL_RUN_ID),
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
            names.FEEDBACK_TOTAL,
            "Feedback items by outcome: accepted, unknown_or_expired, length_mismatch, "
            "invalid_label.",
            (*MODEL_LABELS, names.LABEL_OUTCOME),
            registry=reg,
        )
        self._feedback_rows = Counter(
            names.FEEDBACK_ROWS,
            "Labelled rows accepted through /feedback.",
            MODEL_LABELS,
            registry=reg,
        ).labels(*lv)
        self._outcomes = Counter(
            names.FEEDBACK_OUTCOMES,
            "Labelled rows of a classifier by true and predicted class (correct: whether they "
            "are the same class).",
            (*MODEL_LABELS, names.LABEL_TRUE_CLASS, names.LABEL_PREDICTED_CLASS,
             names.LABEL_CORRECT),
            registry=reg,
        )  # fmt: skip
        self._abs_error = Counter(
            names.FEEDBACK_ABS_ERROR,
            "Sum of |prediction - label| over the labelled rows of a regressor.",
            MODEL_LABELS,
            registry=reg,
        ).labels(*lv)
        self._squared_error = Counter(
            names.FEEDBACK_SQUARED_ERROR,
            "Sum of (prediction - label)² over the labelled rows of a regressor.",
            MODEL_LABELS,
            registry=reg,
        ).labels(*lv)
        self._refused = Counter(
            names.HTTP_REFUSED,
            "Requests refused outside /invocations, by route (or 'other') and status code.",
            (*MODEL_LABELS, names.LABEL_PATH, names.LABEL_CODE),
            registry=reg,
        )
        self._code_children: dict[int, Any] = {}
        self._error_children: dict[str, Any] = {}
        self._class_children: dict[str, Any] = {}
        self._feedback_children: dict[str, Any] = {}
        self._outcome_children: dict[tuple[str, str, bool], Any] = {}
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
        self.feedback_labels = BatchHistogram(
            names.FEEDBACK_LABEL_VALUE,
            "True values sent through /feedback for a regressor, per row (target drift).",
            value_buckets or DEFAULT_VALUE_BUCKETS,
        )
        known = [self.class_names(v) for v in classes[:PRECREATE_CLASSES]]
        if len(classes) <= PRECREATE_CLASSES:
            for t in known:
                self._class_child(t)
                for p in known:
                    self._outcome_child(t, p, t == p)
        # The answers every version gives, at 0 from the start: a counter born at its first
        # increment is invisible to increase(), which would miss a new pod's first errors (the
        # canary analysis and the error-rate alert both read these over short windows).
        for code in (200, 500):
            self._code_children[code] = self._requests.labels(*self.label_values, str(code))
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

    def _class_child(self, name: str) -> Any:
        child = self._class_children.get(name)
        if child is None:
            child = self._classes.labels(*self.label_values, name)
            self._class_children[name] = child
        return child

    def _outcome_child(self, true: str, predicted: str, correct: bool) -> Any:
        key = (true, predicted, correct)
        child = self._outcome_children.get(key)
        if child is None:
            word = "true" if correct else "false"
            child = self._outcomes.labels(*self.label_values, true, predicted, word)
            self._outcome_children[key] = child
        return child

    def classes(self, predictions: npt.NDArray[Any]) -> None:
        uniq, counts = np.unique(predictions, return_counts=True)
        for value, n in zip(uniq.tolist(), counts.tolist(), strict=True):
            self._class_child(self.class_names(value)).inc(n)

    def classes_all(self, parts: Sequence[npt.NDArray[Any]]) -> None:
        """`classes` of each part in turn, counted in one pass. Which classes get a name of
        their own (the first MAX_CLASSES seen) depends on the order only when the new ones
        would pass that limit: then part by part, as before."""
        uniq, counts = np.unique(np.concatenate(parts), return_counts=True)
        names = self.class_names
        if len(names.named) + len(uniq) > names.limit:
            for part in parts:
                self.classes(part)
            return
        for value, n in zip(uniq.tolist(), counts.tolist(), strict=True):
            self._class_child(names(value)).inc(n)

    def outcomes(self, labels: Sequence[Any], predictions: Any, task: str) -> None:
        """Labelled rows from /feedback (already validated for the task)."""
        self._feedback_rows.inc(len(labels))
        if task == "classification":
            # `correct` compares the classes themselves: past MAX_CLASSES two different classes
            # share the name OTHER_CLASS, and a row with both there is not a hit.
            pairs: dict[tuple[str, str, bool], int] = {}
            for t, p in zip(labels, predictions, strict=True):
                key = (self.class_names(t), self.class_names(p), class_key(t) == class_key(p))
                pairs[key] = pairs.get(key, 0) + 1
            for (t, p, hit), n in pairs.items():
                self._outcome_child(t, p, hit).inc(n)
            return
        truth = np.asarray(labels, dtype=float)
        errors = np.asarray(predictions, dtype=float) - truth
        self._abs_error.inc(float(np.abs(errors).sum()))
        self._squared_error.inc(float((errors * errors).sum()))
        self.feedback_labels.observe(truth)

    def feedback(self, outcome: str, n: int = 1) -> None:
        child = self._feedback_children.get(outcome)
        if child is None:
            child = self._feedback.labels(*self.label_values, outcome)
            self._feedback_children[outcome] = child
        child.inc(n)


class _WindowCollector(Collector):
    """Batch-counted values, read at scrape time."""

    def __init__(self, metrics: ServingMetrics, windows: Windows) -> None:
        self.m = metrics
        self.w = windows

    def collect(self) -> Iterable[Metric]:
        lv = list(self.m.label_values)
        labels = list(MODEL_LABELS)
        yield self.m.confidence.family(labels, lv)
        yield self.m.values.family(labels, lv)
        yield self.m.feedback_labels.family(labels, lv)
        if self.m.target_shares:
            target = GaugeMetricFamily(
                names.TARGET_BASELINE_SHARE,
                "Share of each class among the training labels (drift baseline).",
                labels=[*labels, names.LABEL_CLASS],
            )
            for cls, share in self.m.target_shares:
                target.add_metric([*lv, cls], share)
            yield target
        if self.w.drift is not None:
            yield from self._drift(labels, lv, self.w.drift)
        pending = self.w.pending
        if pending is not None:
            yield _gauge(names.FEEDBACK_PENDING, "Predictions waiting for feedback.", labels, lv,
                         len(pending))  # fmt: skip
            evicted = CounterMetricFamily(
                names.FEEDBACK_EVICTED,
                "Predictions forgotten before feedback came, by reason (memory, ttl).",
                labels=[*labels, names.LABEL_REASON],
            )
            evicted.add_metric([*lv, "memory"], pending.evicted)
            evicted.add_metric([*lv, "ttl"], pending.expired)
            yield evicted

    def _drift(self, labels: list[str], lv: list[str], counts: FeatureCounts) -> Iterable[Metric]:
        by = [*labels, names.LABEL_FEATURE, names.LABEL_BIN]
        rows = CounterMetricFamily(
            names.FEATURE_BIN_ROWS,
            "Rows per feature per bin of the training baseline (__missing__: null, NaN or "
            "absent; __present__: any value of a feature without a baseline).",
            labels=by,
        )
        for feature, label, n in counts.series():
            rows.add_metric([*lv, feature, label], n)
        yield rows
        shares = GaugeMetricFamily(
            names.FEATURE_BASELINE_SHARE,
            "Share of the training rows in each bin of a feature (non-missing rows).",
            labels=by,
        )
        for feature, label, share in counts.baseline_shares():
            shares.add_metric([*lv, feature, label], share)
        yield shares


def _gauge(name: str, doc: str, labels: list[str], lv: list[str], value: float) -> Metric:
    g = GaugeMetricFamily(name, doc, labels=labels)
    g.add_metric(lv, value if math.isfinite(value) else math.nan)
    return g


def as_floats(values: Any) -> npt.NDArray[np.float64] | None:
    try:
        return np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError):
        return None
