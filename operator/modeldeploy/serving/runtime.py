"""The loaded model with its windows and metrics: scoring, observing, feedback.

`score` runs in a prediction thread and touches no shared state; `observe` and `feedback` run on
the event loop, which alone mutates the windows, so they need no locks.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from dataclasses import dataclass
from io import StringIO
from typing import Any

import numpy as np
import numpy.typing as npt

from modeldeploy.names import ERR_MODEL, REQUEST_ID_BODY_KEY
from modeldeploy.serving import fault, payload
from modeldeploy.serving.config import DEFAULT_LATENCY_BUCKETS, ServeConfig
from modeldeploy.serving.drift import FeatureCounts
from modeldeploy.serving.fastpath import FastPath, Features
from modeldeploy.serving.feedback import (
    MAX_LABEL_CHARS,
    PendingPredictions,
    Refusal,
    Task,
    class_key,
    invalid_labels,
)
from modeldeploy.serving.loader import LoadedModel
from modeldeploy.serving.metrics import ServingMetrics, Windows, as_floats

log = logging.getLogger("modeldeploy.serving")
MLFLOW_CONFIDENCE_SAMPLE = 0.1  # default share on MLflow's path: predict_proba costs a second call
MAX_REQUEST_ID = 128  # ids we hand out or accept on /invocations are at most this long


@dataclass
class Scored:
    status: int
    body: bytes
    error_type: str | None = None
    message: str | None = None
    rows: int = 0
    outputs: npt.NDArray[Any] | None = None  # one prediction per row, for metrics/feedback
    confidence: npt.NDArray[np.float64] | None = None
    frame: Any = None  # the input DataFrame, for drift
    features: Features | None = None  # the input matrix, when the fast path served it
    seconds: float | None = None  # the prediction's latency; None: the model never ran


@dataclass
class Pending:
    """A request the fast path has read, waiting for its prediction (alone or in a batch)."""

    features: Features
    request_id: str
    clock: Clock


@dataclass
class Clock:
    """Set by the prediction thread once the input is parsed, so that a 504 (the loop stops
    waiting) still knows how long the prediction itself has run."""

    started: float | None = None


def error_body(status: int, error_type: str, message: str, request_id: str | None) -> bytes:
    """MLflow's error shape ({"error_code", "message"}) plus our error_type and request id."""
    code = {400: "BAD_REQUEST", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED",
            408: "REQUEST_TIMEOUT", 413: "PAYLOAD_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE",
            500: "INTERNAL_ERROR", 503: "TEMPORARILY_UNAVAILABLE",
            504: "DEADLINE_EXCEEDED"}.get(status, "ERROR")  # fmt: skip
    out = {"error_code": code, "error_type": error_type, "message": message}
    if request_id:
        out[REQUEST_ID_BODY_KEY] = request_id
    return json.dumps(out).encode()


