"""The fast path: a request read straight into the array a scikit-learn model predicts on.

MLflow's path builds a DataFrame from the JSON, casts it to the signature, enforces the schema
on it, and scikit-learn validates the DataFrame again before predicting: for a one-row request
most of the CPU goes there, not into the model. This module covers the requests where all of
that provably yields one numeric matrix in signature column order, and builds that matrix
directly. It only ever answers requests MLflow would answer 200 to, with the same bytes:

- the model: sklearn flavor called through `predict`, a column-based signature of numeric
  types (double, float, long, integer), no params schema, and an estimator (or Pipeline of
  them) from sklearn modules that read their input by position (`_POSITIONAL`); when it was
  fitted with feature names they must be the signature's, in order;
- the request: exactly one of the four JSON formats (or CSV) and nothing else (no params, no
  index), every signature column present once, no other column, at least one row, every value
  a JSON number of the kind the column takes (an integer column takes integers only), finite,
  in range.

Anything else — a missing or extra column, a null, a string, a float in an integer column, an
empty batch, params, an estimator raising — returns None and the request takes MLflow's path,
which answers exactly as before (its refusals included). So behaviour never differs, only speed;
tests/unit/serving/test_fastpath_parity.py holds both paths to that.

The matrix's dtype is the one scikit-learn would get from the enforced DataFrame: each column in
its signature type (pandas' cast), interleaved to their common numpy type, as
`DataFrame.to_numpy` does for numeric columns.
"""

from __future__ import annotations

import csv
import io
import logging
import warnings
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from modeldeploy.serving import payload

log = logging.getLogger("modeldeploy.serving")

# Signature type → the numpy dtype MLflow's parser casts the column to (`DataType.to_pandas`).
_DTYPES: Final[dict[str, np.dtype[Any]]] = {
    "double": np.dtype(np.float64),
    "float": np.dtype(np.float32),
    "long": np.dtype(np.int64),
    "integer": np.dtype(np.int32),
}
_INT_KINDS: Final = frozenset({int})
_NUMBER_KINDS: Final = frozenset({int, float})
_EXACT_INT: Final = 2**53  # every integer below this is exact in float64, so casts agree
# sklearn packages whose estimators and transformers read columns by position and treat every
# column alike (no ColumnTransformer, encoders or FunctionTransformer, whose output depends on
# DataFrame column names or dtypes).
_POSITIONAL: Final = (
    "sklearn.linear_model.",
    "sklearn.ensemble.",
    "sklearn.tree.",
    "sklearn.neighbors.",
    "sklearn.naive_bayes.",
    "sklearn.svm.",
    "sklearn.discriminant_analysis.",
    "sklearn.neural_network.",
    "sklearn.preprocessing._data",
    "sklearn.decomposition.",
)
_META: Final = ("estimators", "final_estimator", "base_estimator")  # ensembles of any estimator
# Classifiers whose `predict` is literally `classes_.take(argmax(predict_proba(X)))` (read in
# scikit-learn's source: ForestClassifier.predict). For these one predict_proba call gives both
# the answer and the confidence. Not LogisticRegression, GradientBoosting, HistGradientBoosting,
# naive Bayes or DecisionTree: they decide from decision values or unnormalised
# probabilities, and rounding in the probabilities can turn a narrow win into a tie.
_PROBA_IS_PREDICT: Final = frozenset(
    {
        "sklearn.ensemble._forest.RandomForestClassifier",
        "sklearn.ensemble._forest.ExtraTreesClassifier",
    }
)
# Classifiers whose `predict` and `predict_proba` each call `decision_function` once and derive
# their answer from it by a fixed formula (read in scikit-learn 1.9's source; see
# `_from_decision`): one decision_function call then gives both, bit for bit, the class from
# the decision values exactly as `predict` computes it (ties included). Only for the versions
# whose source was read: another version may change a formula, and then the model is simply
# called twice again.
_DECISION_RULES: Final = {
    "sklearn.linear_model._logistic.LogisticRegression": "logistic",
    "sklearn.ensemble._gb.GradientBoostingClassifier": "boosting",
}
_DECISION_VERIFIED: Final = ("1.9",)
# What computes each row's output from that row alone, in an order that does not depend on the
# other rows: tree traversals (and ensembles summing or averaging them per row) and per-column
# affine scalers. A matrix product (linear models, SVMs, neighbours' distances, MLPs) goes through
# BLAS, whose rounding can change with the number of rows, so a batched regression value could
# differ from the unbatched one in its last bits.
_PER_ROW: Final = ("sklearn.tree.", "sklearn.ensemble.")
_PER_ROW_SCALERS: Final = frozenset(
    f"sklearn.preprocessing._data.{name}"
    for name in ("StandardScaler", "MinMaxScaler", "MaxAbsScaler", "RobustScaler")
)
_NO_NAMES_WARNING: Final = r"X does not have valid feature names, but \w+ was fitted with feature"


