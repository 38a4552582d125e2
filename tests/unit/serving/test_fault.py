"""Who is to blame for a failed prediction: a model that rejects bad input gives a 4xx (never
counted against the version), a model that fails on good input a 5xx (rolled back).

The models are real PyFuncModel objects built in memory, so MLflow's own signature enforcement
runs exactly as in the server; no files, no network.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.models import Model, infer_signature
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PyFuncModel

from modeldeploy.serving import fault
from modeldeploy.serving.config import ServeConfig
from modeldeploy.serving.loader import LoadedModel, ModelInfo, _signature_columns
from modeldeploy.serving.runtime import Clock, Runtime

JSON = "application/json"
TRAIN = pd.DataFrame({"a": [1.0, 2.0], "b": [0.5, np.nan]})  # b may be missing, a may not


class Impl:
    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn

    def predict(self, data: Any, params: Any = None) -> Any:
        return self.fn(data)


def sklearn_like(data: Any) -> Any:
    """Refuses NaN/Inf as sklearn's check_array does (ValueError), else predicts a + 1."""
    arr = np.asarray(data, dtype=float)
    if not np.isfinite(arr).all():
        raise ValueError("Input X contains NaN.")
    return arr[:, 0] + 1


def always(exc: BaseException) -> Callable[[Any], Any]:
    def predict(data: Any) -> Any:
        raise exc

    return predict


def runtime(
    fn: Callable[[Any], Any],
    signature: bool = True,
    n_features: int | None = None,
    **config: Any,
) -> Runtime:
    meta = Model(signature=infer_signature(TRAIN) if signature else None)
    pyfunc = PyFuncModel(model_meta=meta, model_impl=Impl(fn))
    cols, required = _signature_columns(pyfunc)
    loaded = LoadedModel(
        info=ModelInfo("m", "m", "1", "run", "/nowhere"),
        pyfunc=pyfunc,
        load_seconds=0.0,
        baseline=None,
        classifier=None,
        regressor=False,
        input_columns=cols,
        required_columns=required,
        type_hint_signature=False,
        n_features=n_features,
    )
    return Runtime(ServeConfig(model_uri="m", drift=False, feedback=False, **config), loaded)


def split(*rows: list[Any]) -> bytes:
    return json.dumps({"dataframe_split": {"columns": ["a", "b"], "data": list(rows)}}).encode()


def inputs(*rows: list[Any]) -> bytes:
    return json.dumps({"inputs": list(rows)}).encode()


def answer(rt: Runtime, body: bytes) -> tuple[int, str | None]:
    scored = rt.score(body, JSON, "rid")
    return scored.status, scored.error_type


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, None])
def test_model_refusing_a_non_finite_required_value_is_a_client_error(bad: object) -> None:
    rt = runtime(sklearn_like)
    assert answer(rt, split([bad, 1.0])) == (400, "bad_input")
    assert answer(rt, split([1.0, 1.0])) == (200, None)


def test_message_names_the_column_and_what_the_model_said() -> None:
    scored = runtime(sklearn_like).score(split([math.nan, 1.0]), JSON, "rid")
    assert scored.message is not None
    assert "column 'a' holds a missing value" in scored.message
    assert "ValueError: Input X contains NaN." in scored.message


def test_without_a_signature_non_finite_values_are_the_clients_fault() -> None:
    rt = runtime(sklearn_like, signature=False)
    assert answer(rt, inputs([math.nan, 1.0])) == (400, "bad_input")
    assert answer(rt, inputs([1.0, 1.0])) == (200, None)


def test_allow_non_finite_makes_a_failure_on_them_the_models() -> None:
    rt = runtime(sklearn_like, signature=False, allow_non_finite=True)
    assert answer(rt, inputs([math.nan, 1.0])) == (500, "model_error")


def test_missing_value_in_an_optional_column_is_valid_input() -> None:
    # The signature says b may be missing: a model failing on that fails its own contract.
    assert answer(runtime(sklearn_like), split([1.0, None])) == (500, "model_error")


