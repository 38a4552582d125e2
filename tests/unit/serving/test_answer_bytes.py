"""The answer writer's json.dumps shortcut gives the bytes of MLflow's `predictions_to_json`."""

from __future__ import annotations

from io import StringIO
from typing import Any

import numpy as np
import pytest
from mlflow.pyfunc.scoring_server import predictions_to_json

from modeldeploy.names import REQUEST_ID_BODY_KEY
from modeldeploy.serving.config import ServeConfig
from modeldeploy.serving.runtime import Runtime

ARRAYS = [
    np.array([0.1, -2.5e-300, 1e300, np.nan, np.inf, -np.inf, -0.0]),
    np.array([0.1, 1 / 3], dtype=np.float32),
    np.array([1, -2, 2**62], dtype=np.int64),
    np.array([3, 4], dtype=np.uint8),
    np.array([True, False]),
    np.array(["yes", "naïve", 'quo"te\\', "日本"]),
    np.array([[0.25, 0.75], [1.0, 0.0]]),
]


@pytest.mark.parametrize("raw", ARRAYS, ids=lambda a: str(a.dtype))
@pytest.mark.parametrize("in_body", [True, False])
def test_a_prediction_array_is_written_as_mlflow_writes_it(raw: Any, in_body: bool) -> None:
    rt = Runtime.__new__(Runtime)  # only the writer's configuration is needed
    rt.config = ServeConfig(model_uri="unused", request_id_in_body=in_body)
    expected = StringIO()
    predictions_to_json(raw, expected, {REQUEST_ID_BODY_KEY: "r-1"} if in_body else None)
    assert rt._answer(raw, False, "r-1") == expected.getvalue().encode()
