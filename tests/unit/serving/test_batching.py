"""Adaptive batching with real models: the same answers as one request at a time."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from modeldeploy.serving.app import ServingApp
from modeldeploy.serving.batching import Batcher
from modeldeploy.serving.config import ServeConfig
from modeldeploy.serving.loader import LoadedModel
from modeldeploy.serving.runtime import Clock, Pending, Runtime, Scored

JSON = "application/json"


def _config(path: str, **kw: Any) -> ServeConfig:
    return ServeConfig(model_uri=path, trust_model_code="always", feedback=False, **kw)


@pytest.fixture(scope="module")
def runtimes(loaded_models: dict[str, LoadedModel]) -> dict[str, Runtime]:
    return {
        name: Runtime(_config(loaded.info.uri, confidence_sample=1.0), loaded)
        for name, loaded in loaded_models.items()
    }


def _bodies(rt: Runtime, n: int) -> list[bytes]:
    cols = list(rt.model.input_columns)
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        rows = [
            [int(rng.integers(0, 10)) if c in ("b", "d") else float(rng.normal()) for c in cols]
            for _ in range(1 + i % 3)  # requests of 1, 2 and 3 rows
        ]
        out.append(json.dumps({"dataframe_split": {"columns": cols, "data": rows}}).encode())
    return out


def _pending(rt: Runtime, body: bytes, i: int) -> Pending:
    features = rt.read_fast(body, JSON)
    assert features is not None
    return Pending(features, f"r{i}", Clock(started=0.0))


def _batch_count(rt: Runtime) -> tuple[float, float]:
    """(model calls, requests they answered) from the batch-size histogram."""
    samples = {s.name: s.value for m in rt.metrics.registry.collect() for s in m.samples}
    return samples["prediction_batch_size_count"], samples["prediction_batch_size_sum"]


def _run(batcher: Batcher[Pending, Scored | None], items: list[Pending]) -> list[Any]:
    async def main() -> list[Any]:
        return list(await asyncio.gather(*(batcher.submit(p) for p in items)))

    return asyncio.run(main())


@pytest.mark.parametrize("model", ["pipeline", "forest"])
def test_concurrent_requests_get_the_answers_they_get_one_at_a_time(
    runtimes: dict[str, Runtime], model: str
) -> None:
    rt = runtimes[model]
    bodies = _bodies(rt, 20)
    serial = [rt.score(b, JSON, f"r{i}") for i, b in enumerate(bodies)]
    calls, answered = _batch_count(rt)
    with ThreadPoolExecutor(2) as pool:
        batcher: Batcher[Pending, Scored | None] = Batcher(rt.score_batch, pool, 8, 0.0)
        batched = _run(batcher, [_pending(rt, b, i) for i, b in enumerate(bodies)])
    for one, many in zip(serial, batched, strict=True):
        assert many is not None and many.status == 200
        assert many.body == one.body
        assert many.rows == one.rows
        np.testing.assert_array_equal(many.outputs, one.outputs)
        if one.confidence is not None:
            np.testing.assert_allclose(many.confidence, one.confidence)
    # All 20 were queued before the first batch started: batches of 8, 8 and 4.
    assert _batch_count(rt) == (calls + 3, answered + 20)


def test_a_failing_batch_is_retried_one_request_at_a_time(
    runtimes: dict[str, Runtime], monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = runtimes["forest"]
    fast = rt.fast
    assert fast is not None
    bodies = _bodies(rt, 3)
    serial = [rt.score(b, JSON, f"r{i}") for i, b in enumerate(bodies)]
    poisoned = _pending(rt, bodies[1], 1)
    real = type(fast).predict_proba

    def predict_proba(self: Any, matrix: Any) -> Any:
        if any(np.array_equal(row, poisoned.features.matrix[0]) for row in matrix):
            raise ValueError("this row breaks the model")
        return real(self, matrix)

    monkeypatch.setattr(type(fast), "predict_proba", predict_proba)
    calls, answered = _batch_count(rt)
    results = rt.score_batch([_pending(rt, bodies[0], 0), poisoned, _pending(rt, bodies[2], 2)])
    assert results[1] is None  # MLflow's path answers it, as without batching
    assert _batch_count(rt) == (calls + 2, answered + 2)  # the two that were answered, alone
    for i in (0, 2):
        result = results[i]
        assert result is not None and result.body == serial[i].body


def test_the_window_waits_only_for_requests_being_read(runtimes: dict[str, Runtime]) -> None:
    rt = runtimes["forest"]
    a, b = (_pending(rt, body, i) for i, body in enumerate(_bodies(rt, 2)))

    async def scenario(window: float) -> tuple[bool, list[Any]]:
        with ThreadPoolExecutor(1) as pool:
            batcher: Batcher[Pending, Scored | None] = Batcher(rt.score_batch, pool, 32, window)
            batcher.arriving(1)  # b is being read
            first = asyncio.ensure_future(batcher.submit(a))
            for _ in range(20):
                await asyncio.sleep(0)
            started_alone = first.done() or not batcher._queue
            second = asyncio.ensure_future(batcher.submit(b))
            batcher.arriving(-1)
            return started_alone, list(await asyncio.gather(first, second))

    calls, answered = _batch_count(rt)
    alone, _ = asyncio.run(scenario(0.0))
    assert alone  # window 0: a did not wait for b
    assert _batch_count(rt) == (calls + 2, answered + 2)
    waited, results = asyncio.run(scenario(60.0))
    assert not waited  # a waited for b, which was on its way
    assert all(r is not None and r.status == 200 for r in results)
    assert _batch_count(rt) == (calls + 3, answered + 4)  # then one call for both


def test_batch_size_one_or_no_fast_path_turns_batching_off(sklearn_models: dict[str, str]) -> None:
    path = sklearn_models["forest"]
    for kw, on in (
        ({}, True),
        ({"batch_max_size": 1}, False),
        ({"fast_path": False}, False),
    ):
        app = ServingApp(_config(path, **kw))
        app._load()
        assert app.runtime is not None
        assert (app.batcher is not None) is on
        app.shutdown()


def test_a_regressor_batches_only_when_its_rows_do_not_interact(
    runtimes: dict[str, Runtime],
) -> None:
    """Ridge predicts through BLAS, whose rounding depends on the number of rows: batched, its
    values could differ from unbatched ones in the last bits, so it is not batched."""
    assert runtimes["regressor"].fast is not None
    assert not runtimes["regressor"].fast.batchable
    assert runtimes["forest"].fast.batchable  # type: ignore[union-attr]
    assert runtimes["pipeline"].fast.batchable  # type: ignore[union-attr]  # a classifier
