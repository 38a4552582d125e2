"""kstatus and the Argo CD health check on real ModelDeployments: one operator drives objects on
the shared stack into every state issue 13 names (Healthy; Progressing; a canary step;
RolledBack; Degraded; Failed; awaiting an approval; an edited spec the operator has not seen;
an object it has not written yet), and then

* sigs.k8s.io/cli-utils' own kstatus (dev/kstatus, built at the pinned version) must compute
  the verdict docs/gitops.md promises for each: Current only for the spec served;
* health.lua (Argo CD's way, real Lua) must give each fresh object the same verdict as the
  committed testdata file of its state (digits aside: versions and counts), and the fresh
  object's phase and conditions must be the ones that file holds, so the testdata keep the
  shape the operator writes now.

MODELDEPLOY_CAPTURE_TESTDATA=1 rewrites the testdata from this run instead (review the diff and
health_test.yaml's messages by hand before committing)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, Cluster, unavailable, wait_for
from tests.integration.gitops.argocd import HEALTH_DIR, health, load
from tests.integration.gitops.test_argocd_health import EXPECTED
from tests.integration.operator.conftest import Kube, Registry
from tests.integration.operator.test_alert_intake import notification, post

CAPTURE = os.environ.get("MODELDEPLOY_CAPTURE_TESTDATA") == "1"
UNMATCHED = {"modeldeploy.io/test-no-such-node": "true"}  # pods stay Pending: a rollout under way

# What kstatus must compute for each state (docs/gitops.md).
KSTATUS = {
    "healthy": "Current",
    "progressing": "InProgress",
    "canary_step": "InProgress",
    "rolled_back": "Failed",
    "degraded": "Failed",
    "failed": "Failed",
    "awaiting_approval": "Failed",
    "stale_generation": "InProgress",
    # kstatus' documented blind spot: an object no controller has written is Current to it.
    # Argo CD's check says Progressing; docs/gitops.md says what Flux users see.
    "no_status": "Current",
}


@pytest.fixture(scope="session")
def kstatus_binary() -> str:
    done = subprocess.run(
        [str(REPO / "dev" / "build-tools.sh"), "--kstatus"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        unavailable(
            f"dev/build-tools.sh --kstatus failed (Go and its module proxy needed):\n"
            f"{done.stderr[-2000:]}"
        )
    return done.stdout.strip().splitlines()[-1]


def kstatus(binary: str, objects: dict[str, dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """cli-utils' status.Compute for each object: {state: (status, message)}."""
    items = list(objects.values())
    done = subprocess.run(
        [binary],
        input=json.dumps({"items": items}),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    return {state: (v["status"], v["message"]) for state, v in zip(objects, lines, strict=True)}


def sanitize(obj: dict[str, Any], namespace: str, models: list[str]) -> dict[str, Any]:
    """A captured object as testdata: server-side metadata dropped, the test's random names,
    times and run ids replaced by fixed ones."""
    meta = obj["metadata"]
    kept = {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "generation": meta["generation"],
        },
        "spec": obj["spec"],
    }
    if "status" in obj:
        kept["status"] = obj["status"]
    text = json.dumps(kept)
    text = text.replace(namespace, "ml-prod")
    for model in models:
        text = text.replace(model, "fraud-detector")
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "2026-01-01T00:00:00Z", text)
    text = re.sub(r"\b[0-9a-f]{32}\b", "5f0c6b1e2d3a4c5b9e8f7a6b5c4d3e2f", text)
    out = json.loads(text)
    assert isinstance(out, dict)
    return out


def shape(obj: dict[str, Any]) -> tuple[Any, ...]:
    """What a health check reads: the phase and each condition's type, status and reason."""
    st = obj.get("status") or {}
    conditions = sorted((c["type"], c["status"], c["reason"]) for c in st.get("conditions", []))
    return (st.get("phase"), conditions)


def masked(verdict: tuple[str, str]) -> tuple[str, str]:
    return verdict[0], re.sub(r"\d+", "N", verdict[1])


def phase(kube: Kube, namespace: str, name: str, want: str, serving: str | None = None) -> None:
    kube.wait_phase(namespace, name, want, timeout=90, serving=serving)


