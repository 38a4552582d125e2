"""Pre-flight checks on the real API server and the real MLflow registry: a version whose
artifacts are gone is not rolled out (and is once they are back); a rollback never goes to a
version the registry does not have, whether it was deleted or only ever existed in a
hand-written status history."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import stack as devstack

from tests.conftest import DEFAULT_EXPERIMENT
from tests.integration.operator.conftest import Kube, Registry, wait_for
from tests.integration.operator.test_alert_intake import deploy_two_versions, notification, post

ARTIFACT_ROOT = devstack.Stack().root / "mlflow" / "artifacts"  # `--artifacts-destination`


def fresh_version(registry: Registry, model: str) -> tuple[str, Path]:
    """A version with artifacts of its own (other versions share the session's), and the local
    directory the stack's MLflow keeps them in."""
    import mlflow
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x, y = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1])
    # MLflow's tracking URI is process-wide, and other tests point it at MLflow servers of their
    # own that are gone by now: log to the registry this test asks.
    mlflow.set_tracking_uri(registry.uri)
    with mlflow.start_run(experiment_id=DEFAULT_EXPERIMENT) as run:
        info = mlflow.sklearn.log_model(LogisticRegression().fit(x, y), name="model")
    mv = registry.client.create_model_version(
        model, info.model_uri, run_id=run.info.run_id, model_id=info.model_id
    )
    location = registry.client.get_model_version_download_uri(model, mv.version)
    parsed = urlparse(location)
    assert parsed.scheme == "mlflow-artifacts", location
    folder = ARTIFACT_ROOT / parsed.path.strip("/")
    assert (folder / "MLmodel").is_file(), folder
    return str(mv.version), folder


def template_version(kube: Kube, namespace: str, name: str) -> str:
    dep = kube.deployment(namespace, name)
    env = {e.name: e.value for e in dep.spec.template.spec.containers[0].env}
    return str(env["MODEL_VERSION"])


def degraded(kube: Kube, namespace: str, name: str, reason: str) -> Any:
    def check() -> dict[str, Any] | None:
        c = kube.condition(namespace, name, "Degraded")
        return c if (c.get("status"), c.get("reason")) == ("True", reason) else None

    return wait_for(check, 75, f"Degraded={reason}")


def test_version_without_artifacts_is_not_rolled_out_until_they_appear(
    kube: Kube, registry: Registry, start_operator: Any, namespace: str
) -> None:
    start_operator(namespace)
    model = registry.new_model(versions=1)
    registry.set_alias(model, "champion", "1")
    kube.create_md(namespace, "m", {"model": {"name": model, "alias": "champion"}})
    kube.wait_phase(namespace, "m", "Healthy", serving="1")

    version, folder = fresh_version(registry, model)
    hidden = folder.with_name(folder.name + ".hidden")
    folder.rename(hidden)  # the artifacts are gone
    try:
        registry.set_alias(model, "champion", version)
        cond = degraded(kube, namespace, "m", "ModelArtifactsMissing")
        assert f"version {version} cannot be rolled out" in cond["message"]
        st = kube.status(namespace, "m")
        assert (st["phase"], st["servingVersion"], st["resolvedVersion"]) == (
            "Degraded",
            "1",
            version,
        )
        assert [h["version"] for h in st["history"]] == ["1"]  # no rollout started
        assert template_version(kube, namespace, "m") == "1"  # the current version keeps serving
        (event,) = wait_for(lambda: kube.events(namespace, "PreflightFailed"), 10, "Event")
        assert event.type == "Warning" and f"version {version}" in event.message
    finally:
        hidden.rename(folder)  # the artifacts appear: the retry rolls the version out

    st = kube.wait_phase(namespace, "m", "Healthy", serving=version, timeout=60)
    assert [(h["version"], h["outcome"]) for h in st["history"]] == [
        ("1", "Succeeded"),
        (version, "Succeeded"),
    ]
    assert len(kube.events(namespace, "PreflightFailed")) == 1  # one per transition


def test_nothing_is_applied_for_a_version_whose_artifacts_were_deleted(
    kube: Kube, registry: Registry, start_operator: Any, namespace: str
) -> None:
    """Nothing serving yet: the version the selector names has no artifacts, nothing is applied
    and the phase says why."""
    start_operator(namespace)
    model = registry.new_model(versions=0)
    version, folder = fresh_version(registry, model)
    shutil.rmtree(folder)
    kube.create_md(namespace, "m", {"model": {"name": model, "version": version}})
    st = kube.wait_phase(namespace, "m", "Failed")
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "ModelArtifactsMissing"
    assert kube.deployment(namespace, "m") is None


def forge_history(kube: Kube, namespace: str, name: str, entries: list[dict[str, Any]]) -> None:
    """Rewrite status.history as anyone with status write access (or a restore) could."""
    kube.custom.patch_namespaced_custom_object_status(
        "modeldeploy.io",
        "v1alpha1",
        namespace,
        "modeldeployments",
        name,
        {"status": {"history": entries}},
    )


def test_rollback_never_targets_a_deleted_or_forged_version(
    kube: Kube, registry: Registry, start_operator: Any, namespace: str
) -> None:
    op = start_operator(namespace)
    model = deploy_two_versions(kube, registry, namespace, "m")
    st = kube.status(namespace, "m")
    v1, v2 = st["history"]
    forged = [
        v1,
        {**v1, "version": "99", "model": model},  # no such version
        {**v1, "version": "../../1", "model": model},  # not a version at all
        {**v1, "version": "1", "model": "someone-elses-model"},
        v2,
    ]
    forge_history(kube, namespace, "m", forged)
    registry.client.delete_model_version(model, "1")  # v1 gone from the registry

    post(op, notification(namespace, "m", "2"))
    cond = degraded(kube, namespace, "m", "NoHealthyVersion")
    assert "ModelHighErrorRate firing for version 2" in cond["message"]
    assert "version 1" in cond["message"] and "version 99" in cond["message"]
    st = kube.status(namespace, "m")
    assert (st["phase"], st["servingVersion"]) == ("Degraded", "2")
    assert not st.get("rejectedVersions")
    assert template_version(kube, namespace, "m") == "2"  # nothing changed: v2 keeps serving
    assert not kube.events(namespace, "RolledBack")
    assert [h["version"] for h in st["history"]] == [h["version"] for h in forged]


def test_rollback_skips_a_forged_entry_for_the_last_real_healthy_version(
    kube: Kube, registry: Registry, start_operator: Any, namespace: str
) -> None:
    op = start_operator(namespace)
    deploy_two_versions(kube, registry, namespace, "m")
    v1, v2 = kube.status(namespace, "m")["history"]
    forge_history(kube, namespace, "m", [v1, {**v1, "version": "99"}, v2])

    post(op, notification(namespace, "m", "2"))
    st = kube.wait_phase(namespace, "m", "RolledBack", serving="1")
    assert template_version(kube, namespace, "m") == "1"
    assert st["rejectedVersions"] == ["2"]
    rolled = next(c for c in st["conditions"] if c["type"] == "RolledBack")
    assert "from version 2 to 1" in rolled["message"]
