"""Observing a batch of answered requests at once counts exactly what observing them one by one
counts (Runtime.observe_many against Runtime.observe): every model-quality series, to the bit."""

from __future__ import annotations

import json

import numpy as np
import pytest
from prometheus_client import generate_latest

from modeldeploy import names
from modeldeploy.serving.config import ServeConfig
from modeldeploy.serving.loader import LoadedModel
from modeldeploy.serving.runtime import Runtime, Scored

INTS = {"b", "d"}  # the integer columns of the shared test models (conftest.py)


def _runtime(loaded: LoadedModel) -> Runtime:
    config = ServeConfig(
        model_uri=loaded.info.uri, drift=True, feedback=True, confidence_sample=1.0
    )
    return Runtime(config, loaded)


def _scored(rt: Runtime, rows: list[list[float]], fast: bool) -> Scored:
    cols = list(rt.model.input_columns)
    body = json.dumps({"dataframe_split": {"columns": cols, "data": rows}}).encode()
    scored = rt.score(body, "application/json", "x", fast=fast)
    assert scored.status == 200 and (scored.features is not None) == fast
    return scored


def _series(rt: Runtime) -> list[str]:
    """The series `observe` feeds (scoring fed the others on one runtime only)."""
    fed = (names.PREDICTION_CLASS, names.PREDICTION_CONFIDENCE, names.PREDICTION_VALUE,
           names.FEATURE_BIN_ROWS, names.FEEDBACK_PENDING)  # fmt: skip
    text = generate_latest(rt.metrics.registry).decode()
    out = [ln for ln in text.splitlines() if ln.startswith(fed) and "_created" not in ln]
    assert any(ln.startswith(names.FEATURE_BIN_ROWS) and not ln.endswith(" 0.0") for ln in out)
    return out


@pytest.mark.parametrize("model", ["pipeline", "regressor"])
def test_a_batch_observed_at_once_counts_what_each_request_counts(
    loaded_models: dict[str, LoadedModel], model: str
) -> None:
    one, many = _runtime(loaded_models[model]), _runtime(loaded_models[model])
    cols = list(one.model.input_columns)
    rng = np.random.default_rng(1)
    answered = []
    for i in range(12):  # 1-3 rows each; every fourth through MLflow's path
        values = (rng.integers(-3, 9, size=(1 + i % 3, len(cols))) * 0.7).round(2).tolist()
        rows = [[int(v) if c in INTS else v for c, v in zip(cols, r, strict=True)] for r in values]
        answered.append((_scored(one, rows, fast=i % 4 != 3), f"req-{i}"))
    first, rest = answered[:1], answered[1:]
    for scored, rid in answered:
        one.observe(scored, rid)
    many.observe_many(first)  # the first decides the task, as it would in the server
    many.observe_many(rest)
    assert _series(one) == _series(many)
    assert one.metrics.confidence.total == many.metrics.confidence.total
    assert one.metrics.values.total == many.metrics.values.total
    assert one.windows.pending is not None and many.windows.pending is not None
    for _, rid in answered:
        a, b = one.windows.pending.peek(rid, 0.0), many.windows.pending.peek(rid, 0.0)
        assert a is not None and b is not None
        np.testing.assert_array_equal(a, b)