def test_kstatus_and_argo_cd_read_the_status_the_operator_writes(
    kube: Kube,
    registry: Registry,
    start_operator: Any,
    namespace: str,
    cluster: Cluster,
    kstatus_binary: str,
    prometheus_url: str,
) -> None:
    two = {s: registry.new_model(versions=2) for s in ("canary_step", "rolled_back")}
    one = {
        s: registry.new_model(versions=1)
        for s in ("healthy", "progressing", "degraded", "failed", "awaiting_approval")
    }
    models = {**two, **one}
    for model in models.values():
        registry.set_alias(model, "champion", "1")

    def champion(state: str, **extra: Any) -> dict[str, Any]:
        return {"model": {"name": models[state], "alias": "champion"}, **extra}

    specs = {
        "healthy": champion("healthy", serving={"replicas": 2}),
        "progressing": champion("progressing", serving={"replicas": 2, "nodeSelector": UNMATCHED}),
        "canary_step": champion(
            "canary_step",
            serving={"replicas": 2},
            strategy={
                "type": "Canary",
                "canary": {"steps": [{"weight": 10, "duration": "10s"}, {"weight": 50}]},
                "analysis": {"interval": "2s", "minRequests": 5},
            },
        ),
        "rolled_back": champion("rolled_back"),
        "degraded": champion("degraded"),
        "failed": {"model": {"name": models["failed"], "version": "7"}},
        "awaiting_approval": {
            "model": {
                "name": models["awaiting_approval"],
                "alias": "champion",
                "requireApproval": "production",
            },
        },
    }
    names = {state: state.replace("_", "-") for state in [*specs, "stale_generation"]}
    for state, spec in specs.items():
        kube.create_md(namespace, names[state], spec)
    objects: dict[str, dict[str, Any]] = {}
    # No operator yet: the object as applied, which no controller has written to.
    objects["no_status"] = kube.md(namespace, names["healthy"])
    assert "status" not in objects["no_status"]

    # Canary steps are judged on the stack's Prometheus (no traffic here: the step holds as
    # Inconclusive; without a Prometheus it would hold as Unavailable, another shape).
    op = start_operator(namespace, extra_env={"MODELDEPLOY_PROMETHEUS_URL": prometheus_url})
    phase(kube, namespace, "healthy", "Healthy", serving="1")
    for state in ("canary_step", "rolled_back", "degraded"):
        phase(kube, namespace, names[state], "Healthy", serving="1")
    registry.set_alias(models["canary_step"], "champion", "2")
    registry.set_alias(models["rolled_back"], "champion", "2")
    assert post(op, notification(namespace, "degraded", "1")).ok  # nothing to go back to
    phase(kube, namespace, "rolled-back", "Healthy", serving="2")
    assert post(op, notification(namespace, "rolled-back", "2")).ok
    phase(kube, namespace, "rolled-back", "RolledBack", serving="1")
    phase(kube, namespace, "degraded", "Degraded", serving="1")
    phase(kube, namespace, "failed", "Failed")
    phase(kube, namespace, "awaiting-approval", "AwaitingApproval")
    # Every pod Pending on no node: the Deployment has created them and waits.
    wait_for(
        lambda: (
            (d := kube.deployment(namespace, "progressing")) is not None
            and (d.status.updated_replicas or 0) == 2
        ),
        60,
        "progressing: both pods created",
    )
    phase(kube, namespace, "progressing", "Progressing")
    # A canary step past its duration with no traffic to judge: it holds.
    wait_for(
        lambda: (
            (kube.status(namespace, "canary-step").get("canary") or {}).get("state") == "Holding"
        ),
        60,
        "canary step holding",
    )
    for state in specs:
        objects[state] = kube.md(namespace, names[state])

    # The spec edited while the operator is away: generation 2, status still of generation 1.
    op.stop()
    kube.custom.patch_namespaced_custom_object(
        "modeldeploy.io",
        "v1alpha1",
        namespace,
        "modeldeployments",
        "healthy",
        {"spec": {"serving": {"replicas": 3}}},
    )
    objects["stale_generation"] = kube.md(namespace, "healthy")
    assert objects["stale_generation"]["metadata"]["generation"] == 2
    assert objects["stale_generation"]["status"]["observedGeneration"] == 1

    # kstatus, cli-utils' own code, on the objects as the API server returned them.
    verdicts = kstatus(kstatus_binary, objects)
    assert {s: v[0] for s, v in verdicts.items()} == KSTATUS
    stalled = {c["type"]: c for c in objects["rolled_back"]["status"]["conditions"]}["Stalled"]
    assert verdicts["rolled_back"][1] == stalled["message"]
    assert "was rolled back; serving 1 until the selector moves" in stalled["message"]
    assert verdicts["stale_generation"][1] == (
        "ModelDeployment generation is 2, but latest observed generation is 1"
    )
    assert "1/2 holding" in verdicts["canary_step"][1]
    assert "modeldeploy approve" in verdicts["awaiting_approval"][1]
    for state, obj in objects.items():  # every status write observed the generation it read
        if state not in ("no_status", "stale_generation"):
            assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"], state

    fresh = {s: sanitize(o, namespace, list(models.values())) for s, o in objects.items()}
    if CAPTURE:
        header = (
            "# Captured from a real run by tests/integration/gitops/test_real_objects.py\n"
            "# (MODELDEPLOY_CAPTURE_TESTDATA=1); names, times and run ids replaced.\n"
        )
        for state, obj in fresh.items():
            (HEALTH_DIR / "testdata" / f"{state}.yaml").write_text(
                header + yaml.safe_dump(obj, sort_keys=False, width=100)
            )
        return
    for state, obj in fresh.items():
        name = f"testdata/{state}.yaml"
        committed = load(HEALTH_DIR / name)
        assert shape(obj) == shape(committed), f"{name} no longer has the shape written now"
        verdict = health(obj)
        assert verdict[0] == EXPECTED[name], (state, verdict)
        assert masked(verdict) == masked(health(committed)), state