class Runtime:
    def __init__(self, config: ServeConfig, model: LoadedModel) -> None:
        self.config = config
        self.model = model
        self.schema = model.pyfunc.metadata.get_input_schema()
        self.task: Task | None = None
        if config.task != "auto":
            self.task = config.task
        elif model.classifier is not None:
            self.task = "classification"
        elif model.regressor:
            self.task = "regression"
        base = model.baseline
        self.windows = Windows(
            drift=FeatureCounts(model.input_columns, base) if config.drift else None,
            pending=PendingPredictions(config.feedback_max_rows, config.feedback_ttl)
            if config.feedback
            else None,
        )
        value_buckets = config.value_buckets
        target = base.target if base is not None else None
        if not value_buckets and self.task != "classification" and target is not None:
            value_buckets = target.edges  # the training target's quantiles
        info = model.info
        self.metrics = ServingMetrics(
            info.name,
            info.version,
            info.run_id,
            model.load_seconds,
            self.windows,
            DEFAULT_LATENCY_BUCKETS,
            value_buckets,
            classes=known_classes(model),
            target_shares=target_shares(model) if self.task != "regression" else (),
        )
        self._confidence = model.classifier if config.confidence else None
        self.fast = (
            FastPath.build(model.pyfunc, model.type_hint_signature) if config.fast_path else None
        )
        # Every k-th request (itertools.count is atomic under the GIL; threads may share it).
        # By default every request the fast path serves: its confidence costs little or nothing.
        sample = config.confidence_sample
        self._confidence_every = max(1, round(1.0 / (sample or MLFLOW_CONFIDENCE_SAMPLE)))
        self._confidence_every_fast = max(1, round(1.0 / (sample or 1.0)))
        self._requests = itertools.count()
        self._optional = frozenset(model.input_columns) - frozenset(model.required_columns)

    # -- prediction thread ------------------------------------------------------------------

    def score(
        self,
        body: bytes,
        content_type: str | None,
        request_id: str,
        clock: Clock | None = None,
        fast: bool = True,
    ) -> Scored:
        """Parse, check, predict. `clock.started` is set once the input is parsed: the latency
        histogram measures the prediction, not the upload or the parsing of the payload.
        `fast=False`: straight to MLflow's path (the fast path already declined)."""
        if fast and self.fast is not None:
            features = self.fast.read(body, content_type)
            if features is not None:
                pending = Pending(features, request_id, clock or Clock())
                pending.clock.started = time.perf_counter()
                answered = self.score_batch([pending])[0]
                if answered is not None:
                    return answered
        m = self.model
        try:
            parsed = payload.parse(body, content_type, self.schema, m.type_hint_signature)
            if not parsed.unwrapped:
                payload.check_columns(
                    parsed.data, m.input_columns, m.required_columns, self.config.strict_columns
                )
        except payload.BadRequest as exc:
            return _refused_input(exc, request_id)
        started = time.perf_counter()
        if clock is not None:
            clock.started = started
        try:
            raw = self._predict(parsed)
            scored = self._success(parsed, raw, request_id)
        except payload.BadRequest as exc:
            return _refused_input(exc, request_id)
        except ModelFailure as exc:
            scored = Scored(
                500, error_body(500, ERR_MODEL, str(exc), request_id), ERR_MODEL, str(exc)
            )
        scored.seconds = time.perf_counter() - started
        return scored

    def read_fast(self, body: bytes, content_type: str | None) -> Features | None:
        """The request as the model's matrix, or None when MLflow's path must read it."""
        return None if self.fast is None else self.fast.read(body, content_type)

    def score_batch(self, batch: list[Pending]) -> list[Scored | None]:
        """Fast-path answers, one per request, from one model call for the whole batch; None
        for a request whose prediction failed: MLflow's path then answers it (and decides whose
        fault it is) exactly as without the fast path. When the batched call fails, each
        request is retried alone, so one bad row cannot fail its neighbours."""
        fast = self.fast
        assert fast is not None
        wants = [self._want_confidence() for _ in batch]
        if len(batch) > 1:
            try:
                matrix = np.concatenate([p.features.matrix for p in batch])
                raw, confidence = self._predict_fast(matrix, any(wants))
                if not isinstance(raw, np.ndarray) or len(raw) != len(matrix):
                    raise ValueError("not one prediction per row")
                self.metrics.batch_size.observe(len(batch))
                cuts = np.cumsum([len(p.features.matrix) for p in batch])[:-1]
                raws = np.split(raw, cuts)
                tops = np.split(confidence, cuts) if confidence is not None else None
                return [
                    self._fast_answer(p, r, tops[i] if tops is not None and want else None)
                    for i, (p, r, want) in enumerate(zip(batch, raws, wants, strict=True))
                ]
            except Exception as exc:
                log.debug("batched prediction failed, each request alone: %s", exc)
        out: list[Scored | None] = []
        for p, want in zip(batch, wants, strict=True):
            try:
                raw, confidence = self._predict_fast(p.features.matrix, want)
            except Exception as exc:
                log.debug("fast path prediction failed, MLflow's path answers: %s", exc)
                out.append(None)
                continue
            self.metrics.batch_size.observe(1)
            out.append(self._fast_answer(p, raw, confidence))
        return out

    def _want_confidence(self) -> bool:
        return self._confidence is not None and (
            next(self._requests) % self._confidence_every_fast == 0
        )

    def _predict_fast(self, matrix: npt.NDArray[Any], want: bool) -> tuple[Any, Any]:
        """(predictions, top class probabilities or None); raises what the model raises."""
        fast = self.fast
        assert fast is not None
        if want and (fast.proba_is_predict or fast.decision_rule is not None):
            raw, proba = fast.predict_both(matrix)
            return raw, proba.max(axis=1).astype(float, copy=False)
        raw = fast.predict(matrix)
        return raw, _top(fast.predict_proba, matrix) if want else None

    def _fast_answer(self, p: Pending, raw: Any, confidence: Any) -> Scored | None:
        try:
            body = self._answer(raw, False, p.request_id)
        except Exception as exc:
            log.debug("fast path answer could not be written, MLflow's path answers: %s", exc)
            return None
        scored = Scored(
            200, body, outputs=_outputs(raw), confidence=confidence, features=p.features
        )
        scored.rows = len(p.features.matrix)
        if p.clock.started is not None:
            scored.seconds = time.perf_counter() - p.clock.started
        return scored

    def _predict(self, parsed: payload.Parsed) -> Any:
        try:
            if parsed.params:
                return self.model.pyfunc.predict(parsed.data, params=parsed.params)
            return self.model.pyfunc.predict(parsed.data)
        except Exception as exc:
            try:
                blame = self.input_fault(exc, parsed)
            except Exception:  # the checks failing must not hide the model's own error
                log.exception("could not check the input of a failed prediction")
                blame = None
            if blame is not None:
                raise payload.BadRequest(blame) from None
            raise ModelFailure(exc) from None

    def input_fault(self, exc: BaseException, parsed: payload.Parsed) -> str | None:
        """Why the client is to blame for `exc`, or None when the version is (see fault.py)."""
        if not fault.input_error_type(exc):
            return None
        m = self.model
        reason = fault.signature_rejects(m.pyfunc, parsed.data, parsed.params)
        if reason is not None:
            return reason  # MLflow's own message would echo the data
        if self.schema is None:
            reason = fault.feature_count_differs(parsed.data, m.n_features)
        if reason is None:
            reason = fault.nonfinite(parsed.data, self._optional, self.config.allow_non_finite)
        if reason is None:
            reason = fault.empty(parsed.data)
        if reason is None:
            return None
        return f"{reason} (the model raised {type(exc).__name__}: {_first_line(str(exc))})"

    def _answer(self, raw: Any, unwrapped: bool, request_id: str) -> bytes:
        """MLflow's own writer, so both paths answer the same bytes. A plain numeric or string
        array is written as MLflow writes it (`{"predictions": raw.tolist(), ...}`) but by
        json.dumps, whose C encoder gives the same bytes as the pure-Python one that
        `json.dump` (MLflow's call) runs, at a fraction of the cost."""
        if not unwrapped and isinstance(raw, np.ndarray) and raw.dtype.kind in "biufU":
            out_obj: dict[str, Any] = {"predictions": raw.tolist()}
            if self.config.request_id_in_body:
                out_obj[REQUEST_ID_BODY_KEY] = request_id
            return json.dumps(out_obj).encode()
        from mlflow.pyfunc.scoring_server import predictions_to_json, unwrapped_predictions_to_json

        out = StringIO()
        if unwrapped:
            unwrapped_predictions_to_json(raw, out)  # type: ignore[no-untyped-call]
        elif self.config.request_id_in_body:
            predictions_to_json(raw, out, {REQUEST_ID_BODY_KEY: request_id})  # type: ignore[no-untyped-call]
        else:
            predictions_to_json(raw, out)  # type: ignore[no-untyped-call]
        return out.getvalue().encode()

    def _success(self, parsed: payload.Parsed, raw: Any, request_id: str) -> Scored:
        try:
            body = self._answer(raw, parsed.unwrapped, request_id)
        except Exception as exc:  # an answer that cannot be written is the model's
            raise ModelFailure(exc) from None
        frame = parsed.data if _is_frame(parsed.data) else None
        outputs = _outputs(raw)
        scored = Scored(200, body, frame=frame, outputs=outputs)
        scored.rows = (
            len(frame) if frame is not None else len(outputs) if outputs is not None else 0
        )
        if (
            self._confidence is not None
            and frame is not None
            and next(self._requests) % self._confidence_every == 0
        ):
            scored.confidence = self._top_probability(frame)
        return scored

    def _top_probability(self, frame: Any) -> npt.NDArray[np.float64] | None:
        cols = list(self.model.input_columns)
        return _top(self._confidence.predict_proba, frame[cols] if cols else frame)  # type: ignore[union-attr]

    # -- event loop -------------------------------------------------------------------------

    def observe(self, scored: Scored, request_id: str) -> None:
        """Model-quality metrics of a successful prediction, after its response is sent."""
        outputs = scored.outputs
        if outputs is not None and len(outputs):
            if self.task is None:
                self._decide_task(outputs)
            if self.task == "classification":
                self.metrics.classes(outputs)
            elif self.task == "regression":
                values = as_floats(outputs)
                if values is not None:
                    self.metrics.values.observe(values)
            if self.windows.pending is not None:
                self.windows.pending.put(request_id, outputs, time.monotonic())
        if scored.confidence is not None:
            self.metrics.confidence.observe(scored.confidence)
        drift = self.windows.drift
        if drift is not None and scored.features is not None:
            try:
                drift.observe_matrix(scored.features.matrix, scored.features.columns)
            except Exception:  # drift must never fail a request that succeeded
                log.exception("drift observation failed")
        elif drift is not None and scored.frame is not None:
            try:
                drift.observe(scored.frame)
            except Exception:  # drift must never fail a request that succeeded
                log.exception("drift observation failed")

    def observe_many(self, answered: list[tuple[Scored, str]]) -> None:
        """`observe` for each (scored, request id), in order, with the same resulting counts: the
        rows of the fast path's answers are counted in one pass (one bincount for the classes,
        the confidence and the drift bins of all of them) instead of one per request."""
        fast = [s for s, _ in answered if s.features is not None and s.outputs is not None]
        if len(fast) < 2 or self.task is None:
            for scored, rid in answered:
                self.observe(scored, rid)
            return
        pending = self.windows.pending
        now = time.monotonic()
        for scored, rid in answered:  # in order: the feedback store evicts the oldest first
            if scored.features is None or scored.outputs is None:
                self.observe(scored, rid)
            elif pending is not None and len(scored.outputs):
                pending.put(rid, scored.outputs, now)
        outputs = [s.outputs for s in fast if s.outputs is not None and len(s.outputs)]
        if outputs and self.task == "classification":
            self.metrics.classes_all(outputs)
        elif outputs and self.task == "regression":
            values = [v for v in map(as_floats, outputs) if v is not None]
            if values:
                self.metrics.values.observe_all(values)
        tops = [s.confidence for s in fast if s.confidence is not None]
        if tops:
            self.metrics.confidence.observe_all(tops)
        drift = self.windows.drift
        if drift is None:
            return
        by_columns: dict[tuple[str, ...], list[npt.NDArray[Any]]] = {}
        for scored in fast:
            if scored.features is not None:
                by_columns.setdefault(scored.features.columns, []).append(scored.features.matrix)
        for columns, matrices in by_columns.items():
            try:
                drift.observe_matrix(np.concatenate(matrices), columns)
            except Exception:  # drift must never fail a request that succeeded
                log.exception("drift observation failed")

    def _decide_task(self, outputs: npt.NDArray[Any]) -> None:
        self.task = "regression" if outputs.dtype.kind in "fc" else "classification"
        log.info("task inferred from the first prediction", extra={"task": self.task})

    def feedback(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """POST /feedback: {"request_id", "labels"|"label"} or {"feedback": [those]}. Every
        refusal is counted in prediction_feedback_total by its reason."""
        try:
            obj = payload.load_json(body)
        except payload.BadRequest as exc:
            self.metrics.feedback(Refusal.INVALID_JSON)
            return 400, _refused("BAD_REQUEST", Refusal.INVALID_JSON, exc.message)
        batch = isinstance(obj, dict) and "feedback" in obj
        items = obj.get("feedback") if batch else [obj]
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            self.metrics.feedback(Refusal.INVALID_BODY)
            return 400, _refused(
                "BAD_REQUEST",
                Refusal.INVALID_BODY,
                'send {"request_id": ..., "labels": [...]} or {"feedback": [those]}',
            )
        results = [self._one_feedback(item) for item in items]
        if not batch:
            status, result = results[0]
            return status, result
        accepted = sum(1 for s, _ in results if s == 200)
        rejected = [r for s, r in results if s != 200]
        return 200, {"accepted": accepted, "rejected": rejected}

    def _one_feedback(self, item: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        rid = item.get("request_id")
        if "labels" in item:
            labels = item["labels"]
        elif "label" in item:
            labels = [item["label"]]
        else:
            labels = None
        if (
            not isinstance(rid, str)
            or len(rid) > MAX_REQUEST_ID
            or not isinstance(labels, list)
            or not labels
        ):
            self.metrics.feedback(Refusal.INVALID_BODY)
            return 400, _refused(
                "BAD_REQUEST", Refusal.INVALID_BODY,
                'each feedback needs "request_id" (a string of at most '
                f'{MAX_REQUEST_ID} characters) and "labels" (list) or "label"',
                rid if isinstance(rid, str) and len(rid) <= MAX_REQUEST_ID else None,
            )  # fmt: skip
        pending, task = self.windows.pending, self.task
        if pending is None:
            self.metrics.feedback(Refusal.DISABLED)
            return 404, _refused(
                "NOT_FOUND", Refusal.DISABLED, "feedback is disabled (MODELDEPLOY_FEEDBACK=false)",
                rid,
            )  # fmt: skip
        now = time.monotonic()
        predictions = pending.peek(rid, now)
        if predictions is None or task is None:
            self.metrics.feedback(Refusal.UNKNOWN)
            return 404, _refused(
                "NOT_FOUND", Refusal.UNKNOWN,
                f"no pending prediction for request id {rid!r}: never seen, already answered, "
                f"or older than the feedback TTL ({self.config.feedback_ttl:g}s) or memory "
                f"bound ({self.config.feedback_max_rows} rows)", rid,
            )  # fmt: skip
        if len(labels) != len(predictions):
            self.metrics.feedback(Refusal.LENGTH)
            return 400, _refused(
                "BAD_REQUEST", Refusal.LENGTH,
                f"request {rid!r} predicted {len(predictions)} rows, got {len(labels)} labels",
                rid,
            )  # fmt: skip
        if invalid_labels(task, labels):
            self.metrics.feedback(Refusal.INVALID)
            return 400, _refused(
                "BAD_REQUEST", Refusal.INVALID,
                f"labels for a {task} model must be "
                + ("finite numbers" if task == "regression"
                   else f"scalars of at most {MAX_LABEL_CHARS} characters"),
                rid,
            )  # fmt: skip
        pending.take(rid, now)
        self.metrics.outcomes(labels, predictions, task)
        self.metrics.feedback("accepted")
        return 200, {"request_id": rid, "accepted": True, "rows": len(labels)}


def _top(predict_proba: Any, data: Any) -> npt.NDArray[np.float64] | None:
    try:
        top: npt.NDArray[np.float64] = np.asarray(predict_proba(data), dtype=float).max(axis=1)
        return top
    except Exception as exc:  # confidence is a bonus; the prediction already succeeded
        log.debug("predict_proba failed: %s", exc)
        return None


class ModelFailure(Exception):
    def __init__(self, exc: BaseException) -> None:
        super().__init__(f"the model raised {type(exc).__name__}: {_first_line(str(exc))}"[:600])
        self.type_name = type(exc).__name__


def _refused_input(exc: payload.BadRequest, request_id: str) -> Scored:
    body = error_body(exc.status, exc.error_type, exc.message, request_id)
    return Scored(exc.status, body, exc.error_type, exc.message)


def _refused(code: str, reason: str, message: str, rid: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"error_code": code, "reason": str(reason), "message": message}
    if isinstance(rid, str):
        out["request_id"] = rid
    return out


def known_classes(model: LoadedModel) -> list[Any]:
    """The classifier's classes (scikit-learn's `classes_`), else the training labels of the
    drift baseline's categorical target; empty when neither says."""
    found = getattr(model.classifier, "classes_", None)
    if found is not None:
        return list(np.asarray(found).tolist())
    return [cls for cls, _ in target_shares(model)]


def target_shares(model: LoadedModel) -> list[tuple[str, float]]:
    """(class, share of the training labels) from a categorical target baseline; the share of
    categories beyond the baseline's list is left out (no class to name it)."""
    target = model.baseline.target if model.baseline is not None else None
    if target is None or target.kind != "categorical":
        return []
    return [
        (_class_spelling(c), float(p))
        for c, p in zip(target.categories, target.proportions, strict=False)
    ]


def _class_spelling(category: str) -> str:
    """A baseline category as the `class` label the server gives the same class: baselines store
    str(value), so the float label 1.0 is "1.0" there and "1" in class_key."""
    try:
        number = float(category)
    except ValueError:
        return category
    return class_key(number)


def _first_line(text: str) -> str:
    text = text.strip()
    return text.splitlines()[0] if text else text


def _is_frame(data: Any) -> bool:
    return hasattr(data, "columns") and hasattr(data, "iloc")


def _outputs(raw: Any) -> npt.NDArray[Any] | None:
    """One value per row, when the output has that shape (else no output metrics)."""
    if _is_frame(raw):
        if raw.shape[1] != 1:
            return None
        raw = raw.iloc[:, 0]
    if hasattr(raw, "to_numpy"):
        raw = raw.to_numpy()
    try:
        arr = np.asarray(raw)
    except (TypeError, ValueError):
        return None
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    return arr if arr.ndim == 1 else None
