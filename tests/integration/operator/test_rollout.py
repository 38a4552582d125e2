"""The operator, run as users run it, against the real API server and the real MLflow registry."""

from __future__ import annotations

import subprocess
import time

from kubernetes.client.exceptions import ApiException

from tests.conftest import Cluster
from tests.integration.operator.conftest import Kube, Registry, wait_for


def test_champion_alias_deploys_version_and_reports_healthy_status(
    kube: Kube, registry: Registry, start_operator, namespace: str, cluster: Cluster
) -> None:
    model = registry.new_model(versions=2)
    registry.set_alias(model, "champion", "2")
    op = start_operator(namespace)
    kube.create_md(
        namespace,
        "fraud",
        {"model": {"name": model, "alias": "champion"}, "serving": {"replicas": 2}},
    )

    st = kube.wait_phase(namespace, "fraud", "Healthy", serving="2")
    assert st["resolvedVersion"] == "2"
    assert st["modelUri"] == f"models:/{model}/2"
    assert st["selector"] == "@champion"
    assert st["observedGeneration"] == 1
    conditions = {c["type"]: c for c in st["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Progressing"]["status"] == "False"
    assert conditions["Degraded"]["status"] == "False"
    assert conditions["RegistryReachable"]["status"] == "True"
    assert [(h["version"], h["outcome"]) for h in st["history"]] == [("2", "Succeeded")]

    dep = kube.deployment(namespace, "fraud")
    assert dep.status.available_replicas == 2
    env = {e.name: e.value for e in dep.spec.template.spec.containers[0].env}
    assert (env["MODEL_URI"], env["MODEL_NAME"], env["MODEL_VERSION"]) == (
        f"models:/{model}/2",
        model,
        "2",
    )
    assert dep.metadata.owner_references[0].kind == "ModelDeployment"
    assert kube.core.read_namespaced_service("fraud", namespace).spec.ports[0].port == 8080

    table = subprocess.run(
        [*cluster.kubectl, "get", "md", "-n", namespace], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    header = ["NAME", "MODEL", "SELECTOR", "SERVING", "PHASE", "CANARY", "STEP", "WEIGHT"]
    assert table[0].split() == [*header, "READY", "AGE"]
    # No canary runs: its three columns are empty.
    assert table[1].split()[:6] == ["fraud", model, "@champion", "2", "Healthy", "True"]
    healthy = (
        f'modeldeploy_rollout_status{{name="fraud",namespace="{namespace}",phase="Healthy"}} 1.0'
    )
    assert healthy in op.metrics()
    assert kube.events(namespace, "RolloutStarted") and kube.events(namespace, "RolloutSucceeded")


def test_alias_move_rolls_out_new_version_through_registry_webhook(
    kube: Kube, registry: Registry, start_operator, namespace: str
) -> None:
    model = registry.new_model(versions=2)
    registry.set_alias(model, "champion", "1")
    start_operator(namespace)
    # Polling once an hour: only the registry webhook can make the move visible quickly.
    kube.create_md(
        namespace,
        "m",
        {"model": {"name": model, "alias": "champion"}, "registry": {"pollInterval": "1h"}},
    )
    kube.wait_phase(namespace, "m", "Healthy", serving="1")

    registry.set_alias(model, "champion", "2")
    st = kube.wait_phase(namespace, "m", "Healthy", serving="2", timeout=20)

    assert kube.md(namespace, "m")["metadata"]["generation"] == 1  # the spec never changed
    assert [(h["version"], h["outcome"]) for h in st["history"]] == [
        ("1", "Succeeded"),
        ("2", "Succeeded"),
    ]
    env = {
        e.name: e.value
        for e in kube.deployment(namespace, "m").spec.template.spec.containers[0].env
    }
    assert env["MODEL_VERSION"] == "2"


def test_alias_move_is_followed_by_polling_without_webhook(
    kube: Kube, registry: Registry, start_operator, namespace: str
) -> None:
    model = registry.new_model(versions=2)
    registry.set_alias(model, "champion", "1")
    start_operator(namespace, webhook=False)
    kube.create_md(
        namespace,
        "m",
        {"model": {"name": model, "alias": "champion"}, "registry": {"pollInterval": "5s"}},
    )
    kube.wait_phase(namespace, "m", "Healthy", serving="1")
    registry.set_alias(model, "champion", "2")
    kube.wait_phase(namespace, "m", "Healthy", serving="2", timeout=30)


def test_pinned_version_ignores_alias_moves_and_latest_follows_new_registrations(
    kube: Kube, registry: Registry, start_operator, namespace: str
) -> None:
    model = registry.new_model(versions=2)
    registry.set_alias(model, "champion", "2")
    start_operator(namespace)
    kube.create_md(
        namespace,
        "pinned",
        {"model": {"name": model, "version": "1"}, "registry": {"pollInterval": "5s"}},
    )
    kube.create_md(
        namespace, "latest", {"model": {"name": model}, "registry": {"pollInterval": "5s"}}
    )
    kube.wait_phase(namespace, "pinned", "Healthy", serving="1")
    kube.wait_phase(namespace, "latest", "Healthy", serving="2")

    registry.set_alias(model, "champion", "1")
    new = registry.add_version(model)
    assert new == "3"
    kube.wait_phase(namespace, "latest", "Healthy", serving="3", timeout=30)
    time.sleep(6)  # longer than the poll interval: the pinned one had its chance to move
    st = kube.status(namespace, "pinned")
    assert st["servingVersion"] == "1"
    assert [h["version"] for h in st["history"]] == ["1"]
    assert kube.status(namespace, "latest")["selector"] == "latest"


def test_deleting_modeldeployment_garbage_collects_children(
    kube: Kube, registry: Registry, start_operator, namespace: str
) -> None:
    model = registry.new_model()
    start_operator(namespace)
    kube.create_md(namespace, "gone", {"model": {"name": model, "version": "1"}})
    kube.wait_phase(namespace, "gone", "Healthy", serving="1")
    assert kube.deployment(namespace, "gone") is not None

    kube.custom.delete_namespaced_custom_object(
        "modeldeploy.io", "v1alpha1", namespace, "modeldeployments", "gone"
    )

    def children_gone() -> bool:
        try:
            kube.core.read_namespaced_service("gone", namespace)
            return False
        except ApiException as exc:
            return exc.status == 404 and kube.deployment(namespace, "gone") is None

    wait_for(children_gone, 60, "Deployment and Service garbage-collected")


def test_operator_killed_mid_rollout_converges_after_restart_without_duplicate_history(
    kube: Kube, registry: Registry, start_operator, namespace: str, cluster: Cluster
) -> None:
    model = registry.new_model()
    op = start_operator(namespace)
    # No node carries this label yet: the pods stay Pending, so the rollout cannot finish.
    kube.create_md(
        namespace,
        "r",
        {
            "model": {"name": model, "version": "1"},
            "serving": {"replicas": 2, "nodeSelector": {"modeldeploy-it": namespace}},
        },
    )
    st = kube.wait_phase(namespace, "r", "Progressing")
    assert [(h["version"], h["outcome"]) for h in st["history"]] == [("1", "Progressing")]
    # Killed mid-rollout, not mid-reconcile: the Event follows the status write, and a kill
    # between the two loses it by design (the status is the record; nothing repeats it).
    wait_for(lambda: kube.events(namespace, "RolloutStarted"), 30, "the RolloutStarted Event")
    op.kill()

    node = "kwok-node-0"
    kube.core.patch_node(node, {"metadata": {"labels": {"modeldeploy-it": namespace}}})
    try:
        wait_for(
            lambda: (kube.deployment(namespace, "r").status.available_replicas or 0) == 2,
            60,
            "pods available while the operator is down",
        )
        assert kube.status(namespace, "r")["phase"] == "Progressing"  # nobody updated it

        start_operator(namespace)
        st = kube.wait_phase(namespace, "r", "Healthy", serving="1")
        assert [(h["version"], h["outcome"]) for h in st["history"]] == [("1", "Succeeded")]
        time.sleep(2)  # any duplicate work would show up as a second entry or event now
        st = kube.status(namespace, "r")
        assert len(st["history"]) == 1
        assert len(kube.events(namespace, "RolloutStarted")) == 1
        assert len(kube.events(namespace, "RolloutSucceeded")) == 1
    finally:
        kube.core.patch_node(node, {"metadata": {"labels": {"modeldeploy-it": None}}})


def test_missing_model_fails_naming_model_and_selector_and_touches_nothing(
    kube: Kube, registry: Registry, start_operator, namespace: str
) -> None:
    model = registry.new_model()
    start_operator(namespace)
    kube.create_md(namespace, "ghost", {"model": {"name": model, "alias": "nobody"}})
    st = kube.wait_phase(namespace, "ghost", "Failed")
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ModelVersionNotFound"
    assert model in ready["message"] and "@nobody" in ready["message"]
    assert kube.deployment(namespace, "ghost") is None

    # While a version serves, a vanished alias degrades but keeps serving.
    registry.set_alias(model, "champion", "1")
    kube.create_md(
        namespace,
        "kept",
        {"model": {"name": model, "alias": "champion"}, "registry": {"pollInterval": "5s"}},
    )
    kube.wait_phase(namespace, "kept", "Healthy", serving="1")
    registry.client.delete_registered_model_alias(model, "champion")
    st = kube.wait_phase(namespace, "kept", "Degraded", timeout=30)
    assert st["servingVersion"] == "1"
    degraded = next(c for c in st["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "ModelVersionNotFound" and "@champion" in degraded["message"]
    assert kube.deployment(namespace, "kept").status.available_replicas == 1
