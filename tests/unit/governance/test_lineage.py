"""Lineage gathered from the fakes: every section present, in the documented order, and what
could not be read said in warnings instead of a crash."""

from __future__ import annotations

import json
from pathlib import Path

from modeldeploy import names
from modeldeploy.governance import lineage, lineage_text
from modeldeploy.governance.actions import MlflowRegistry
from tests.unit.governance.conftest import DATASET, REGISTRY, RUN_ID, STEPS, World

SECTIONS = ["datasets", "preprocessing", "run", "modelVersion", "deployments"]


def gather(world: World, version: str = "3", **kwargs: object) -> lineage.Lineage:
    reg = MlflowRegistry(world.mlflow, REGISTRY)
    return lineage.gather(reg, world.cluster, "fraud", version, **kwargs)  # type: ignore[arg-type]


def test_lineage_json_has_every_section_in_order(world: World):
    doc = gather(world).to_dict()

    assert list(doc) == [
        "format",
        "version",
        "model",
        "registry",
        *SECTIONS,
        "cluster",
        "warnings",
    ]
    assert (doc["format"], doc["version"]) == ("modeldeploy.lineage", 1)
    assert doc["model"] == {"name": "fraud", "version": "3"}
    assert doc["datasets"] == [{**DATASET, "schemaTruncated": False}]
    assert doc["preprocessing"]["steps"] == STEPS
    assert doc["preprocessing"]["artifact"] == names.PREPROCESSING_ARTIFACT
    assert doc["warnings"] == [] and doc["cluster"] == {"read": True, "error": None}
    json.dumps(doc)  # serialisable as it is


def test_the_run_section_has_params_metrics_and_the_git_commit(world: World):
    run = gather(world).to_dict()["run"]
    assert run["id"] == RUN_ID
    assert run["params"] == {
        "C": "0.5",
        "max_iter": "200",
        "preprocessing.scale.class": "sklearn.preprocessing.StandardScaler",
        "preprocessing.scale.with_mean": "true",
    }
    assert run["metrics"] == {"accuracy": 0.93, "auc": 0.97}
    assert run["gitCommit"] == "0123456789abcdef"
    assert run["source"] == "train.py"
    assert run["driftBaseline"]["features"] == 2


def test_the_model_version_section_has_approvals_promotions_aliases_and_audit(world: World):
    mv = gather(world).to_dict()["modelVersion"]
    assert mv["aliases"] == ["production", "staging"]
    assert mv["approvals"] == [
        {"stage": "production", "by": "alice", "at": "2026-12-02T12:05:00.000Z",
         "note": "offline eval ok"}
    ]  # fmt: skip
    assert mv["promotions"][0]["from"] == "staging" and mv["promotions"][0]["previous"] == "2"
    assert [a["action"] for a in mv["audit"]] == ["approve", "promote", "deploy", "rollback"]
    assert mv["audit"][-1]["alert"] == "ModelHighErrorRate"
    assert mv["rejected"].startswith("prod/fraud")
    assert mv["createdAt"] == "2025-12-02T12:00:00.000Z"


def test_deployments_that_served_the_version_with_rollouts_and_the_rollback(world: World):
    deps = gather(world).to_dict()["deployments"]

    assert [(d["namespace"], d["name"]) for d in deps] == [("prod", "fraud")]  # not the shadow
    rollouts = deps[0]["rollouts"]
    assert [(r["kind"], r["version"], r["outcome"], r["alert"]) for r in rollouts] == [
        ("rollout", "2", "Superseded", None),
        ("rollout", "3", "RolledBack", "ModelHighErrorRate"),
        ("rollback", "2", "Succeeded", "ModelHighErrorRate"),
    ]
    assert deps[0]["events"][0]["reason"] == "RolledBack"
    assert deps[0]["servingVersion"] == "2" and deps[0]["phase"] == "RolledBack"


def test_a_deployment_target_picks_the_serving_version_and_its_registry(world: World):
    target = lineage.deployment_target(world.cluster, "prod", "fraud")
    assert (target.model, target.version, target.tracking_uri) == ("fraud", "2", REGISTRY)

    doc = gather(world, "2", first=target).to_dict()
    assert [d["name"] for d in doc["deployments"]] == ["fraud"]


def test_nothing_serving_falls_back_to_the_resolved_version(world: World):
    world.cluster.add_md("dev", "new", "fraud", {"resolvedVersion": "3"})
    assert lineage.deployment_target(world.cluster, "dev", "new").version == "3"


def test_an_unreachable_cluster_leaves_the_mlflow_part_whole(world: World):
    world.cluster.down = True
    doc = gather(world).to_dict()

    assert doc["deployments"] == []
    assert doc["cluster"]["read"] is False and "connection refused" in doc["cluster"]["error"]
    assert any("cluster part is missing" in w for w in doc["warnings"])
    assert doc["run"]["id"] == RUN_ID and doc["modelVersion"]["approvals"]


def test_events_that_cannot_be_read_leave_the_deployments(world: World):
    world.cluster.events_forbidden = True
    doc = gather(world).to_dict()
    assert doc["cluster"]["read"] is True and doc["deployments"][0]["events"] == []
    assert doc["deployments"][0]["rollouts"]
    assert any("Events of prod/fraud were not read" in w for w in doc["warnings"])


