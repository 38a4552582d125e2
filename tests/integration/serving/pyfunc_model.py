"""A custom pyfunc model for the serving tests (pickled by value, so the server needs no tests/)."""

from __future__ import annotations

import time
from typing import Any

import mlflow.pyfunc
import pandas as pd


class Scorer(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    """2a + b; raises when `boom` is set; sleeps for params["sleep"] seconds."""

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> Any:
        delay = float((params or {}).get("sleep", 0.0))
        if delay:
            time.sleep(delay)
        if (model_input["boom"] > 0).any():
            raise ValueError("the boom column is set")
        return (model_input["a"] * 2 + model_input["b"]).astype(float)
