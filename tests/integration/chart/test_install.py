"""Installing the operator on the real (kwok) cluster: with Helm into a fresh restricted
namespace, and with the kustomize base. kwok nodes run no process, but they do schedule the pods
and report them Running/Ready, so Pod Security admission, RBAC objects, the CRD and the
Deployment's available replicas are all real.

The CRD is cluster-scoped and shared with every other test: it may already exist, and no test
deletes it (that would delete every ModelDeployment in the cluster)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Cluster, wait_for
from tests.integration.chart.conftest import (
    BASE,
    CHART,
    CRD_NAME,
    Tools,
    canonical_rules,
    one,
)

BASE_NAMESPACE = "modeldeploy-system"


def kubectl_json(tools: Tools, cluster: Cluster, *args: str) -> dict[str, Any]:
    out = tools.run([*cluster.kubectl, *args, "-o", "json"]).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def crd_established(tools: Tools, cluster: Cluster) -> bool:
    proc = tools.run([*cluster.kubectl, "get", "crd", CRD_NAME, "-o", "json"], check=False)
    if proc.returncode != 0:
        return False
    conditions = json.loads(proc.stdout).get("status", {}).get("conditions", [])
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


def available_replicas(tools: Tools, cluster: Cluster, namespace: str, name: str) -> int:
    status = kubectl_json(tools, cluster, "-n", namespace, "get", "deployment", name)["status"]
    return int(status.get("availableReplicas", 0))


def can_i(tools: Tools, cluster: Cluster, sa: str, *args: str) -> bool:
    proc = tools.run([*cluster.kubectl, "auth", "can-i", f"--as={sa}", *args], check=False)
    assert proc.stdout.strip() in {"yes", "no"}, proc.stderr
    return proc.stdout.strip() == "yes"


def assert_lease_rights_only(
    tools: Tools, cluster: Cluster, sa: str, namespace: str, lease: str
) -> None:
    """The API server's own answer: the operator may create a Lease and read and renew its own
    one in its namespace, and do nothing else with Leases."""
    leases = "leases.coordination.k8s.io"
    assert can_i(tools, cluster, sa, "create", leases, "-n", namespace)
    assert can_i(tools, cluster, sa, "get", f"{leases}/{lease}", "-n", namespace)
    assert can_i(tools, cluster, sa, "update", f"{leases}/{lease}", "-n", namespace)
    for verb, what, where in (
        ("get", f"{leases}/someone-elses", namespace),
        ("update", f"{leases}/someone-elses", namespace),
        ("patch", f"{leases}/{lease}", namespace),
        ("delete", f"{leases}/{lease}", namespace),
        ("list", leases, namespace),
        ("watch", leases, namespace),
        ("create", leases, "default"),
        ("update", f"{leases}/{lease}", "default"),
    ):
        assert not can_i(tools, cluster, sa, verb, what, "-n", where), (verb, what, where)


def disruptions_allowed(tools: Tools, cluster: Cluster, namespace: str, name: str) -> int:
    """What the PodDisruptionBudget's controller computed from the pods it selects."""
    pdb = kubectl_json(tools, cluster, "-n", namespace, "get", "poddisruptionbudget", name)
    return int(pdb.get("status", {}).get("disruptionsAllowed", 0))


@pytest.fixture
def release(tools: Tools, cluster: Cluster, namespace: str) -> Iterator[str]:
    """A unique release name; the release is uninstalled afterwards (its ClusterRole with it)."""
    name = f"md-{uuid.uuid4().hex[:6]}"
    try:
        yield name
    finally:
        tools.run(
            [
                tools.helm,
                "uninstall",
                name,
                "-n",
                namespace,
                "--kubeconfig",
                cluster.kubeconfig,
                "--wait",
                "--timeout",
                "60s",
                "--ignore-not-found",
            ],
            check=False,
        )


def restrict(tools: Tools, cluster: Cluster, namespace: str) -> None:
    tools.run(
        [
            *cluster.kubectl,
            "label",
            "namespace",
            namespace,
            "--overwrite",
            "pod-security.kubernetes.io/enforce=restricted",
        ]
    )


def helm_install(tools: Tools, cluster: Cluster, release: str, namespace: str, *args: str) -> None:
    tools.run(
        [
            tools.helm,
            "install",
            release,
            CHART,
            "-n",
            namespace,
            "--kubeconfig",
            cluster.kubeconfig,
            "--wait",
            "--timeout",
            "90s",
            *args,
        ]
    )


