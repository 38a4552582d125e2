"""RBAC as shipped, in every shape it ships: the chart cluster-wide and namespace-scoped (with and
without leader election) and the kustomize base. No wildcard anywhere; in namespace-scoped mode
no Secret is readable outside the watched namespaces — checked on the rendered rules and then on
the real API server, which is asked (SubjectAccessReview) what the ServiceAccount may do.

tests/integration/chart/test_chart.py checks the ClusterRole's exact rules; this checks every
Role and ClusterRole the renderings hold, whatever they are named.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes import client

from tests.conftest import Cluster
from tests.integration.chart.conftest import Tools

pytestmark = pytest.mark.attacks

NAMESPACED = ["--set", "watchNamespaces={team-a,team-b}"]
RENDERINGS = {
    "chart-cluster-wide": ["--namespace", "ops"],
    "chart-namespaced": ["--namespace", "ops", *NAMESPACED],
    "chart-namespaced-no-election": [
        "--namespace", "ops", *NAMESPACED,
        "--set", "leaderElection.enabled=false", "--set", "replicaCount=1",
    ],
    "chart-everything-on": [
        "--namespace", "ops", "--set", "serviceMonitor.enabled=true",
        "--set", "pipelineAlerts.enabled=true", "--set", "dashboards.enabled=true",
        "--set", "networkPolicy.enabled=true",
    ],
}  # fmt: skip
ROLE_KINDS = ("Role", "ClusterRole")
# Verbs that hand out more than the object: create a token, bind or escalate a role, act as
# someone else.
DANGEROUS = {"escalate", "bind", "impersonate", "deletecollection", "*"}


def render(tools: Tools, shape: str) -> list[dict[str, Any]]:
    if shape == "kustomize":
        return tools.kustomize()
    return tools.helm_template(*RENDERINGS[shape])


@pytest.mark.parametrize("shape", [*RENDERINGS, "kustomize"])
def test_no_wildcards_and_no_dangerous_verbs_in_any_role(tools: Tools, shape: str) -> None:
    docs = render(tools, shape)
    roles = [d for d in docs if d["kind"] in ROLE_KINDS]
    assert roles, f"{shape} renders no Role or ClusterRole"
    for role in roles:
        assert "aggregationRule" not in role, role["metadata"]["name"]
        for rule in role["rules"]:
            where = f"{shape} {role['kind']}/{role['metadata']['name']}: {rule}"
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert not any("*" in v for v in rule.get(field, [])), f"wildcard in {where}"
            assert "nonResourceURLs" not in rule, where
            assert not set(rule["verbs"]) & DANGEROUS, where
            assert not set(rule["resources"]) & {
                "pods/exec", "pods/attach", "serviceaccounts/token", "nodes/proxy",
                "roles", "clusterroles", "rolebindings", "clusterrolebindings",
            }, where  # fmt: skip
    bindings = [d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    names = {(r["kind"], r["metadata"]["name"]) for r in roles}
    for b in bindings:  # every binding points at a role rendered (and so checked) here
        assert (b["roleRef"]["kind"], b["roleRef"]["name"]) in names, b


def secret_rules(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in role["rules"] if "secrets" in r["resources"] and "" in r["apiGroups"]]


@pytest.mark.parametrize("shape", ["chart-namespaced", "chart-namespaced-no-election"])
def test_namespace_scoped_mode_reads_no_secret_cluster_wide(tools: Tools, shape: str) -> None:
    docs = render(tools, shape)
    for role in (d for d in docs if d["kind"] == "ClusterRole"):
        assert not secret_rules(role), f"ClusterRole {role['metadata']['name']} reads Secrets"
    readers = [d for d in docs if d["kind"] == "Role" and secret_rules(d)]
    assert sorted(r["metadata"]["namespace"] for r in readers) == ["team-a", "team-b"]
    for role in readers:
        for rule in secret_rules(role):
            assert rule["verbs"] == ["get"], rule  # one by one, never list or watch
    # No RoleBinding lends a ClusterRole's rules out in some namespace either.
    for b in (d for d in docs if d["kind"] == "RoleBinding"):
        assert b["roleRef"]["kind"] == "Role", b


def test_the_api_server_lets_a_namespace_scoped_operator_read_secrets_only_where_it_watches(
    tools: Tools, cluster: Cluster
) -> None:
    """The namespace-scoped RBAC applied to the real API server under a unique release name,
    then asked with SubjectAccessReviews what the operator's ServiceAccount may do."""
    api = cluster.api_client()
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    suffix = uuid.uuid4().hex[:5]
    ops, team_a, team_b, other = (f"rbac-{n}-{suffix}" for n in ("ops", "a", "b", "other"))
    for ns in (ops, team_a, team_b, other):
        core.create_namespace({"metadata": {"name": ns, "labels": {"modeldeploy.io/test": "true"}}})
    release = f"rbac-{suffix}"
    docs = tools.helm_template(
        "--namespace", ops, "--set", f"watchNamespaces={{{team_a},{team_b}}}", release=release
    )
    wanted = ("ServiceAccount", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
    objects = [d for d in docs if d["kind"] in wanted]
    try:
        for obj in objects:
            ns = obj["metadata"].get("namespace")
            if obj["kind"] == "ServiceAccount":
                core.create_namespaced_service_account(ns, obj)
            elif obj["kind"] == "Role":
                rbac.create_namespaced_role(ns, obj)
            elif obj["kind"] == "RoleBinding":
                rbac.create_namespaced_role_binding(ns, obj)
            elif obj["kind"] == "ClusterRole":
                rbac.create_cluster_role(obj)
            else:
                rbac.create_cluster_role_binding(obj)
        sa = next(o for o in objects if o["kind"] == "ServiceAccount")["metadata"]["name"]
        user = f"system:serviceaccount:{ops}:{sa}"
        authz = client.AuthorizationV1Api(api)

        def may(verb: str, resource: str, namespace: str | None, group: str = "") -> bool:
            review = {
                "spec": {
                    "user": user,
                    "groups": ["system:serviceaccounts", f"system:serviceaccounts:{ops}"],
                    "resourceAttributes": {
                        "verb": verb, "resource": resource, "group": group,
                        **({"namespace": namespace} if namespace else {}),
                    },
                }
            }  # fmt: skip
            return bool(authz.create_subject_access_review(review).status.allowed)

        assert may("get", "secrets", team_a) and may("get", "secrets", team_b)
        assert not may("get", "secrets", other)
        assert not may("get", "secrets", ops)  # not even its own namespace: it does not watch it
        assert not may("get", "secrets", None)  # cluster-wide
        assert not may("list", "secrets", team_a) and not may("watch", "secrets", team_a)
        assert may("create", "deployments", team_a, "apps")
        assert not may("create", "deployments", other, "apps")
        assert may("list", "customresourcedefinitions", None, "apiextensions.k8s.io")
        assert not may("list", "namespaces", None)
        assert not may("create", "pods", team_a)  # pods come from its Deployments, not from it
        assert not may("escalate", "roles", team_a, "rbac.authorization.k8s.io")
    finally:
        for obj in objects:
            if obj["kind"] == "ClusterRole":
                rbac.delete_cluster_role(obj["metadata"]["name"])
            elif obj["kind"] == "ClusterRoleBinding":
                rbac.delete_cluster_role_binding(obj["metadata"]["name"])
        for ns in (ops, team_a, team_b, other):
            core.delete_namespace(ns, propagation_policy="Background")