def test_infinity_is_never_valid_even_in_an_optional_column() -> None:
    assert answer(runtime(sklearn_like), split([1.0, math.inf])) == (400, "bad_input")


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("broken"),
        TypeError("broken"),
        KeyError("broken"),
        MlflowException("broken", error_code=INVALID_PARAMETER_VALUE),
        RuntimeError("broken"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_version_failing_on_good_input_is_a_model_error_whatever_it_raises(
    exc: Exception,
) -> None:
    assert answer(runtime(always(exc)), split([1.0, 2.0])) == (500, "model_error")
    assert answer(runtime(always(exc), signature=False), inputs([1.0, 2.0])) == (
        500,
        "model_error",
    )


def test_an_error_type_models_do_not_raise_for_input_is_the_models_even_on_bad_input() -> None:
    rt = runtime(always(RuntimeError("CUDA out of memory")))
    assert answer(rt, split([math.nan, 1.0])) == (500, "model_error")


def test_signature_enforcement_is_a_client_error() -> None:
    assert answer(runtime(sklearn_like), split(["abc", 1.0])) == (400, "bad_input")


def test_without_a_signature_the_declared_feature_count_is_the_contract() -> None:
    rt = runtime(always(ValueError("X has 3 features")), signature=False, n_features=2)
    assert answer(rt, inputs([1.0, 2.0, 3.0])) == (400, "bad_input")
    assert answer(rt, inputs([1.0, 2.0])) == (500, "model_error")


def test_latency_is_measured_only_when_the_model_ran() -> None:
    rt = runtime(sklearn_like)
    clock = Clock()
    ok = rt.score(split([1.0, 1.0]), JSON, "rid", clock)
    assert ok.status == 200 and ok.seconds is not None and clock.started is not None
    unread = rt.score(b"{nope", JSON, "rid", Clock())
    assert unread.status == 400 and unread.seconds is None
    refused = rt.score(split([math.nan, 1.0]), JSON, "rid")
    assert refused.status == 400 and refused.seconds is None
    broken = runtime(always(ValueError("x"))).score(split([1.0, 1.0]), JSON, "rid")
    assert broken.status == 500 and broken.seconds is not None


def test_one_row_with_three_index_entries_is_refused_before_the_model() -> None:
    body = json.dumps(
        {"dataframe_split": {"columns": ["a", "b"], "index": [0, 1, 2], "data": [[1.0, 2.0]]}}
    ).encode()
    scored = runtime(sklearn_like).score(body, JSON, "rid")
    assert scored.status == 400 and "'dataframe_split.index' has 3 entries" in str(scored.message)


@pytest.mark.parametrize(
    ("data", "optional", "found"),
    [
        (pd.DataFrame({"a": [1.0, np.nan]}), frozenset(), "column 'a' holds a missing value"),
        (pd.DataFrame({"a": [1.0, np.nan]}), frozenset({"a"}), None),
        (pd.DataFrame({"a": ["x", None]}), frozenset(), "column 'a' holds a missing value"),
        (pd.DataFrame({"a": ["x", "y"], "b": [1, 2]}), frozenset(), None),
        (np.array([[1.0, np.inf]]), frozenset(), "the input holds an infinite value"),
        ({"t": np.array([1.0, np.nan])}, frozenset(), "input 't' holds a missing value"),
        ([[1.0, None]], frozenset(), "the input holds a missing value"),
        ([[1.0, [2.0, math.inf]]], frozenset(), "the input holds an infinite value"),
        ([["a", "b"]], frozenset(), None),
    ],
)
def test_nonfinite_finds_what_the_contract_does_not_allow(
    data: Any, optional: frozenset[str], found: str | None
) -> None:
    reason = fault.nonfinite(data, optional, allow_missing=False)
    assert (reason is None) == (found is None)
    if found:
        assert reason is not None and reason.startswith(found)


def test_input_error_types() -> None:
    assert fault.input_error_type(ValueError())
    assert fault.input_error_type(MlflowException("x", error_code=INVALID_PARAMETER_VALUE))
    assert not fault.input_error_type(MlflowException("x", error_code=INTERNAL_ERROR))
    assert not fault.input_error_type(RuntimeError())


def test_a_signature_refusal_names_the_reason_without_echoing_the_data() -> None:
    from modeldeploy.serving.payload import Parsed

    frame = pd.DataFrame({"a": ["secret-value"], "b": [1.0]})
    rt = runtime(sklearn_like)
    try:
        rt.model.pyfunc.predict(frame)
    except MlflowException as exc:
        assert "secret-value" in exc.message  # MLflow's own message echoes the data
        reason = rt.input_fault(exc, Parsed(frame, None))
    assert reason is not None and reason.startswith("input does not match the model signature")
    assert "secret-value" not in reason


def sklearn_min_rows(data: Any) -> Any:
    """Refuses zero samples as sklearn's check_array does (ValueError), else predicts a + 1."""
    if len(data) == 0:
        raise ValueError(
            "Found array with 0 sample(s) (shape=(0, 2)) while a minimum of 1 is required."
        )
    return np.asarray(data, dtype=float)[:, 0] + 1


@pytest.mark.parametrize(
    "body",
    [
        split(),
        json.dumps({"dataframe_records": []}).encode(),
        json.dumps({"instances": []}).encode(),
        json.dumps({"inputs": {"a": [], "b": []}}).encode(),
    ],
    ids=["split", "records", "instances", "inputs-dict"],
)
def test_a_model_refusing_an_empty_batch_is_the_clients_fault(body: bytes) -> None:
    """Found by tests/integration/attacks: an empty batch was a model_error 500, one a client
    could send at will to raise the error rate the rollback alert watches."""
    assert answer(runtime(sklearn_min_rows), body) == (400, "bad_input")
    assert answer(runtime(sklearn_min_rows), split([1.0, 1.0])) == (200, None)


def test_a_model_failing_on_rows_is_still_a_model_error() -> None:
    assert fault.empty(pd.DataFrame({"a": [1.0]})) is None
    assert fault.empty({"a": [1.0], "b": []}) is None
    assert answer(runtime(always(ValueError("broken"))), split([1.0, 1.0])) == (500, "model_error")
