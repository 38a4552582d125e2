"""modeldeploy.tracking against the real MLflow server: what a training run records is what
MLflow's API (and so its UI) shows, and what the lineage reader gets back."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modeldeploy import names
from modeldeploy.tracking import (
    DatasetVersion,
    PreprocessingError,
    log_dataset,
    log_drift_baseline,
    log_preprocessing,
    read_preprocessing,
)
from modeldeploy.tracking.records import json_safe


@pytest.fixture
def client(mlflow_uri: str) -> Iterator[MlflowClient]:
    """The tracking URI is process-wide: set it here, for this test, and use a fresh experiment."""
    mlflow.set_tracking_uri(mlflow_uri)
    mlflow.set_experiment(f"tracking-tests-{uuid.uuid4().hex[:8]}")
    yield MlflowClient(mlflow_uri)
    if mlflow.active_run() is not None:
        mlflow.end_run()


def frame(rows: int = 50_000) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    return pd.DataFrame(
        {
            "age": rng.normal(40, 10, rows),
            "city": rng.choice(["Oslo", "Rome", "Lima"], rows),
            "label": rng.integers(0, 2, rows),
        }
    )


def inputs_by_name(client: MlflowClient, run_id: str) -> dict[str, Any]:
    return {d.dataset.name: d for d in client.get_run(run_id).inputs.dataset_inputs}


@pytest.mark.filterwarnings("ignore:Starting with pandas version 4.0")  # in MLflow's digest
@pytest.mark.filterwarnings("ignore:Hint. Inferred schema")  # MLflow's own schema inference
def test_dataframe_dataset_is_an_mlflow_input_and_a_run_tag(client: MlflowClient) -> None:
    df = frame()
    df.loc[45_000, "age"] = np.nan  # missing only past the first rows
    with mlflow.start_run() as run:
        version = log_dataset(
            df, name="customers", source="s3://lake/customers/v3", targets="label"
        )

    got = inputs_by_name(client, run.info.run_id)["customers"]
    assert got.dataset.digest == version.hash[:36]
    assert (got.dataset.source_type, json.loads(got.dataset.source)) == (
        "s3",
        {"uri": "s3://lake/customers/v3"},
    )
    assert json.loads(got.dataset.profile)["num_rows"] == 50_000
    # The schema is inferred from the first rows (MLflow's own inference reads every value in
    # Python), but says what MLflow's would, `required` included.
    own = mlflow.data.from_pandas(df).schema.to_dict()
    assert json.loads(got.dataset.schema)["mlflow_colspec"] == own
    assert own[0] == {"type": "double", "name": "age", "required": False}
    tags = {t.key: t.value for t in got.tags}
    assert tags["mlflow.data.context"] == "training"
    assert tags["modeldeploy.hash"] == version.hash
    assert tags["modeldeploy.hashAlgorithm"] == "sha256-columns-v1"
    assert tags["modeldeploy.rows"] == "50000"

    raw = json.loads(client.get_run(run.info.run_id).data.tags[names.TAG_DATASET + "customers"])
    assert DatasetVersion.from_dict(raw) == version
    assert (raw["rows"], raw["columns"], raw["targets"]) == (50_000, 3, "label")


def test_a_change_at_row_40000_is_a_new_dataset_version_in_mlflow(client: MlflowClient) -> None:
    df = frame()
    changed = df.copy()
    changed.loc[40_000, "age"] += 1.0
    with mlflow.start_run() as run:
        first = log_dataset(df, name="before")
        second = log_dataset(changed, name="after")

    inputs = inputs_by_name(client, run.info.run_id)
    assert inputs["before"].dataset.digest != inputs["after"].dataset.digest
    assert first.hash != second.hash


def test_file_dataset_is_a_meta_dataset_with_our_digest(
    client: MlflowClient, tmp_path: Path
) -> None:
    path = tmp_path / "train.csv"
    frame(1000).to_csv(path, index=False)
    with mlflow.start_run() as run:
        version = log_dataset(path, name="train-file", context="training")

    got = inputs_by_name(client, run.info.run_id)["train-file"]
    assert got.dataset.digest == version.hash[:36]
    assert json.loads(got.dataset.source)["uri"] == str(path.resolve())
    schema = json.loads(got.dataset.schema)["mlflow_colspec"]
    assert [c["name"] for c in schema] == ["age", "city", "label"]
    tags = {t.key: t.value for t in got.tags}
    assert (tags["modeldeploy.hashAlgorithm"], tags["modeldeploy.rows"]) == ("sha256-file", "1000")
    raw = json.loads(client.get_run(run.info.run_id).data.tags[names.TAG_DATASET + "train-file"])
    assert (
        raw["hash"] == version.hash and raw["rows"] == 1000 and raw["source"] == str(path.resolve())
    )


def pipeline() -> Pipeline:
    prep = ColumnTransformer(
        [
            (
                "num",
                Pipeline(
                    [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
                ),
                ["age"],
            ),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
        ]
    )
    return Pipeline([("prep", prep), ("model", LogisticRegression(C=2.0, max_iter=300))])


def test_preprocessing_reads_back_as_the_pipelines_params(client: MlflowClient) -> None:
    df = frame(500)
    pipe = pipeline().fit(df[["age", "city"]], df["label"])
    with mlflow.start_run() as run:
        logged = log_preprocessing(pipe)

    back = read_preprocessing(run.info.run_id, tracking_uri=client.tracking_uri)
    assert back == logged
    prep, model = back.steps
    sk_prep = pipe.named_steps["prep"]
    expected = {
        ("model",): pipe.named_steps["model"],
        ("prep", "num", "impute"): sk_prep.named_transformers_["num"].named_steps["impute"],
        ("prep", "num", "scale"): sk_prep.named_transformers_["num"].named_steps["scale"],
        ("prep", "cat"): sk_prep.named_transformers_["cat"],
    }
    found = {
        ("model",): model,
        ("prep", "num", "impute"): prep.steps[0].steps[0],
        ("prep", "num", "scale"): prep.steps[0].steps[1],
        ("prep", "cat"): prep.steps[1],
    }
    for path, est in expected.items():
        step = found[path]
        assert step.class_name == f"{type(est).__module__}.{type(est).__qualname__}", path
        assert step.params == {k: json_safe(v) for k, v in est.get_params(deep=False).items()}
    assert (prep.steps[0].columns, prep.steps[1].columns) == (("age",), ("city",))

    run_data = client.get_run(run.info.run_id).data
    assert run_data.params["preprocessing.prep.num.impute.strategy"] == "median"
    assert run_data.params["preprocessing.model.C"] == "2.0"
    assert json.loads(run_data.tags[names.TAG_PREPROCESSING])["steps"] == 2


def test_a_run_records_one_preprocessing(client: MlflowClient) -> None:
    with mlflow.start_run() as run:
        log_preprocessing(pipeline())
        log_preprocessing(pipeline())  # the same again (a re-run cell): accepted
        with pytest.raises(PreprocessingError, match="already records a different preprocessing"):
            log_preprocessing(Pipeline([("scale", StandardScaler(with_std=False))]))
        with mlflow.start_run(nested=True) as child:
            log_preprocessing(Pipeline([("scale", StandardScaler(with_std=False))]))

    assert read_preprocessing(run.info.run_id).steps[0].name == "prep"
    assert read_preprocessing(child.info.run_id).steps[0].params["with_std"] is False


def test_a_different_preprocessing_with_the_same_params_is_refused(client: MlflowClient) -> None:
    """Two records whose params collide (values cut at MLflow's 6000 characters) are still two
    preprocessings: the second must not overwrite the first's artifact."""

    def steps(last: str) -> list[dict[str, object]]:
        return [{"name": "prep", "class": "x.Y", "params": {"p": "x" * 7000 + last}}]

    with mlflow.start_run() as run:
        log_preprocessing(steps("a"))
        with pytest.raises(PreprocessingError, match="already records a different preprocessing"):
            log_preprocessing(steps("b"))
    assert str(read_preprocessing(run.info.run_id).steps[0].params["p"]).endswith("a")


def test_drift_baseline_inside_a_run_is_part_of_its_lineage(client: MlflowClient) -> None:
    df = frame(300)
    model = LogisticRegression().fit(df[["age"]], df["label"])
    with mlflow.start_run() as run:
        log_dataset(df, name="train", targets="label")
        # Pinned requirements: inferring them would take seconds and is not under test.
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
        log_drift_baseline(df[["age", "city"]], model_id=info.model_id)

    tags = client.get_run(run.info.run_id).data.tags
    assert json.loads(tags[names.TAG_DRIFT_BASELINE]) == {
        "modelId": info.model_id,
        "artifact": "drift_baseline.json",
        "features": 2,
        "rows": 300,
    }
    assert names.TAG_DATASET + "train" in tags
    files = [f.path for f in client.list_logged_model_artifacts(info.model_id)]
    assert "drift_baseline.json" in files