def test_helm_install_runs_the_operator_in_a_restricted_namespace(
    tools: Tools, cluster: Cluster, namespace: str, release: str
) -> None:
    restrict(tools, cluster, namespace)
    helm_install(tools, cluster, release, namespace)

    name = f"{release}-modeldeploy-operator"
    assert wait_for(lambda: available_replicas(tools, cluster, namespace, name) == 2)
    pods = kubectl_json(
        tools,
        cluster,
        "-n",
        namespace,
        "get",
        "pods",
        "-l",
        f"app.kubernetes.io/instance={release},app.kubernetes.io/component=operator",
    )["items"]
    assert [p["status"]["phase"] for p in pods] == ["Running", "Running"]
    assert wait_for(lambda: crd_established(tools, cluster), timeout=30)
    # Two Ready replicas, one of which may be evicted at a time.
    assert wait_for(lambda: disruptions_allowed(tools, cluster, namespace, name) == 1)

    sa = f"system:serviceaccount:{namespace}:{name}"
    assert can_i(tools, cluster, sa, "list", "modeldeployments.modeldeploy.io", "-A")
    assert can_i(tools, cluster, sa, "patch", "deployments.apps", "-n", "default")
    assert can_i(tools, cluster, sa, "get", "secrets", "-n", "default")
    assert not can_i(tools, cluster, sa, "list", "secrets", "-n", "default")
    assert can_i(tools, cluster, sa, "delete", "deployments.apps", "-n", "default")  # canaries
    assert can_i(
        tools, cluster, sa, "patch", "httproutes.gateway.networking.k8s.io", "-n", "default"
    )
    assert not can_i(tools, cluster, sa, "delete", "httproutes.gateway.networking.k8s.io", "-A")
    assert not can_i(tools, cluster, sa, "delete", "secrets", "-n", "default")
    assert_lease_rights_only(tools, cluster, sa, namespace, lease=name)


def test_helm_install_with_watch_namespaces_grants_rights_only_there(
    tools: Tools, cluster: Cluster, namespace: str, release: str
) -> None:
    restrict(tools, cluster, namespace)
    helm_install(tools, cluster, release, namespace, "--set", f"watchNamespaces={{{namespace}}}")

    name = f"{release}-modeldeploy-operator"
    assert wait_for(lambda: available_replicas(tools, cluster, namespace, name) == 2)
    args = kubectl_json(tools, cluster, "-n", namespace, "get", "deployment", name)["spec"][
        "template"
    ]["spec"]["containers"][0]["args"]
    assert f"--namespace={namespace}" in args
    sa = f"system:serviceaccount:{namespace}:{name}"
    assert can_i(tools, cluster, sa, "create", "deployments.apps", "-n", namespace)
    assert not can_i(tools, cluster, sa, "create", "deployments.apps", "-n", "default")
    assert not can_i(tools, cluster, sa, "list", "namespaces")
    assert can_i(tools, cluster, sa, "list", "customresourcedefinitions.apiextensions.k8s.io")
    # The watched namespace is the release namespace here: its Role and the Lease's Role both
    # live there, under different names.
    assert_lease_rights_only(tools, cluster, sa, namespace, lease=name)


def test_kustomize_base_runs_the_operator_under_restricted_pod_security(
    tools: Tools, cluster: Cluster
) -> None:
    existing = tools.run([*cluster.kubectl, "get", "namespace", BASE_NAMESPACE], check=False)
    if existing.returncode == 0:
        pytest.fail(
            f"namespace {BASE_NAMESPACE} already exists; this test installs into it and deletes "
            "it afterwards, so it will not touch one it did not create",
            pytrace=False,
        )
    docs = tools.kustomize()
    chart_kinds = {d["kind"] for d in tools.helm_template("--include-crds")}
    assert {d["kind"] for d in docs} == chart_kinds | {"Namespace"}
    assert (
        one(docs, "Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
        == "restricted"
    )
    # The CRD is shared: apply it only where it is missing, never take it over or delete it.
    if crd_established(tools, cluster):
        docs = [d for d in docs if d["kind"] != "CustomResourceDefinition"]
    ours = [d for d in docs if d["kind"] != "CustomResourceDefinition"]
    rendered = "\n---\n".join(json.dumps(d) for d in docs)
    try:
        tools.run(
            [
                *cluster.kubectl,
                "apply",
                "--server-side",
                "--field-manager=modeldeploy-test",
                "-f",
                "-",
            ],
            stdin=rendered,
        )
        assert wait_for(
            lambda: available_replicas(tools, cluster, BASE_NAMESPACE, "modeldeploy-operator") == 2
        )
        assert wait_for(
            lambda: disruptions_allowed(tools, cluster, BASE_NAMESPACE, "modeldeploy-operator") == 1
        )
        assert wait_for(lambda: crd_established(tools, cluster), timeout=30)
        role = kubectl_json(tools, cluster, "get", "clusterrole", "modeldeploy-operator")
        assert canonical_rules(role["rules"]) == canonical_rules(
            one(tools.kustomize(BASE), "ClusterRole")["rules"]
        )
        sa = f"system:serviceaccount:{BASE_NAMESPACE}:modeldeploy-operator"
        assert_lease_rights_only(tools, cluster, sa, BASE_NAMESPACE, lease="modeldeploy-operator")
    finally:
        tools.run(
            [
                *cluster.kubectl,
                "delete",
                "--ignore-not-found",
                "--wait=true",
                "--timeout=60s",
                "-f",
                "-",
            ],
            stdin="\n---\n".join(json.dumps(d) for d in reversed(ours)),
            check=False,
        )
