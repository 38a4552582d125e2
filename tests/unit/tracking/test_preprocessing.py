"""Preprocessing records from real scikit-learn objects and from plain step dicts."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from modeldeploy import names
from modeldeploy.tracking.preprocessing import describe_preprocessing
from modeldeploy.tracking.records import (
    MAX_PARAM_KEY,
    MAX_PARAM_VALUE,
    Preprocessing,
    PreprocessingError,
    PreprocessingStep,
    json_safe,
)

NUMERIC, CATEGORICAL = ["age", "fare"], ["sex", "port"]
STRUCTURE = {"steps", "transformers", "transformer_list"}


def data() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        {
            "age": rng.normal(40, 10, 200),
            "fare": rng.exponential(30, 200),
            "sex": rng.choice(["m", "f"], 200),
            "port": rng.choice(["S", "C", "Q"], 200),
            "extra": rng.integers(0, 3, 200),
        }
    )
    X.loc[::17, "age"] = np.nan
    return X, rng.integers(0, 2, 200)


def pipeline() -> Pipeline:
    numeric = Pipeline(
        [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler(with_mean=False))]
    )
    prep = ColumnTransformer(
        [
            ("num", numeric, NUMERIC),
            ("cat", OneHotEncoder(handle_unknown="ignore", min_frequency=5), CATEGORICAL),
        ],
        remainder="passthrough",
    )
    return Pipeline([("prep", prep), ("model", LogisticRegression(C=0.5, max_iter=500))])


def own_params(est: Any) -> dict[str, Any]:
    """What the record should hold for `est`: its non-estimator params, JSON-safe."""
    return {
        k: json_safe(v)
        for k, v in est.get_params(deep=False).items()
        if k not in STRUCTURE and not hasattr(v, "get_params")
    }


def test_pipeline_with_column_transformer_records_each_step() -> None:
    X, y = data()
    pipe = pipeline().fit(X, y)
    record = describe_preprocessing(pipe)

    assert [s.name for s in record.steps] == ["prep", "model"]
    prep, model = record.steps
    assert prep.class_name == "sklearn.compose._column_transformer.ColumnTransformer"
    assert model.params == own_params(pipe.named_steps["model"])
    assert model.params["C"] == 0.5
    num, cat, remainder = prep.steps
    assert (num.name, num.columns) == ("num", ("age", "fare"))
    assert num.class_name == "sklearn.pipeline.Pipeline"
    assert (cat.columns, cat.params["handle_unknown"], cat.params["min_frequency"]) == (
        ("sex", "port"),
        "ignore",
        5,
    )
    assert [s.name for s in num.steps] == ["impute", "scale"]
    ct = pipe.named_steps["prep"]
    assert num.steps[0].params == own_params(ct.named_transformers_["num"].named_steps["impute"])
    assert num.steps[1].params == {"copy": True, "with_mean": False, "with_std": True}
    assert num.steps[0].params["missing_values"] == "nan"  # np.nan, JSON-safe
    assert (remainder.class_name, remainder.columns) == ("passthrough", ("extra",))
    assert prep.params["remainder"] == "passthrough"
    assert "transformers" not in prep.params and "steps" not in num.params


def test_unfitted_selectors_stay_unknown_until_fitted() -> None:
    X, y = data()
    ct = ColumnTransformer(
        [("num", StandardScaler(), make_column_selector(dtype_include="number"))],
        remainder="drop",
    )
    before = describe_preprocessing(ct).steps[0]
    assert before.name == "columntransformer" and before.steps[0].columns is None
    after = describe_preprocessing(ct.fit(X, y)).steps[0]
    assert after.steps[0].columns == ("age", "fare", "extra")
    assert (after.steps[1].name, after.steps[1].class_name) == ("remainder", "drop")
    assert after.steps[1].columns == ("sex", "port")


def test_feature_union_and_estimator_params_become_nested_steps() -> None:
    union = FeatureUnion([("pca", PCA(n_components=2)), ("raw", "passthrough")])
    ct = ColumnTransformer([("u", union, [0, 1, 2])], remainder=StandardScaler())
    (step,) = describe_preprocessing(ct).steps
    u, remainder = step.steps
    assert [(s.name, s.class_name) for s in u.steps] == [
        ("pca", "sklearn.decomposition._pca.PCA"),
        ("raw", "passthrough"),
    ]
    assert u.columns == (0, 1, 2) and u.steps[0].params["n_components"] == 2
    assert remainder.class_name == "sklearn.preprocessing._data.StandardScaler"
    assert "remainder" not in step.params


def test_params_are_json_safe_stable_and_within_mlflow_limits() -> None:
    pipe = Pipeline(
        [
            ("log", FunctionTransformer(np.log1p)),
            ("onehot", OneHotEncoder(categories=[np.array(["a", "b"]), ["x"]], dtype=np.float32)),
            ("impute", SimpleImputer(fill_value=float("inf"), missing_values=np.nan)),
            ("big", OneHotEncoder(categories=[[f"category-{i}" for i in range(2000)]])),
        ]
    )
    record = describe_preprocessing(pipe)
    json.dumps(record.to_dict(), allow_nan=False)  # strict JSON: no NaN/Infinity
    log, onehot, impute, _ = record.steps
    assert log.params["func"] == "numpy.log1p"
    assert onehot.params["categories"] == [["a", "b"], ["x"]]
    assert onehot.params["dtype"] == "numpy.float32"
    assert (impute.params["fill_value"], impute.params["missing_values"]) == ("inf", "nan")

    params = record.params()
    assert params == describe_preprocessing(pipe).params()
    key_ok = re.compile(r"^[\w.\- :/]+$")
    assert all(key_ok.match(k) and len(k) <= MAX_PARAM_KEY for k in params)
    assert all(len(v) <= MAX_PARAM_VALUE for v in params.values())
    assert params["preprocessing.big.categories"].endswith("...")
    assert params["preprocessing.impute.strategy"] == "mean"
    assert params["preprocessing.impute.copy"] == "true"
    assert params["preprocessing.log.class"].endswith(".FunctionTransformer")


def test_object_reprs_with_addresses_become_class_names() -> None:
    class Opaque:
        pass

    assert json_safe(Opaque()).endswith("Opaque")
    assert json_safe(lambda x: x).endswith("<lambda>")
    assert json_safe({1: (np.int64(2), np.float32(0.5), np.bool_(True))}) == {"1": [2, 0.5, True]}


def test_plain_step_dicts_for_code_without_sklearn() -> None:
    steps = [
        {"name": "scale", "class": "mylib.MinMax", "params": {"lo": 0, "hi": 1}, "columns": ["a"]},
        {
            "name": "text",
            "class": "mylib.Tokens",
            "steps": [{"name": "lower", "class": "mylib.Lower"}],
        },
    ]
    record = describe_preprocessing(steps)
    assert record.steps[0] == PreprocessingStep("scale", "mylib.MinMax", {"lo": 0, "hi": 1}, ("a",))
    assert record.steps[1].steps[0].class_name == "mylib.Lower"
    assert record.params()["preprocessing.text.lower.class"] == "mylib.Lower"
    assert record.params()["preprocessing.scale.columns"] == '["a"]'
    assert Preprocessing.from_json(record.to_json()) == record


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([{"class": "x.Y"}], r"steps\[0\].name"),
        ([{"name": "a"}], r"steps\[0\].class"),
        ([{"name": "a", "class": "x.Y", "cols": ["a"]}], "unknown keys"),
        ([{"name": "a", "class": "x.Y", "steps": [{"name": "b"}]}], r"steps\[0\].steps\[0\]"),
        ([{"name": "a", "class": "x.Y"}, ("b", StandardScaler())], "not a mix"),
        ("scale", "cannot read preprocessing"),
    ],
)
def test_malformed_steps_are_refused_naming_the_field(steps: Any, message: str) -> None:
    with pytest.raises(PreprocessingError, match=message):
        describe_preprocessing(steps)


def test_artifact_round_trips_and_names_its_format() -> None:
    X, y = data()
    record = describe_preprocessing(pipeline().fit(X, y))
    raw = json.loads(record.to_json())
    assert (raw["format"], raw["version"]) == ("modeldeploy.preprocessing", 1)
    assert set(raw["steps"][0]) == {"name", "class", "params", "columns", "steps"}
    assert Preprocessing.from_json(record.to_json()) == record
    with pytest.raises(PreprocessingError, match="version"):
        Preprocessing.from_dict({**raw, "version": 2})


def test_run_tag_summarises_the_top_level_steps() -> None:
    record = describe_preprocessing(pipeline())
    tag = json.loads(record.tag_value())
    assert tag.pop("sha256") == hashlib.sha256(record.to_json().encode()).hexdigest()
    assert tag == {
        "artifact": names.PREPROCESSING_ARTIFACT,
        "steps": 2,
        "classes": [
            "sklearn.compose._column_transformer.ColumnTransformer",
            "sklearn.linear_model._logistic.LogisticRegression",
        ],
    }


def test_tracking_imports_neither_sklearn_nor_mlflow() -> None:
    code = (
        "import sys, modeldeploy.tracking; print(sorted({'sklearn', 'mlflow'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_records_that_flatten_to_the_same_params_still_differ() -> None:
    """Params are cut at MLflow's limits and join names with dots; the record's digest, which
    decides whether a run already holds "the same" preprocessing, sees every difference."""
    long_a, long_b = "x" * 7000 + "a", "x" * 7000 + "b"
    a = Preprocessing((PreprocessingStep("s", "m.C", {"p": long_a}),))
    b = Preprocessing((PreprocessingStep("s", "m.C", {"p": long_b}),))
    assert a.params() == b.params()
    assert a.digest() != b.digest()