def test_a_version_without_a_run_says_so(world: World):
    version = world.mlflow.add_version("fraud", source="s3://models/fraud/4")
    doc = gather(world, version).to_dict()
    assert doc["run"] is None and doc["datasets"] == [] and doc["preprocessing"] is None
    assert any(
        "no training run (registered from s3://models/fraud/4)" in w for w in doc["warnings"]
    )


def test_a_deleted_run_says_so(world: World):
    del world.mlflow.runs[RUN_ID]
    doc = gather(world).to_dict()
    assert doc["run"] is None
    assert any(f"training run {RUN_ID}" in w and "gone" in w for w in doc["warnings"])


def test_unreadable_records_are_skipped_with_a_warning(world: World):
    run = world.mlflow.runs[RUN_ID]
    run["tags"][names.TAG_DATASET + "broken"] = "{oops"
    del world.mlflow.artifacts[(RUN_ID, names.PREPROCESSING_ARTIFACT)]
    doc = gather(world).to_dict()
    assert [d["name"] for d in doc["datasets"]] == ["train"]
    assert doc["preprocessing"]["steps"] == [] and doc["preprocessing"]["summary"]["steps"] == 1
    assert any("dataset.broken" in w for w in doc["warnings"])
    assert any("no preprocessing artifact" in w for w in doc["warnings"])


def test_text_has_the_sections_in_order_one_line_per_item(world: World):
    text = lineage_text.render_text(gather(world))
    lines = text.splitlines()

    heads = ["datasets:", "preprocessing (", "training run ", "model version ", "deployments:"]
    positions = [next(i for i, line in enumerate(lines) if line.startswith(h)) for h in heads]
    assert positions == sorted(positions)
    assert any("train (training): s3://data/fraud/train.parquet sha256:9f86" in x for x in lines)
    assert '    scale: sklearn.preprocessing.StandardScaler columns=["amount"]' in text
    assert "  code: git 0123456789abcdef (train.py)" in lines
    assert "  param C = 0.5" in lines and "  metric auc = 0.97" in lines
    # The preprocessing.* params are the preprocessing section again: named once, not repeated.
    assert not any(x.startswith("  param preprocessing.") for x in lines)
    assert "  (2 preprocessing.* params: the preprocessing above)" in lines
    assert any(x.startswith("  approved for production by alice") for x in lines)
    assert any("rollback version 2" in x and "[alert ModelHighErrorRate]" in x for x in lines)


# The JSON format is an API: its keys are pinned here and each is documented.
DOCUMENTED = Path(__file__).resolve().parents[3] / "docs" / "governance.md"
KEYS = {
    "": ["format", "version", "model", "registry", *SECTIONS, "cluster", "warnings"],
    "datasets[]": ["name", "source", "hash", "hashAlgorithm", "rows", "columns", "schema",
                   "schemaTruncated", "loggedAt", "context", "targets"],
    "preprocessing": ["artifact", "summary", "steps"],
    "preprocessing.steps[]": ["name", "class", "params", "columns", "steps"],
    "run": ["id", "name", "experimentId", "status", "startTime", "endTime", "user", "gitCommit",
            "source", "params", "metrics", "driftBaseline"],
    "modelVersion": ["name", "version", "source", "runId", "modelId", "createdAt", "description",
                     "legacyStage", "aliases", "approvals", "promotions", "audit", "rejected"],
    "deployments[]": ["namespace", "name", "model", "selector", "servingVersion",
                      "resolvedVersion", "phase", "rollouts", "events"],
    "rollouts[]": ["kind", "version", "model", "startedAt", "finishedAt", "outcome", "reason",
                   "alert", "runId"],
    "events[]": ["time", "type", "reason", "message", "count"],
    "cluster": ["read", "error"],
}  # fmt: skip


def test_the_lineage_json_keys_are_pinned_and_documented(world: World):
    doc = gather(world).to_dict()
    dep = doc["deployments"][0]
    found = {
        "": list(doc),
        "datasets[]": list(doc["datasets"][0]),
        "preprocessing": list(doc["preprocessing"]),
        "preprocessing.steps[]": list(doc["preprocessing"]["steps"][0]),
        "run": list(doc["run"]),
        "modelVersion": list(doc["modelVersion"]),
        "deployments[]": list(dep),
        "rollouts[]": list(dep["rollouts"][0]),
        "events[]": list(dep["events"][0]),
        "cluster": list(doc["cluster"]),
    }
    assert found == KEYS
    text = DOCUMENTED.read_text(encoding="utf-8")
    missing = sorted({k for keys in KEYS.values() for k in keys if f"`{k}`" not in text})
    assert not missing, f"docs/governance.md does not document {missing}"


def test_a_canary_rolled_back_by_its_analysis_names_the_analysis_as_its_alert() -> None:
    from modeldeploy.api.status import HistoryEntry
    from modeldeploy.rollout.rollback import Rollback
    from tests.unit.operator.test_rollback import alert

    why = Rollback("3", "2", alert("3", names.CANARY_ANALYSIS)).why
    entry = HistoryEntry("3", "2026-01-01T00:00:00Z", "RolledBack", reason=why)
    rollout = lineage._rollout(entry, "m")
    assert (rollout.kind, rollout.alert) == ("rollout", names.CANARY_ANALYSIS)
    back = lineage._rollout(
        HistoryEntry("2", "2026-01-01T00:00:00Z", "Succeeded", reason=f"rollback: {why}"), "m"
    )
    assert (back.kind, back.alert) == ("rollback", names.CANARY_ANALYSIS)
