"""The fast path answers exactly as MLflow's path: a corpus of requests through both.

Real scikit-learn models, logged with MLflow to a temporary directory once per module, loaded by
the server's own loader; each request goes through a Runtime with the fast path on and one with
it off. Same status, same error_type, same body (a 200's bytes; an error's JSON without the
request id). Requests the fast path must serve itself are marked, so that parity cannot hold
merely because everything fell back.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from modeldeploy.names import REQUEST_ID_BODY_KEY
from modeldeploy.serving.config import ServeConfig
from modeldeploy.serving.loader import LoadedModel
from modeldeploy.serving.runtime import Runtime, Scored

JSON = "application/json"
CSV = "text/csv"
RID = "parity-1"


@pytest.fixture(scope="module")
def runtimes(loaded_models: dict[str, LoadedModel]) -> dict[str, tuple[Runtime, Runtime]]:
    out = {}
    for name, loaded in loaded_models.items():
        pair = []
        for fast in (True, False):
            config = ServeConfig(
                model_uri=loaded.info.uri, drift=True, feedback=False,
                fast_path=fast, confidence_sample=1.0,
            )  # fmt: skip
            pair.append(Runtime(config, loaded))
        out[name] = (pair[0], pair[1])
    return out


def _rows(columns: list[str], n: int = 3) -> list[list[Any]]:
    ints = {"b", "d"}
    return [[i + 2 if c in ints else 0.5 * i - 0.25 for c in columns] for i in range(n)]


def _split(cols: list[str], rows: list[list[Any]], **extra: Any) -> bytes:
    return json.dumps({"dataframe_split": {"columns": cols, "data": rows}, **extra}).encode()


def _records(key: str, cols: list[str], rows: list[list[Any]]) -> bytes:
    return json.dumps({key: [dict(zip(cols, r, strict=True)) for r in rows]}).encode()


def _columnar(cols: list[str], rows: list[list[Any]]) -> bytes:
    return json.dumps({"inputs": {c: [r[i] for r in rows] for i, c in enumerate(cols)}}).encode()


def _csv(cols: list[str], rows: list[list[Any]]) -> bytes:
    lines = [",".join(cols)] + [",".join("" if v is None else str(v) for v in r) for r in rows]
    return ("\n".join(lines) + "\n").encode()


def _with(rows: list[list[Any]], col: int, value: Any) -> list[list[Any]]:
    out = [list(r) for r in rows]
    out[0][col] = value
    return out


def corpus(cols: list[str]) -> Iterator[tuple[str, bytes, str, bool | None]]:
    """(case, body, content type, served by the fast path: True, False, None for either)."""
    rows = _rows(cols)
    rev = cols[::-1]
    rev_rows = [r[::-1] for r in rows]
    yield "split", _split(cols, rows), JSON, True
    yield "split shuffled", _split(rev, rev_rows), JSON, True
    yield "records", _records("dataframe_records", cols, rows), JSON, True
    yield "records shuffled", _records("dataframe_records", rev, rev_rows), JSON, True
    yield "instances", _records("instances", cols, rows), JSON, True
    yield "inputs records", _records("inputs", cols, rows), JSON, True
    yield "inputs columnar", _columnar(cols, rows), JSON, True
    yield "csv", _csv(cols, rows), CSV, True
    yield "csv shuffled", _csv(rev, rev_rows), f"{CSV}; charset=utf-8", True
    yield "one row", _split(cols, rows[:1]), JSON, True
    yield "ints in every column", _split(cols, [[3] * len(cols)]), JSON, True
    yield "floats that are integral", _split(cols, [[2.0] * len(cols)]), JSON, False
    indexed = {"columns": cols, "data": rows, "index": [7, 8, 9]}
    yield "split index", json.dumps({"dataframe_split": indexed}).encode(), JSON, False
    yield "params", _split(cols, rows, params={"k": 1}), JSON, False
    yield "missing column", _split(cols[1:], [r[1:] for r in rows]), JSON, False
    yield "extra column", _split([*cols, "zz"], [[*r, 1.0] for r in rows]), JSON, False
    yield "duplicate column", _split([*cols, cols[0]], [[*r, 1.0] for r in rows]), JSON, False
    yield (
        "records missing key",
        _records("dataframe_records", cols[1:], [r[1:] for r in rows]),
        JSON,
        False,
    )
    yield "empty data", _split(cols, []), JSON, False
    yield "empty records", json.dumps({"dataframe_records": []}).encode(), JSON, False
    yield "empty inputs", _columnar(cols, []), JSON, False
    yield "csv header only", (",".join(cols) + "\n").encode(), CSV, False
    yield "csv missing value", _csv(cols, _with(rows, 0, None)), CSV, False
    yield "csv string", _csv(cols, _with(rows, 0, "abc")), CSV, False
    yield "csv float in int column", _csv(cols, _with(rows, cols.index("b"), 1.5)), CSV, False
    yield "csv missing column", _csv(cols[1:], [r[1:] for r in rows]), CSV, False
    yield (
        "scalars in inputs",
        json.dumps({"inputs": dict(zip(cols, rows[0], strict=True))}).encode(),
        JSON,
        False,
    )
    yield "instances as lists", json.dumps({"instances": rows}).encode(), JSON, False
    yield (
        "ragged columnar",
        json.dumps({"inputs": {c: [1.0] * (i + 1) for i, c in enumerate(cols)}}).encode(),
        JSON,
        False,
    )
    yield (
        "unknown key",
        json.dumps({"dataframe_split": {"columns": cols, "data": rows}, "foo": 1}).encode(),
        JSON,
        False,
    )
    yield "unhashable column name", _split([[cols[0]], *cols[1:]], rows), JSON, False
    yield "number as column name", _split([1, *cols[1:]], rows), JSON, False
    yield "two formats", json.dumps({"inputs": [], "instances": []}).encode(), JSON, False
    yield "not json", b"{nope", JSON, False
    yield "wrong media type", _csv(cols, rows), "text/plain", False
    for j, col in enumerate(cols):
        for label, bad in (
            ("null", None), ("NaN", math.nan), ("Infinity", math.inf), ("string", "abc"),
            ("numeric string", "1.5"), ("bool", True), ("nested list", [1.0]), ("object", {"x": 1}),
            ("float", 1.5), ("integral float", 4.0), ("huge int", 2**70), ("big int", 2**40),
            ("negative", -3), ("tiny float", 5e-324),
        ):  # fmt: skip
            yield f"{label} in {col}", _split(cols, _with(rows, j, bad)), JSON, None
            if label in ("null", "string", "float"):
                yield (
                    f"{label} in {col} records",
                    _records("dataframe_records", cols, _with(rows, j, bad)),
                    JSON,
                    None,
                )


def _answer(scored: Scored) -> Any:
    if scored.status == 200:
        return scored.body
    out = json.loads(scored.body)
    out.pop(REQUEST_ID_BODY_KEY, None)
    return out


@pytest.mark.parametrize("model", ["pipeline", "forest", "regressor"])
def test_fast_path_answers_as_mlflow_for_every_request_of_the_corpus(
    runtimes: dict[str, tuple[Runtime, Runtime]], model: str
) -> None:
    fast, slow = runtimes[model]
    assert fast.fast is not None, "the model must be one the fast path covers"
    assert slow.fast is None
    cols = list(fast.model.input_columns)
    differ, missed = [], []
    for case, body, ctype, served in corpus(cols):
        a, b = fast.score(body, ctype, RID), slow.score(body, ctype, RID)
        if (a.status, a.error_type, _answer(a)) != (b.status, b.error_type, _answer(b)):
            differ.append((case, a.status, a.body[:300], b.status, b.body[:300]))
        if served and a.features is None:
            missed.append(case)
        if served is False and a.features is not None:
            missed.append(f"{case} (served, should fall back)")
    assert not differ, differ
    assert not missed, missed


def test_classifier_confidence_comes_with_every_fast_answer(
    runtimes: dict[str, tuple[Runtime, Runtime]],
) -> None:
    for model in ("pipeline", "forest"):
        fast, slow = runtimes[model]
        body = _split(list(fast.model.input_columns), _rows(list(fast.model.input_columns), 5))
        a, b = fast.score(body, JSON, RID), slow.score(body, JSON, RID)
        assert a.body == b.body
        assert a.confidence is not None and b.confidence is not None
        np.testing.assert_allclose(a.confidence, b.confidence)
    assert runtimes["forest"][0].fast.proba_is_predict  # type: ignore[union-attr]
    assert not runtimes["pipeline"][0].fast.proba_is_predict  # type: ignore[union-attr]


def test_drift_counts_the_same_rows_on_both_paths(
    runtimes: dict[str, tuple[Runtime, Runtime]],
) -> None:
    fast, slow = runtimes["regressor"]
    cols = list(fast.model.input_columns)
    body = _split(cols, _rows(cols, 4))
    added = []
    for rt in (fast, slow):
        scored = rt.score(body, JSON, RID)
        assert scored.status == 200
        drift = rt.windows.drift
        assert drift is not None
        before = drift.counts.copy()
        rt.observe(scored, RID)
        added.append(drift.counts - before)
    np.testing.assert_array_equal(added[0], added[1])
    assert added[0].sum() == 4 * len(cols)
