"""examples/train.py, the script data scientists copy, run as they run it against the real
MLflow server: it must keep working and keep recording everything lineage reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import requests
from mlflow import MlflowClient

from modeldeploy import names
from modeldeploy.tracking import read_preprocessing
from tests.conftest import REPO


def test_the_example_training_script_registers_a_version_with_its_whole_lineage(
    mlflow_uri: str, pushgateway_url: str
) -> None:
    model = f"example-{uuid.uuid4().hex[:8]}"
    done = subprocess.run(
        [sys.executable, str(REPO / "examples/train.py"), "--model", model],
        env=dict(os.environ, MLFLOW_TRACKING_URI=mlflow_uri, PUSHGATEWAY_URL=pushgateway_url),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "1"  # the new version, last, for scripts

    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    run = client.get_run(client.get_model_version(model, "1").run_id)
    train = json.loads(run.data.tags[names.TAG_DATASET + "wine-train"])
    test = json.loads(run.data.tags[names.TAG_DATASET + "wine-test"])
    assert train["rows"] + test["rows"] == 178  # the wine data set, split
    assert train["hash"] != test["hash"] and train["hashAlgorithm"] == "sha256-columns-v1"
    assert (train["context"], test["context"]) == ("training", "evaluation")
    assert {d.dataset.name for d in run.inputs.dataset_inputs} == {"wine-train", "wine-test"}

    steps = read_preprocessing(run.info.run_id, tracking_uri=mlflow_uri).steps
    assert [s.name for s in steps] == ["prepare", "classify"]
    assert set(run.data.metrics) >= {"accuracy", "precision", "recall", "f1", "log_loss"}
    assert run.data.metrics["accuracy"] > 0.8
    baseline = json.loads(run.data.tags[names.TAG_DRIFT_BASELINE])
    assert baseline["features"] == 13

    # Its stages were monitored: pushed to the Pushgateway, and the training stage into the run.
    assert run.data.tags["pipeline.training.outcome"] == "success"
    assert run.data.metrics["pipeline.training.rows_in"] == train["rows"]
    pushed = requests.get(f"{pushgateway_url}/metrics", timeout=5).text
    for stage in ("etl", "training"):
        ok = f'{names.PIPELINE_STAGE_SUCCESS}{{instance="",job="{names.PIPELINE_JOB}",'
        assert f'{ok}pipeline="{model}",stage="{stage}"}} 1' in pushed, stage
    delete = f"{pushgateway_url}/metrics/job/{names.PIPELINE_JOB}/pipeline/{model}/stage"
    for stage in ("etl", "training"):  # leave no series behind for other tests' alerts
        requests.delete(f"{delete}/{stage}", timeout=5)
