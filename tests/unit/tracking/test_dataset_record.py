"""The dataset record's JSON (what the lineage command reads) and MLflow's limits on it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd
import pytest
from mlflow.utils import validation

from modeldeploy import names
from modeldeploy.tracking import preprocessing, records
from modeldeploy.tracking.baseline import build_drift_baseline, lineage_tag
from modeldeploy.tracking.dataset import describe_dataset, log_dataset
from modeldeploy.tracking.records import (
    MAX_TAG_CHARS,
    MLFLOW_DIGEST_CHARS,
    DatasetError,
    DatasetVersion,
)

NOW = datetime(2026, 12, 2, 12, 0, 0, 123456, tzinfo=UTC)


def test_record_has_exactly_the_documented_fields() -> None:
    df = pd.DataFrame({"a": [1, 2], "y": [0, 1]})
    v = describe_dataset(df, name="iris", source="s3://b/iris.csv", targets="y", now=NOW)
    record = json.loads(v.tag_value())
    assert record == {
        "name": "iris",
        "source": "s3://b/iris.csv",
        "hash": v.hash,
        "hashAlgorithm": "sha256-columns-v1",
        "rows": 2,
        "columns": 2,
        "schema": [{"name": "a", "type": "int64"}, {"name": "y", "type": "int64"}],
        "loggedAt": "2026-12-02T12:00:00.123Z",
        "context": "training",
        "targets": "y",
    }
    assert len(v.hash) == 64 and v.hash == v.hash.lower()
    assert v.tag_key == "modeldeploy.io/dataset.iris" == names.TAG_DATASET + "iris"
    assert DatasetVersion.from_dict(record) == v
    assert v.tag_value() == json.dumps(record, separators=(",", ":"))


def test_a_wide_schema_is_cut_short_in_the_tag_only() -> None:
    df = pd.DataFrame({f"feature_with_a_long_name_{i:05d}": [0.0] for i in range(3000)})
    v = describe_dataset(df, name="wide", now=NOW)
    text = v.tag_value()
    record = json.loads(text)
    assert len(text) <= MAX_TAG_CHARS
    assert record["schemaTruncated"] is True and record["columns"] == 3000
    kept = record["schema"]
    assert 0 < len(kept) < 3000
    assert kept == v.to_dict()["schema"][: len(kept)]
    assert len(v.schema) == 3000  # the full schema stays in the record object and the input


def test_limits_are_mlflows() -> None:
    assert validation.MAX_DATASET_DIGEST_SIZE == MLFLOW_DIGEST_CHARS
    assert validation.MAX_TAG_VAL_LENGTH == MAX_TAG_CHARS
    assert validation.MAX_PARAM_VAL_LENGTH == records.MAX_PARAM_VALUE
    assert validation.MAX_ENTITY_KEY_LENGTH == records.MAX_PARAM_KEY
    v = describe_dataset(pd.DataFrame({"a": [1]}), name="d")
    assert len(v.mlflow_digest) == MLFLOW_DIGEST_CHARS and v.hash.startswith(v.mlflow_digest)


@pytest.mark.parametrize("name", ["", " lead", "a/b", "a:b", "x" * 201, "new\nline", "ends\n"])
def test_names_that_cannot_be_part_of_a_tag_key_are_refused(name: str) -> None:
    with pytest.raises(DatasetError, match="dataset name"):
        describe_dataset(pd.DataFrame({"a": [1]}), name=name)


def test_targets_must_be_a_column() -> None:
    with pytest.raises(DatasetError, match="'label' is not a column"):
        describe_dataset(pd.DataFrame({"a": [1]}), name="d", targets="label")


def test_logging_outside_a_run_is_refused() -> None:
    with pytest.raises(RuntimeError, match="active MLflow run"):
        log_dataset(pd.DataFrame({"a": [1]}), name="d")
    with pytest.raises(RuntimeError, match="active MLflow run"):
        preprocessing.log_preprocessing([{"name": "a", "class": "x.Y"}])


def test_drift_baseline_lineage_tag() -> None:
    baseline = build_drift_baseline(pd.DataFrame({"a": range(100), "b": ["x", "y"] * 50}))
    assert json.loads(lineage_tag(baseline, "m-123")) == {
        "modelId": "m-123",
        "artifact": "drift_baseline.json",
        "features": 2,
        "rows": 100,
    }
