"""Whose fault is a failed prediction: the client's (4xx) or the version's (5xx, rollback)?

The error-rate alert counts 5xx answers, so this decides what a client can do to a version.
A model that rejects an input raises the same exceptions (ValueError, TypeError, ...) as a
model that is broken, so the exception alone cannot tell them apart. The rule:

    an exception raised while predicting is the client's fault only when
    (1) its type is one models raise for invalid input (INPUT_ERRORS, or an MlflowException
        with a 400 code), and
    (2) the input fails a check that does not run the model: the signature's enforcement
        (MLflow's own, or the type hints'), a feature count other than the one the estimator
        declares (`n_features_in_`, only without a signature), a missing or non-finite value
        (null, NaN, ±Infinity) the contract does not allow (`nonfinite`), or no rows at all
        (`empty`: sklearn refuses zero samples, and an empty batch asks for nothing).

Anything else is a model error. Because (2) looks only at the input and the declared contract,
a version that fails on good input fails as a 5xx whatever it raises, and the same bad request
is a 4xx on every version, so it can never tell one version from another.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Final

import numpy as np
import pandas as pd

from modeldeploy.serving.payload import schema_error

INPUT_ERRORS: Final = (ValueError, TypeError, KeyError, IndexError)


def input_error_type(exc: BaseException) -> bool:
    """Condition (1): an exception a model raises when it refuses its input."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        return bool(exc.get_http_status_code() == 400)  # type: ignore[no-untyped-call]
    return isinstance(exc, INPUT_ERRORS)


def signature_rejects(pyfunc: Any, data: Any, params: dict[str, Any] | None) -> str | None:
    """Condition (2a): run MLflow's signature enforcement (the step `PyFuncModel.predict` runs
    before the model) on its own; the reason when it refuses the input."""
    try:
        if pyfunc.metadata._is_signature_from_type_hint():
            _type_hint_check(pyfunc, data)
        else:
            from mlflow.pyfunc import _validate_prediction_input

            _validate_prediction_input(
                data,
                params,
                pyfunc.metadata.get_input_schema(),
                pyfunc.metadata.get_params_schema(),
                pyfunc.loader_module,
            )
    except Exception as exc:
        return _reason(exc)
    return None


def _type_hint_check(pyfunc: Any, data: Any) -> None:
    """What MLflow's @pyfunc wrapper checks before a type-hinted predict runs."""
    import inspect

    from mlflow.pyfunc.utils import data_validation

    dv: Any = data_validation  # private helpers, not re-exported
    func = inspect.unwrap(pyfunc.unwrap_python_model().predict)
    info = dv._get_func_info_if_type_hint_supported(func)
    if info is not None:
        hint = info.input_type_hint
        dv._validate_data_against_type_hint(dv._convert_data_to_type_hint(data, hint), hint)


def _reason(exc: Exception) -> str:
    text = str(getattr(exc, "message", exc))
    lines = text.strip().splitlines()
    reason = schema_error(text) or (lines[0] if lines else type(exc).__name__)
    return f"input does not match the model signature: {reason}"


def feature_count_differs(data: Any, n_features: int | None) -> str | None:
    """Condition (2b), for models without a signature: the estimator's declared input width."""
    if n_features is None:
        return None
    shape = getattr(data, "shape", None)
    if shape is None:
        try:
            shape = np.shape(data)
        except ValueError:  # ragged
            return "rows of different lengths"
    if len(shape) == 2 and shape[1] != n_features:
        return f"{shape[1]} features per row, the model takes {n_features}"
    if len(shape) != 2:
        return f"a {len(shape)}-dimensional input, the model takes rows of {n_features} features"
    return None


def empty(data: Any) -> str | None:
    """Condition (2d): an input with no rows (an empty frame, list or tensor, or a dict of
    them). Found by the attack suite: `{"dataframe_split": {"columns": [...], "data": []}}` was a
    model_error 500, so a client could raise a healthy version's error rate at will."""
    if isinstance(data, dict):
        values = list(data.values())
        return "no rows" if values and all(_length(v) == 0 for v in values) else None
    return "no rows" if _length(data) == 0 else None


def _length(value: Any) -> int | None:
    shape = getattr(value, "shape", None)
    if shape is not None:
        return int(shape[0]) if len(shape) else None
    return len(value) if isinstance(value, list | tuple) else None


def nonfinite(data: Any, optional: frozenset[str], allow_missing: bool) -> str | None:
    """Condition (2c): where the input holds a missing (null/NaN) or infinite value the contract
    does not allow. A signature column marked optional may be missing, never infinite;
    `allow_missing` (--allow-non-finite) makes every non-finite value part of the contract."""
    if allow_missing:
        return None
    if hasattr(data, "columns") and hasattr(data, "iloc"):
        for name in data.columns:
            found = _first_bad(data[name].to_numpy(), missing_ok=str(name) in optional)
            if found:
                return f"column {str(name)!r} holds {found}"
        return None
    if isinstance(data, dict):
        for name, value in data.items():
            found = _first_bad(value, missing_ok=str(name) in optional)
            if found:
                return f"input {str(name)!r} holds {found}"
        return None
    found = _first_bad(data, missing_ok=False)
    return f"the input holds {found}" if found else None


def _first_bad(values: Any, missing_ok: bool) -> str | None:
    """'a missing value (null/NaN)' or 'an infinite value', or None; numpy fast path for numbers."""
    arr = values if isinstance(values, np.ndarray) else None
    if arr is None:
        try:
            arr = np.asarray(values)
        except (ValueError, TypeError):  # ragged: walk it
            arr = None
    if arr is not None and arr.dtype.kind in "fc":
        if np.isinf(arr).any():
            return "an infinite value"
        if not missing_ok and np.isnan(arr).any():
            return "a missing value (null/NaN)"
        return None
    if arr is not None and arr.dtype.kind in "biuUSmM":
        return None
    return _walk(values if arr is None else arr.ravel(), missing_ok)


def _walk(values: Iterable[Any], missing_ok: bool) -> str | None:
    stack: list[Any] = [values]
    while stack:
        node = stack.pop()
        items = node.values() if isinstance(node, dict) else node
        for v in items:
            if v is None or v is pd.NA or v is pd.NaT:
                if not missing_ok:
                    return "a missing value (null/NaN)"
            elif isinstance(v, float | np.floating):
                if math.isinf(v):
                    return "an infinite value"
                if math.isnan(v) and not missing_ok:
                    return "a missing value (null/NaN)"
            elif isinstance(v, list | tuple | dict | np.ndarray):
                stack.append(v)
    return None
