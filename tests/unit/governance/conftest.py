"""One story for the lineage and CLI tests: `fraud` version 3 trained on a recorded dataset with
recorded preprocessing, approved and promoted to production, deployed by the operator, rolled
back when ModelHighErrorRate fired, with version 2 serving again."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from modeldeploy import names
from modeldeploy.governance import cli
from modeldeploy.governance.lineage import Event
from tests.unit.governance.fakes import FakeCluster, FakeMlflow

RUN_ID = "a1b2c3d4e5f6"
REGISTRY = "http://registry.test"
DATASET = {
    "name": "train",
    "source": "s3://data/fraud/train.parquet",
    "hash": "9f86d081884c7d65",
    "hashAlgorithm": "sha256",
    "rows": 1000,
    "columns": 3,
    "schema": [{"name": "amount", "type": "double"}, {"name": "label", "type": "long"}],
    "loggedAt": "2026-12-01T09:00:00.000Z",
    "context": "training",
    "targets": "label",
}
STEPS = [
    {
        "name": "columns",
        "class": "sklearn.compose.ColumnTransformer",
        "params": {"remainder": "drop"},
        "columns": None,
        "steps": [
            {
                "name": "scale",
                "class": "sklearn.preprocessing.StandardScaler",
                "params": {"with_mean": True},
                "columns": ["amount"],
                "steps": [],
            }
        ],
    }
]
HISTORY = [
    {"version": "2", "startedAt": "2026-12-02T10:00:00.000Z", "outcome": "Superseded",
     "finishedAt": "2026-12-02T12:10:00.000Z", "model": "fraud"},
    {"version": "3", "startedAt": "2026-12-02T12:10:00.000Z", "outcome": "RolledBack",
     "finishedAt": "2026-12-02T12:20:00.000Z", "model": "fraud", "runId": RUN_ID,
     "reason": "ModelHighErrorRate fired for version 3"},
    {"version": "2", "startedAt": "2026-12-02T12:20:00.000Z", "outcome": "Succeeded",
     "finishedAt": "2026-12-02T12:20:30.000Z", "model": "fraud",
     "reason": "rollback: ModelHighErrorRate fired for version 3"},
]  # fmt: skip
STATUS = {"phase": "RolledBack", "selector": "@production", "servingVersion": "2",
          "resolvedVersion": "3", "history": HISTORY}  # fmt: skip


@dataclass
class World:
    mlflow: FakeMlflow
    cluster: FakeCluster


def _audit(stamp: str, action: str, **details: str) -> tuple[str, str]:
    body = {"action": action, "at": stamp, "by": details.pop("by", "modeldeploy-operator")}
    key = stamp.replace("-", "").replace(":", "")
    return f"{names.TAG_AUDIT}{key}.{action}.0001", json.dumps({**body, **details})


@pytest.fixture
def world() -> World:
    f = FakeMlflow()
    f.add_model("fraud", versions=3, run_id=RUN_ID)
    f.add_run(
        RUN_ID,
        params={
            "C": "0.5",
            "max_iter": "200",
            "preprocessing.scale.class": "sklearn.preprocessing.StandardScaler",
            "preprocessing.scale.with_mean": "true",
        },
        metrics={"accuracy": 0.93, "auc": 0.97},
        tags={
            names.TAG_DATASET + "train": json.dumps(DATASET),
            names.TAG_PREPROCESSING: json.dumps(
                {"artifact": names.PREPROCESSING_ARTIFACT, "steps": 1, "classes": ["x"]}
            ),
            names.TAG_DRIFT_BASELINE: json.dumps(
                {"modelId": "m-1", "artifact": "drift_baseline.json", "features": 2, "rows": 1000}
            ),
            names.MLFLOW_GIT_COMMIT_TAG: "0123456789abcdef",
            "mlflow.source.name": "train.py",
        },
    )
    f.artifacts[(RUN_ID, names.PREPROCESSING_ARTIFACT)] = json.dumps(
        {"format": "modeldeploy.preprocessing", "version": 1, "steps": STEPS}
    )
    tags = f.versions[("fraud", "3")]["tags"]
    tags[names.TAG_APPROVED + "production"] = json.dumps(
        {"by": "alice", "at": "2026-12-02T12:05:00.000Z", "note": "offline eval ok"}
    )
    tags[names.TAG_PROMOTED + "production"] = json.dumps(
        {"by": "bob", "at": "2026-12-02T12:09:00.000Z", "from": "staging", "previous": "2"}
    )
    for key, value in (
        _audit("2026-12-02T12:05:00.000Z", "approve", by="alice", stage="production"),
        _audit("2026-12-02T12:09:00.000Z", "promote", by="bob", stage="production"),
        _audit("2026-12-02T12:10:00.000Z", "deploy", modeldeployment="prod/fraud", previous="2"),
        _audit(
            "2026-12-02T12:20:00.000Z",
            "rollback",
            modeldeployment="prod/fraud",
            previous="2",
            alert="ModelHighErrorRate",
            reason="ModelHighErrorRate fired for version 3",
        ),
    ):
        tags[key] = value
    tags[names.TAG_REJECTED] = "prod/fraud: ModelHighErrorRate at 2026-12-02T12:20:00Z"
    f.models["fraud"]["aliases"].update({"production": "3", "staging": "3"})

    c = FakeCluster()
    c.add_md("prod", "fraud", "fraud", STATUS, registry=REGISTRY)
    c.add_md("other", "fraud-shadow", "fraud", {"servingVersion": "1", "history": []})
    c.md_events[("prod", "fraud")] = [
        Event("2026-12-02T12:20:00.000Z", "Warning", "RolledBack", "rolled back from 3 to 2"),
    ]
    return World(f, c)


class Runner:
    def __init__(self, world: World, capsys: pytest.CaptureFixture[str]) -> None:
        self.world = world
        self.capsys = capsys
        self.uris: list[str] = []

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        def client(uri: str) -> FakeMlflow:
            self.uris.append(uri)
            return self.world.mlflow

        code = cli.main(
            list(argv), client_factory=client, cluster_factory=lambda: self.world.cluster
        )
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *argv: str) -> tuple[int, Any, str]:
        code, out, err = self(*argv, "--output", "json")
        return code, json.loads(out), err


@pytest.fixture
def run(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Runner:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env.test")
    monkeypatch.setenv("MODELDEPLOY_USER", "carol")
    return Runner(world, capsys)
