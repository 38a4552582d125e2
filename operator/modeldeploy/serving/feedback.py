"""Ground truth after the fact: pending predictions by request id, and a window of outcomes.

A prediction is remembered (bounded by rows and by age) until its true labels arrive through
/feedback; the pair then enters a sliding window from which accuracy, precision, recall, F1
(classifiers) or MAE/RMSE (regressors) and the label distribution (target drift) are computed
when Prometheus scrapes. Memory is bounded twice: a pending prediction older than `ttl` is
forgotten, and when the rows held exceed `max_rows` the oldest requests are evicted (counted).
Not thread-safe: the server uses it from its event loop only.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Literal

from modeldeploy.serving import constants as c

Task = Literal["classification", "regression"]
# A label is a class name or a number: longer spellings are refused, so that the `class` label
# of feedback_label_ratio stays small (100 labels of 50 KB once made /metrics 5 MB).
MAX_LABEL_CHARS: Final = 128
OTHER_LABEL: Final = "__other__"


class Refusal(StrEnum):
    """Outcomes of /feedback other than `accepted`: the `outcome` label, a closed set."""

    UNKNOWN = "unknown_or_expired"  # never seen, already answered, expired or evicted
    LENGTH = "length_mismatch"  # label count differs from the rows predicted
    INVALID = "invalid_label"  # a label of the wrong kind (e.g. text for a regressor) or too long
    INVALID_JSON = "invalid_json"
    INVALID_BODY = "invalid_body"
    DISABLED = "disabled"
    MEDIA_TYPE = c.ERR_MEDIA_TYPE
    TOO_LARGE = c.ERR_TOO_LARGE
    TIMEOUT = c.ERR_REQUEST_TIMEOUT


@dataclass
class _Pending:
    at: float
    predictions: Any


class PendingPredictions:
    def __init__(self, max_rows: int = 100_000, ttl: float = 3600.0) -> None:
        self.max_rows = max_rows
        self.ttl = ttl
        self._items: OrderedDict[str, _Pending] = OrderedDict()
        self.rows = 0
        self.evicted = 0  # requests dropped for memory before their feedback came
        self.expired = 0  # requests dropped for age

    def __len__(self) -> int:
        return len(self._items)

    def put(self, request_id: str, predictions: Any, now: float) -> None:
        if len(predictions) > self.max_rows:
            self.evicted += 1
            return
        old = self._items.pop(request_id, None)
        if old is not None:
            self.rows -= len(old.predictions)
        self._items[request_id] = _Pending(now, predictions)
        self.rows += len(predictions)
        self._expire(now)
        while self.rows > self.max_rows:
            _, dropped = self._items.popitem(last=False)
            self.rows -= len(dropped.predictions)
            self.evicted += 1

    def peek(self, request_id: str, now: float) -> Any:
        self._expire(now)
        item = self._items.get(request_id)
        return None if item is None else item.predictions

    def take(self, request_id: str, now: float) -> Any:
        """The predictions of a request, once: a second take of the same id finds nothing."""
        self._expire(now)
        item = self._items.pop(request_id, None)
        if item is None:
            return None
        self.rows -= len(item.predictions)
        return item.predictions

    def _expire(self, now: float) -> None:
        # Insertion order is time order, so expired entries sit at the front.
        while self._items:
            first = next(iter(self._items.values()))
            if now - first.at <= self.ttl:
                break
            _, dropped = self._items.popitem(last=False)
            self.rows -= len(dropped.predictions)
            self.expired += 1


def class_key(value: Any) -> str:
    """One spelling per class, whether it came from numpy (np.int64(1)) or JSON (1, 1.0, "1")."""
    if isinstance(value, bool):
        return str(value).lower()
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class ClassificationStats:
    n: int
    accuracy: float
    precision: float  # macro average over the classes seen in labels or predictions
    recall: float
    f1: float
    label_ratio: dict[str, float]


@dataclass(frozen=True)
class RegressionStats:
    n: int
    mae: float
    rmse: float
    label_mean: float


class OutcomeWindow:
    """The last `size` (true, predicted) pairs of one task.

    The label distribution names at most `max_classes` true labels, the first ones seen (kept
    for the process's life, so the exported series do not churn); the rest share OTHER_LABEL.
    """

    def __init__(self, task: Task, size: int = 1000, max_classes: int = 100) -> None:
        self.task = task
        self.max_classes = max_classes
        self._pairs: deque[tuple[Any, Any]] = deque(maxlen=size)
        self._named: set[str] = set()

    def __len__(self) -> int:
        return len(self._pairs)

    def validate(self, labels: Sequence[Any]) -> Refusal | None:
        for v in labels:
            if self.task == "regression":
                if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                    return Refusal.INVALID
            elif not isinstance(v, str | int | float | bool) or len(class_key(v)) > MAX_LABEL_CHARS:
                return Refusal.INVALID
        return None

    def add(self, labels: Sequence[Any], predictions: Any) -> None:
        if self.task == "classification":
            pairs = [(class_key(t), class_key(p)) for t, p in zip(labels, predictions, strict=True)]
            for t, _ in pairs:
                if len(self._named) < self.max_classes:
                    self._named.add(t)
            self._pairs.extend(pairs)
        else:
            self._pairs.extend(
                (float(t), float(p)) for t, p in zip(labels, predictions, strict=True)
            )

    def classification(self) -> ClassificationStats | None:
        if self.task != "classification" or not self._pairs:
            return None
        n = len(self._pairs)
        tp: dict[str, int] = {}
        true_n: dict[str, int] = {}
        pred_n: dict[str, int] = {}
        for t, p in self._pairs:
            true_n[t] = true_n.get(t, 0) + 1
            pred_n[p] = pred_n.get(p, 0) + 1
            if t == p:
                tp[t] = tp.get(t, 0) + 1
        classes = set(true_n) | set(pred_n)
        precisions, recalls, f1s = [], [], []
        for cls in classes:
            hit = tp.get(cls, 0)
            prec = hit / pred_n[cls] if pred_n.get(cls) else 0.0
            rec = hit / true_n[cls] if true_n.get(cls) else 0.0
            precisions.append(prec)
            recalls.append(rec)
            f1s.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
        ratio: dict[str, float] = {}
        for key, k in true_n.items():
            name = key if key in self._named else OTHER_LABEL
            ratio[name] = ratio.get(name, 0.0) + k / n
        return ClassificationStats(
            n=n,
            accuracy=sum(tp.values()) / n,
            precision=sum(precisions) / len(classes),
            recall=sum(recalls) / len(classes),
            f1=sum(f1s) / len(classes),
            label_ratio=ratio,
        )

    def regression(self) -> RegressionStats | None:
        if self.task != "regression" or not self._pairs:
            return None
        n = len(self._pairs)
        errs = [p - t for t, p in self._pairs]
        return RegressionStats(
            n=n,
            mae=sum(abs(e) for e in errs) / n,
            rmse=math.sqrt(sum(e * e for e in errs) / n),
            label_mean=sum(t for t, _ in self._pairs) / n,
        )
