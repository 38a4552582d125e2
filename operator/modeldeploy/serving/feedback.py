"""Ground truth after the fact: pending predictions by request id until their labels come.

A prediction is remembered (bounded by rows and by age) until its true labels arrive through
/feedback; the (true, predicted) pairs then become counters (serving/metrics.py), from which
Prometheus computes accuracy, precision, recall, F1 or MAE/RMSE and the label distribution over
any window and any set of pods. Memory is bounded twice: a pending prediction older than `ttl`
is forgotten, and when the rows held exceed `max_rows` the oldest requests are evicted (counted).
Not thread-safe: the server uses it from its event loop only.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Literal

from modeldeploy import names

Task = Literal["classification", "regression"]
# A label is a class name or a number: longer spellings are refused, so that the `true_class`
# label of the outcome counter stays small (100 labels of 50 KB once made /metrics 5 MB).
MAX_LABEL_CHARS: Final = 128
OTHER_LABEL: Final = names.BIN_OTHER


class Refusal(StrEnum):
    """Outcomes of /feedback other than `accepted`: the `outcome` label, a closed set."""

    UNKNOWN = "unknown_or_expired"  # never seen, already answered, expired or evicted
    LENGTH = "length_mismatch"  # label count differs from the rows predicted
    INVALID = "invalid_label"  # a label of the wrong kind (e.g. text for a regressor) or too long
    INVALID_JSON = "invalid_json"
    INVALID_BODY = "invalid_body"
    DISABLED = "disabled"
    MEDIA_TYPE = names.ERR_MEDIA_TYPE
    TOO_LARGE = names.ERR_TOO_LARGE
    TIMEOUT = names.ERR_REQUEST_TIMEOUT


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


def classification_stats(pairs: Sequence[tuple[str, str]]) -> ClassificationStats | None:
    """Accuracy and macro precision/recall/F1 of (true, predicted) class keys, computed the way
    the operator's recording rules compute them from prediction_feedback_outcomes_total; tests
    use it as the reference those rules must match."""
    if not pairs:
        return None
    n = len(pairs)
    tp: dict[str, int] = {}
    true_n: dict[str, int] = {}
    pred_n: dict[str, int] = {}
    for t, p in pairs:
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
    return ClassificationStats(
        n=n,
        accuracy=sum(tp.values()) / n,
        precision=sum(precisions) / len(classes),
        recall=sum(recalls) / len(classes),
        f1=sum(f1s) / len(classes),
    )


def invalid_labels(task: Task, labels: Sequence[Any]) -> bool:
    """Whether a label is of the wrong kind for the task (or too long to be a class name)."""
    for v in labels:
        if task == "regression":
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                return True
        elif not isinstance(v, str | int | float | bool) or len(class_key(v)) > MAX_LABEL_CHARS:
            return True
    return False
