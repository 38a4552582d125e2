"""`modeldeploy lineage` against the real MLflow server and API server: a training run with its
records, a version approved and promoted with the CLI, the operator's audit tags, and a
ModelDeployment whose status history holds a rollout and the rollback an alert caused."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from stack import free_port

from modeldeploy import names
from modeldeploy.governance import records
from tests.conftest import DEFAULT_EXPERIMENT
from tests.integration.governance.conftest import Cli, Kube, Models

GIT_COMMIT = "4f2a9c1e0b7d3a5f6e8c9b0a1d2e3f4a5b6c7d8e"
DATASET = {
    "name": "train",
    "source": "s3://data/fraud/train.parquet",
    "hash": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "hashAlgorithm": "sha256",
    "rows": 1000,
    "columns": 3,
    "schema": [
        {"name": "amount", "type": "double"},
        {"name": "country", "type": "string"},
        {"name": "label", "type": "long"},
    ],
    "loggedAt": "2026-12-01T09:00:00.000Z",
    "context": "training",
    "targets": "label",
}
STEPS = [
    {
        "name": "scale",
        "class": "sklearn.preprocessing.StandardScaler",
        "params": {"with_mean": True},
        "columns": ["amount"],
        "steps": [],
    },
    {
        "name": "encode",
        "class": "sklearn.preprocessing.OneHotEncoder",
        "params": {"handle_unknown": "ignore"},
        "columns": ["country"],
        "steps": [],
    },
]


@pytest.fixture
def trained(models: Models) -> tuple[str, str]:
    """A model with version 1 (plain) and version 2 from a run with every record."""
    import mlflow

    mlflow.set_tracking_uri(models.uri)
    name = models.new_model(versions=1)
    with mlflow.start_run(experiment_id=DEFAULT_EXPERIMENT) as run:
        mlflow.log_params({"C": 0.5, "max_iter": 200})
        mlflow.log_metrics({"accuracy": 0.93, "auc": 0.97})
        mlflow.set_tags(
            {
                names.TAG_DATASET + "train": json.dumps(DATASET),
                names.TAG_PREPROCESSING: json.dumps(
                    {"artifact": names.PREPROCESSING_ARTIFACT, "steps": 2, "classes": []}
                ),
                names.MLFLOW_GIT_COMMIT_TAG: GIT_COMMIT,
            }
        )
        doc = {"format": "modeldeploy.preprocessing", "version": 1, "steps": STEPS}
        mlflow.log_text(json.dumps(doc), names.PREPROCESSING_ARTIFACT)
        info = Models.log_model()
    version = models.add_version(name, info.model_uri, run.info.run_id, info.model_id)
    return name, version


def operator_audit(models: Models, name: str, version: str, md: str) -> None:
    """The audit tags the operator writes when it deploys a version and rolls it back (after
    the CLI's own, so the trail's order is known)."""
    now = datetime.now(UTC)
    why = f"ModelHighErrorRate fired for version {version}"
    for offset, action, extra in (
        (1, records.ACTION_DEPLOY, {"previous": "1"}),
        (2, records.ACTION_ROLLBACK, {"alert": "ModelHighErrorRate", "to": "1", "reason": why}),
    ):
        at = now + timedelta(seconds=offset)
        details = {"modeldeployment": md, **extra}
        record = records.AuditRecord(action, records.timestamp(at), records.OPERATOR_ACTOR, details)
        key = records.audit_key(record, at, "0a0a")
        models.client.set_model_version_tag(name, version, key, record.to_json())
    models.client.set_model_version_tag(
        name, version, names.TAG_REJECTED, f"{md}: ModelHighErrorRate at {records.timestamp(now)}"
    )


def history(name: str, version: str) -> list[dict[str, Any]]:
    why = f"ModelHighErrorRate fired for version {version}"
    return [
        {"version": "1", "startedAt": "2026-12-02T10:00:00.000Z", "outcome": "Superseded",
         "finishedAt": "2026-12-02T12:10:00.000Z", "model": name},
        {"version": version, "startedAt": "2026-12-02T12:10:00.000Z", "outcome": "RolledBack",
         "finishedAt": "2026-12-02T12:20:00.000Z", "model": name, "reason": why},
        {"version": "1", "startedAt": "2026-12-02T12:20:00.000Z", "outcome": "Succeeded",
         "finishedAt": "2026-12-02T12:20:30.000Z", "model": name, "reason": f"rollback: {why}"},
    ]  # fmt: skip


@pytest.fixture
def deployed(
    trained: tuple[str, str], cli: Cli, models: Models, kube: Kube, namespace: str
) -> tuple[str, str, str]:
    """Version 2 approved and promoted with the CLI, deployed, rolled back to version 1."""
    name, version = trained
    assert cli("approve", name, version, "--stage", "production", "--note", "eval ok").code == 0
    assert cli("promote", name, "--version", version, "--to", "staging").code == 0
    assert cli("promote", name, "--from", "staging", "--to", "production").code == 0
    md = f"fraud-{uuid.uuid4().hex[:4]}"
    operator_audit(models, name, version, f"{namespace}/{md}")
    status = {
        "phase": "RolledBack",
        "selector": "@production",
        "servingVersion": "1",
        "resolvedVersion": version,
        "history": history(name, version),
    }
    spec = {"model": {"name": name, "alias": "production"}}
    kube.create_md(namespace, md, spec, status)
    kube.event(
        namespace,
        md,
        "RolledBack",
        f"rolled back from version {version} to 1",
        "2026-12-02T12:20:00Z",
    )
    return name, version, md


def test_lineage_of_a_model_version_in_json(
    cli: Cli, deployed: tuple[str, str, str], namespace: str
):
    name, version, md = deployed

    res = cli("lineage", name, version, "--namespace", namespace, "-o", "json")

    assert res.code == 0, res.err
    doc = res.json()
    sections = ["datasets", "preprocessing", "run", "modelVersion", "deployments"]
    assert [k for k in doc if k in sections] == sections  # the documented order
    assert (doc["format"], doc["version"]) == ("modeldeploy.lineage", 1)
    assert doc["model"] == {"name": name, "version": version}
    assert doc["datasets"] == [{**DATASET, "schemaTruncated": False}]
    assert doc["preprocessing"]["steps"] == STEPS
    run = doc["run"]
    assert run["params"] == {"C": "0.5", "max_iter": "200"}
    assert run["metrics"] == {"accuracy": 0.93, "auc": 0.97}
    assert run["gitCommit"] == GIT_COMMIT

    mv = doc["modelVersion"]
    assert [(a["stage"], a["by"], a["note"]) for a in mv["approvals"]] == [
        ("production", "it-user", "eval ok")
    ]
    assert {(p["stage"], p["from"]) for p in mv["promotions"]} == {
        ("staging", "version"),
        ("production", "staging"),
    }
    assert mv["aliases"] == ["production", "staging"]
    trail = [(a["action"], a["by"]) for a in mv["audit"]]
    assert trail[:3] == [("approve", "it-user"), ("promote", "it-user"), ("promote", "it-user")]
    assert trail[3:] == [("deploy", "modeldeploy-operator"), ("rollback", "modeldeploy-operator")]
    assert (mv["audit"][-1]["alert"], mv["audit"][-1]["to"]) == ("ModelHighErrorRate", "1")
    assert mv["rejected"].startswith(f"{namespace}/{md}")

    [dep] = doc["deployments"]
    assert (dep["namespace"], dep["name"], dep["servingVersion"]) == (namespace, md, "1")
    assert [(r["kind"], r["version"], r["outcome"], r["alert"]) for r in dep["rollouts"]] == [
        ("rollout", "1", "Superseded", None),
        ("rollout", version, "RolledBack", "ModelHighErrorRate"),
        ("rollback", "1", "Succeeded", "ModelHighErrorRate"),
    ]
    assert [e["reason"] for e in dep["events"]] == ["RolledBack"]
    assert doc["cluster"] == {"read": True, "error": None} and doc["warnings"] == []


def test_lineage_of_a_model_deployment_in_text(
    cli: Cli, deployed: tuple[str, str, str], namespace: str
):
    name, _, md = deployed

    res = cli("lineage", f"{namespace}/{md}")

    assert res.code == 0, res.err
    lines = res.out.splitlines()
    # The ModelDeployment serves version 1 now (rolled back): that is the version shown.
    assert lines[0].startswith(f"lineage of {name} version 1 ")
    assert "training run: none" not in res.out
    heads = ["datasets", "preprocessing", "training run", "model version", "deployments:"]
    positions = [next(i for i, x in enumerate(lines) if x.startswith(h)) for h in heads]
    assert positions == sorted(positions)
    assert any(x.strip().startswith(f"{namespace}/{md} (model {name}, @production)") for x in lines)
    assert any(
        "[alert ModelHighErrorRate]" in x and x.strip().startswith("rollback") for x in lines
    )

    res = cli("lineage", f"{namespace}/{md}", "-o", "json")
    assert res.json()["model"] == {"name": name, "version": "1"}


def test_lineage_of_a_version_names_its_run_records_in_text(cli: Cli, trained: tuple[str, str]):
    name, version = trained
    res = cli("lineage", name, version)
    assert res.code == 0, res.err
    assert f"  code: git {GIT_COMMIT}" in res.out
    assert "  train (training): s3://data/fraud/train.parquet sha256:9f86d0" in res.out
    assert '  scale: sklearn.preprocessing.StandardScaler columns=["amount"]' in res.out
    assert "  metric auc = 0.97" in res.out


def test_unreachable_cluster_still_prints_the_mlflow_part(
    cli: Cli, trained: tuple[str, str], tmp_path: Path
):
    name, version = trained
    kubeconfig = tmp_path / "dead.kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "dead", "cluster": {"server": f"https://127.0.0.1:{free_port()}"}}
                ],
                "users": [{"name": "u", "user": {"token": "x"}}],
                "contexts": [{"name": "dead", "context": {"cluster": "dead", "user": "u"}}],
                "current-context": "dead",
            }
        )
    )

    res = cli("lineage", name, version, "-o", "json", KUBECONFIG=str(kubeconfig))

    assert res.code == 0, res.err
    doc = res.json()
    assert doc["cluster"]["read"] is False and doc["deployments"] == []
    assert doc["run"]["gitCommit"] == GIT_COMMIT
    assert "modeldeploy lineage: warning: the cluster part is missing" in res.err

    res = cli("lineage", "default/anything", KUBECONFIG=str(kubeconfig))
    assert res.code == 4 and "cluster" in res.err


def test_a_version_registered_from_a_path_has_no_run(cli: Cli, models: Models):
    name = models.new_model(versions=0)
    version = models.add_version(name, source="s3://models/fraud/7")

    res = cli("lineage", name, version, "-o", "json")

    assert res.code == 0, res.err
    assert res.json()["run"] is None
    assert "has no training run (registered from s3://models/fraud/7)" in res.err


def test_unknown_model_deployment_or_version_exit_3(
    cli: Cli, trained: tuple[str, str], namespace: str
):
    name, _ = trained
    res = cli("lineage", f"{namespace}/nothing-here")
    assert res.code == 3 and f"ModelDeployment {namespace}/nothing-here not found" in res.err
    res = cli("lineage", name, "99", "-o", "json")
    assert res.code == 3 and "version 99" in res.json()["error"]
