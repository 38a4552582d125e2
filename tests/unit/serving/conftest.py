"""Small real scikit-learn models logged with MLflow, shared by the serving unit tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature

from modeldeploy.serving.config import ServeConfig
from modeldeploy.serving.loader import LoadedModel, load


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.integers(0, 10, size=n).astype(np.int64),
            "c": rng.normal(size=n).astype(np.float32),
            "d": rng.integers(-5, 5, size=n).astype(np.int32),
        }
    )


def save_models(root: Path) -> dict[str, str]:
    import mlflow.sklearn
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = _frame(200, 0)
    y = (x["a"] + x["b"] / 5 > 1).astype(int)
    paths: dict[str, str] = {}

    def save(name: str, model: Any, frame: pd.DataFrame) -> None:
        paths[name] = str(root / name)
        mlflow.sklearn.save_model(
            model,
            paths[name],
            signature=infer_signature(frame, model.predict(frame.fillna(0.0))),
            serialization_format="pickle",
            pip_requirements=["scikit-learn"],  # no inference: it loads the model in a subprocess
        )

    save("pipeline", make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y), x)
    labels = np.where(y == 1, "yes", "no")
    save("forest", RandomForestClassifier(n_estimators=5, random_state=0).fit(x, labels), x)
    with_gap = x[["a", "b"]].copy()
    with_gap.loc[::7, "a"] = np.nan  # an optional column in the signature
    regressor = Ridge().fit(x[["a", "b"]], x["c"])
    save("regressor", regressor, with_gap)
    return paths


@pytest.fixture(scope="session")
def sklearn_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Paths of: "pipeline" (StandardScaler + LogisticRegression, fitted on a DataFrame of
    double, long, float and integer columns), "forest" (RandomForestClassifier with string
    classes) and "regressor" (Ridge whose signature has an optional column)."""
    return save_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def loaded_models(sklearn_models: dict[str, str]) -> dict[str, LoadedModel]:
    """The same models loaded once by the server's loader (Runtimes only read them)."""
    return {
        name: load(ServeConfig(model_uri=path, trust_model_code="always"))
        for name, path in sklearn_models.items()
    }