@dataclass(frozen=True)
class Features:
    """A request read by the fast path: the model's input matrix, columns in signature order."""

    matrix: npt.NDArray[Any]
    columns: tuple[str, ...]


class FastPath:
    def __init__(self, estimator: Any, columns: tuple[str, ...], dtypes: tuple[np.dtype[Any], ...]):
        self.estimator = estimator
        self.columns = columns
        self.dtypes = dtypes
        self.dtype: np.dtype[Any] = np.result_type(*dtypes)
        self._colset = frozenset(columns)
        self._at = {c: i for i, c in enumerate(columns)}
        self._uniform = len(set(dtypes)) == 1
        self._int_cols = [i for i, d in enumerate(dtypes) if d.kind == "i"]
        final = _final_step(estimator)
        self.proba_is_predict = (
            _qualname(final) in _PROBA_IS_PREDICT and getattr(final, "n_outputs_", 1) == 1
        )
        self.decision_rule = _decision_rule(final) if not self.proba_is_predict else None
        # Batching may join this model's requests: its answers do not depend on the other rows
        # of a batch, exactly (per-row models), or up to rounding in decision values that can
        # only matter where two classes tie (classifiers, whose answers are class labels).
        self.batchable = _is_classifier(estimator) or _per_row(estimator)

    @classmethod
    def build(cls, pyfunc: Any, type_hint_signature: bool) -> FastPath | None:
        """The fast path for this model, or None (and why, in the log) when it is not covered."""
        reason, fast = _build(pyfunc, type_hint_signature)
        if fast is None:
            log.info("fast path off: %s", reason)
        else:
            log.info("fast path on", extra={"columns": len(fast.columns)})
        return fast

    # -- reading ----------------------------------------------------------------------------

    def read(self, body: bytes, content_type: str | None) -> Features | None:
        """The request as the model's matrix, or None: MLflow's path decides about it."""
        try:
            mime = payload.media_type(content_type)
            if mime == payload.JSON:
                matrix = self._json(body)
            elif mime == payload.CSV:
                matrix = self._csv(body)
            else:
                return None
        except Exception:  # whatever surprises the reader, MLflow's path answers as before
            return None
        if matrix is None:
            return None
        return Features(matrix, self.columns)

    def _json(self, body: bytes) -> npt.NDArray[Any] | None:
        obj = payload.load_json(body)
        if not isinstance(obj, dict) or len(obj) != 1:
            return None  # params, unknown keys, several formats: MLflow's path
        ((key, value),) = obj.items()
        if key == payload.DF_SPLIT:
            return self._split(value)
        if key in (payload.DF_RECORDS, payload.INSTANCES):
            return self._records(value)
        if key == payload.INPUTS:
            if isinstance(value, dict):
                return self._columnar(value)
            return self._records(value)
        return None

    def _split(self, value: Any) -> npt.NDArray[Any] | None:
        if not isinstance(value, dict) or value.keys() != {"columns", "data"}:
            return None  # an index, or no columns: MLflow's path
        cols, rows = value["columns"], value["data"]
        if not isinstance(cols, list) or not isinstance(rows, list) or not rows:
            return None
        if len(cols) != len(self.columns) or frozenset(cols) != self._colset:
            return None  # also catches duplicates and non-string names
        n = len(cols)
        for row in rows:
            if type(row) is not list or len(row) != n:
                return None
        order = None if tuple(cols) == self.columns else [cols.index(c) for c in self.columns]
        matrix = self._matrix(rows, order)
        return matrix

    def _records(self, value: Any) -> npt.NDArray[Any] | None:
        if not isinstance(value, list) or not value:
            return None
        colset, cols = self._colset, self.columns
        rows = []
        for rec in value:
            if type(rec) is not dict or rec.keys() != colset:
                return None
            rows.append([rec[c] for c in cols])
        return self._matrix(rows, None)

    def _columnar(self, value: dict[str, Any]) -> npt.NDArray[Any] | None:
        if value.keys() != self._colset:
            return None
        columns = [value[c] for c in self.columns]
        first = columns[0]
        if type(first) is not list or not first:
            return None
        n = len(first)
        for col in columns:
            if type(col) is not list or len(col) != n:
                return None
        return self._matrix([list(row) for row in zip(*columns, strict=True)], None)

    def _matrix(self, rows: list[list[Any]], order: list[int] | None) -> npt.NDArray[Any] | None:
        """Rows (or columns, for `_columnar`) of JSON numbers as the model's matrix."""
        kinds: set[type] = set()
        for row in rows:
            kinds.update(map(type, row))
        if not kinds <= _NUMBER_KINDS:
            return None  # null, bool, string, nested list: MLflow's path decides
        try:
            raw = np.array(rows, dtype=np.float64)
        except (ValueError, OverflowError):
            return None
        if order is not None:
            raw = raw[:, order]
        if not np.isfinite(raw).all():
            return None  # NaN/Infinity (JSON allows them here): MLflow's path
        if int in kinds and np.abs(raw).max(initial=0.0) >= _EXACT_INT:
            return None
        if self._int_cols:
            if float in kinds and not self._ints_only(rows, order):
                return None  # a float in an integer column: MLflow casts (truncates), so ask it
            for i in self._int_cols:
                info = np.iinfo(self.dtypes[i])
                col = raw[:, i]
                if col.min() < info.min or col.max() > info.max:
                    return None
        return self._cast(raw)

    def _ints_only(self, rows: list[list[Any]], order: list[int] | None) -> bool:
        for i in self._int_cols:
            j = i if order is None else order[i]
            if not {type(row[j]) for row in rows} <= _INT_KINDS:
                return False
        return True

    def _cast(self, raw: npt.NDArray[np.float64]) -> npt.NDArray[Any]:
        """Each column in its signature type, then their common type (DataFrame.to_numpy)."""
        if self._uniform:
            return raw if self.dtype == raw.dtype else raw.astype(self.dtype)
        out = np.empty(raw.shape, dtype=self.dtype)
        for i, dt in enumerate(self.dtypes):
            out[:, i] = raw[:, i].astype(dt)
        return out

    def _csv(self, body: bytes) -> npt.NDArray[Any] | None:
        """CSV through pandas' reader, as MLflow reads it: its number parsing is the reference.
        Only the header is checked by hand first, so that odd files go to MLflow untouched."""
        import pandas as pd

        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return None
        header = next(csv.reader(io.StringIO(text[: text.find("\n") + 1 or None])), None)
        if not header or len(header) != len(self.columns) or frozenset(header) != self._colset:
            return None
        try:
            frame = pd.read_csv(
                io.StringIO(text), dtype=dict(zip(self.columns, self.dtypes, strict=True))
            )
        except Exception:  # MLflow's path gives the refusal
            return None
        if len(frame) == 0 or tuple(frame.columns) != tuple(header):
            return None
        if any(frame[c].dtype != d for c, d in zip(self.columns, self.dtypes, strict=True)):
            return None
        matrix: npt.NDArray[Any] = frame[list(self.columns)].to_numpy()
        if matrix.dtype != self.dtype or not np.isfinite(matrix).all():
            return None
        return matrix

    # -- predicting -------------------------------------------------------------------------

    def predict(self, matrix: npt.NDArray[Any]) -> Any:
        return self.estimator.predict(matrix)

    def predict_proba(self, matrix: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return np.asarray(self.estimator.predict_proba(matrix))

    def classes_from(self, proba: npt.NDArray[Any]) -> Any:
        """`predict`'s answer from its own predict_proba (only when `proba_is_predict`)."""
        return _final_step(self.estimator).classes_.take(np.argmax(proba, axis=1), axis=0)

    def predict_both(self, matrix: npt.NDArray[Any]) -> tuple[Any, npt.NDArray[Any]]:
        """(`predict(matrix)`, `predict_proba(matrix)`) from as few model calls as the
        estimator's own code allows: one where predict derives from predict_proba or both from
        decision_function, else two."""
        if self.proba_is_predict:
            proba = self.predict_proba(matrix)
            return self.classes_from(proba), proba
        if self.decision_rule is not None:
            decision = np.asarray(self.estimator.decision_function(matrix))
            return _from_decision(self.decision_rule, _final_step(self.estimator), decision)
        return self.predict(matrix), self.predict_proba(matrix)


def _build(pyfunc: Any, type_hint_signature: bool) -> tuple[str, FastPath | None]:
    meta = pyfunc.metadata
    conf = (meta.flavors or {}).get("python_function") or {}
    if conf.get("loader_module") != "mlflow.sklearn":
        return f"loader {conf.get('loader_module')!r} is not mlflow.sklearn", None
    if conf.get("predict_fn", "predict") != "predict":
        return f"the model predicts with {conf.get('predict_fn')!r}", None
    if type_hint_signature or meta._is_type_hint_from_example():
        return "the signature comes from type hints", None
    if meta.get_params_schema() is not None:
        return "the model takes params", None
    schema = meta.get_input_schema()
    if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
        return "no column-based signature", None
    columns = tuple(schema.input_names())
    if len(set(columns)) != len(columns) or not all(isinstance(c, str) for c in columns):
        return "odd column names", None
    dtypes: list[np.dtype[Any]] = []
    for spec in schema.inputs:
        name = getattr(spec.type, "name", None)
        if name not in _DTYPES:
            return f"column {spec.name!r} has type {spec.type}", None
        dtypes.append(_DTYPES[name])
    try:
        estimator = pyfunc.get_raw_model()
    except Exception as exc:
        return f"no raw model ({type(exc).__name__})", None
    reason = _not_positional(estimator)
    if reason:
        return reason, None
    fitted = getattr(estimator, "feature_names_in_", None)
    if fitted is not None:
        if [str(c) for c in fitted] != list(columns):
            return "the estimator's feature names differ from the signature's columns", None
        # Fitted with exactly these names in this order: an array in that order is the same
        # input, and sklearn's warning that it has no names is noise (one filter, this message).
        warnings.filterwarnings("ignore", message=_NO_NAMES_WARNING, category=UserWarning)
    return "", FastPath(estimator, columns, tuple(dtypes))


def _not_positional(estimator: Any) -> str | None:
    steps = getattr(estimator, "steps", None)
    if _qualname(estimator) == "sklearn.pipeline.Pipeline" and isinstance(steps, list):
        for _, step in steps:
            if step is None or step == "passthrough":
                continue
            reason = _not_positional(step)
            if reason:
                return reason
        return _pandas_output(estimator)
    name = _qualname(estimator)
    if not name.startswith(_POSITIONAL):
        return f"{name} is not an estimator the fast path knows reads by position"
    if any(hasattr(estimator, attr) for attr in _META):
        return f"{name} wraps other estimators"
    inner = getattr(estimator, "estimator", None)  # a forest's tree, AdaBoost's or RANSAC's model
    if inner is not None:
        reason = _not_positional(inner)
        if reason:
            return reason
    return _pandas_output(estimator)


def _per_row(estimator: Any) -> bool:
    steps = getattr(estimator, "steps", None)
    if _qualname(estimator) == "sklearn.pipeline.Pipeline" and isinstance(steps, list):
        return all(s is None or s == "passthrough" or _per_row(s) for _, s in steps)
    name = _qualname(estimator)
    if name in _PER_ROW_SCALERS:
        return True
    if not name.startswith(_PER_ROW):
        return False
    inner = getattr(estimator, "estimator", None)
    return inner is None or _per_row(inner)


def _is_classifier(estimator: Any) -> bool:
    from sklearn.base import is_classifier

    return bool(is_classifier(estimator))


def _pandas_output(estimator: Any) -> str | None:
    config = getattr(estimator, "_sklearn_output_config", None) or {}
    if config.get("transform", "default") != "default":
        return f"{_qualname(estimator)} is set to output {config['transform']}"
    return None


def _decision_rule(final: Any) -> str | None:
    import sklearn

    rule = _DECISION_RULES.get(_qualname(final))
    version = ".".join(sklearn.__version__.split(".")[:2])
    if rule is None or version not in _DECISION_VERIFIED:
        return None
    if rule == "boosting" and not callable(
        getattr(getattr(final, "_loss", None), "predict_proba", None)
    ):
        return None
    return rule


def _from_decision(rule: str, final: Any, decision: npt.NDArray[Any]) -> tuple[Any, Any]:
    """What `final.predict` and `final.predict_proba` compute from these decision values, in
    their own words (scikit-learn 1.9): LinearClassifierMixin.predict and
    LogisticRegression.predict_proba (softmax, or `_predict_proba_lr`'s expit when binary);
    GradientBoostingClassifier.predict and .predict_proba (its loss's link)."""
    from scipy.special import expit  # type: ignore[import-untyped]
    from sklearn.utils.extmath import softmax

    binary = decision.ndim == 1
    if rule == "boosting":
        encoded = (decision >= 0).astype(int) if binary else np.argmax(decision, axis=1)
        return final.classes_[encoded], final._loss.predict_proba(decision)
    indices = (decision > 0).astype(np.intp) if binary else np.argmax(decision, axis=1)
    classes = final.classes_.take(indices, axis=0)
    if binary:
        positive = expit(decision)
        return classes, np.stack([1 - positive, positive], axis=1)
    return classes, softmax(decision, copy=False)


def _final_step(estimator: Any) -> Any:
    steps = getattr(estimator, "steps", None)
    if _qualname(estimator) == "sklearn.pipeline.Pipeline" and isinstance(steps, list) and steps:
        return _final_step(steps[-1][1])
    return estimator


def _qualname(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"
