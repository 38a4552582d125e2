"""The operator runs highly available: replicas that elect one leader through a Lease, rolled one
at a time, spread over nodes, kept by a PodDisruptionBudget, with a Role for that one Lease and
nothing more. The chart and the kustomize base say the same. Real helm and kubectl (kustomize);
no cluster needed (test_install.py installs both on the API server)."""

from __future__ import annotations

import json
from typing import Any

from tests.integration.chart.conftest import Tools, canonical_rules, one

ELECTION_FLAGS = (
    "--leader-election",
    "--no-leader-election",
    "--leader-election-namespace",
    "--leader-election-name",
    "--lease-duration",
    "--renew-deadline",
    "--retry-period",
)
DOWNWARD_ENV = {
    "POD_NAME": "metadata.name",
    "POD_NAMESPACE": "metadata.namespace",
    "POD_IP": "status.podIP",
}


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (only,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return only


def election_args(docs: list[dict[str, Any]]) -> list[str]:
    return [a for a in container(docs)["args"] if a.split("=", 1)[0] in ELECTION_FLAGS]


def flag(docs: list[dict[str, Any]], name: str) -> list[str]:
    """The values of `--name=value` arguments of the operator."""
    return [a.split("=", 1)[1] for a in container(docs)["args"] if a.startswith(f"--{name}=")]


def downward_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    return {
        e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
        for e in container(docs).get("env", [])
        if "fieldRef" in e.get("valueFrom", {})
    }


def lease_rules(lease: str) -> list[dict[str, Any]]:
    """Create a Lease (RBAC cannot name an object that does not exist yet), then read and renew
    only the one named `lease`."""
    return [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [lease],
            "verbs": ["get", "update"],
        },
    ]


def test_default_values_run_two_replicas_rolled_out_one_at_a_time(tools: Tools) -> None:
    """maxUnavailable 0: the new pod is Ready (a standby) before an old one stops, so webhooks
    are answered throughout and a replica is there to take the Lease."""
    deploy = one(tools.helm_template("--namespace", "ops"), "Deployment")
    assert deploy["spec"]["replicas"] == 2
    assert deploy["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }


def test_default_values_elect_a_leader_through_the_release_operators_lease(tools: Tools) -> None:
    docs = tools.helm_template("--namespace", "ops")
    assert election_args(docs) == [
        "--leader-election",
        "--leader-election-namespace=ops",
        "--leader-election-name=md-modeldeploy-operator",
        "--lease-duration=15s",
        "--renew-deadline=10s",
        "--retry-period=2s",
    ]


def test_lease_timings_come_from_the_leader_election_values(tools: Tools) -> None:
    docs = tools.helm_template(
        "--set",
        "leaderElection.leaseDuration=1m",
        "--set",
        "leaderElection.renewDeadline=40s",
        "--set",
        "leaderElection.retryPeriod=5s",
    )
    assert flag(docs, "lease-duration") == ["1m"]
    assert flag(docs, "renew-deadline") == ["40s"]
    assert flag(docs, "retry-period") == ["5s"]


def test_two_releases_never_share_a_lease_or_a_registry_webhook(tools: Tools) -> None:
    alpha = tools.helm_template("--namespace", "ops", release="alpha")
    beta = tools.helm_template("--namespace", "ops", release="beta")
    alpha_elsewhere = tools.helm_template("--namespace", "staging", release="alpha")
    assert flag(alpha, "leader-election-name") == ["alpha-modeldeploy-operator"]
    assert flag(beta, "leader-election-name") == ["beta-modeldeploy-operator"]
    # The same release name in another namespace has its own Lease there, but the MLflow server
    # may be shared: the webhook name carries the namespace.
    assert flag(alpha, "registry-webhook-name") == ["ops-alpha-modeldeploy"]
    assert flag(beta, "registry-webhook-name") == ["ops-beta-modeldeploy"]
    assert flag(alpha_elsewhere, "registry-webhook-name") == ["staging-alpha-modeldeploy"]


def test_registry_webhook_name_stays_within_63_characters_and_distinct(tools: Tools) -> None:
    namespace = "n" * 63
    names = [
        flag(
            tools.helm_template("--namespace", namespace, release=release), "registry-webhook-name"
        )
        for release in ("r" * 40 + "a", "r" * 40 + "b")
    ]
    for (name,) in names:
        assert len(name) <= 63, name
        assert name.startswith("n" * 40), name
    assert names[0] != names[1]


def test_pods_learn_their_name_namespace_and_ip_from_the_downward_api(tools: Tools) -> None:
    assert downward_env(tools.helm_template()) == DOWNWARD_ENV
    docs = tools.helm_template("--set", "mlflow.trackingUri=http://mlflow:5000")
    assert downward_env(docs) == DOWNWARD_ENV
    assert {"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow:5000"} in container(docs)["env"]


def test_readiness_is_readyz_on_the_webhook_port_and_liveness_stays_healthz(tools: Tools) -> None:
    """Leader and standbys are Ready once they know their role: both answer webhooks."""
    operator = container(tools.helm_template())
    assert "webhooks" in [p["name"] for p in operator["ports"]]
    assert operator["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "webhooks"}
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_replicas_prefer_different_nodes_unless_affinity_is_set(tools: Tools) -> None:
    deploy = one(tools.helm_template(), "Deployment")
    assert deploy["spec"]["template"]["spec"]["affinity"] == {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": deploy["spec"]["selector"]["matchLabels"]},
                    },
                }
            ]
        }
    }
    zone = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {
                                "key": "topology.kubernetes.io/zone",
                                "operator": "In",
                                "values": ["a"],
                            }
                        ]
                    }
                ]
            }
        }
    }
    own = one(tools.helm_template("--set-json", f"affinity={json.dumps(zone)}"), "Deployment")
    assert own["spec"]["template"]["spec"]["affinity"] == zone


def test_disruption_budget_keeps_one_replica_and_is_absent_for_a_single_one(tools: Tools) -> None:
    docs = tools.helm_template("--namespace", "ops")
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["metadata"]["namespace"] == "ops"
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == one(docs, "Deployment")["spec"]["selector"]
    assert one(tools.helm_template("--set", "replicaCount=3"), "PodDisruptionBudget")
    for args in (
        ["--set", "replicaCount=1"],
        ["--set", "replicaCount=0"],
        ["--set", "podDisruptionBudget.enabled=false"],
    ):
        assert not [d for d in tools.helm_template(*args) if d["kind"] == "PodDisruptionBudget"]


def test_lease_role_grants_create_and_get_update_of_its_own_lease_only(tools: Tools) -> None:
    docs = tools.helm_template("--namespace", "ops")
    role = one(docs, "Role")
    assert role["metadata"]["namespace"] == "ops"
    assert role["rules"] == lease_rules("md-modeldeploy-operator")
    binding = one(docs, "RoleBinding")
    assert binding["metadata"]["namespace"] == "ops"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": one(docs, "ServiceAccount")["metadata"]["name"],
            "namespace": "ops",
        }
    ]


def test_lease_role_does_not_collide_with_a_watched_release_namespace(tools: Tools) -> None:
    """A watched namespace gets a Role named <prefix>-operator; the release namespace may be
    one of them, so the Lease's Role has a name of its own."""
    docs = tools.helm_template("--namespace", "ops", "--set", "watchNamespaces={ops,team-a}")
    roles = {
        (d["metadata"]["namespace"], d["metadata"]["name"]): d for d in docs if d["kind"] == "Role"
    }
    assert sorted(roles) == [
        ("ops", "md-modeldeploy-operator"),
        ("ops", "md-modeldeploy-operator-leader-election"),
        ("team-a", "md-modeldeploy-operator"),
    ]
    assert roles["ops", "md-modeldeploy-operator-leader-election"]["rules"] == lease_rules(
        "md-modeldeploy-operator"
    )
    assert flag(docs, "leader-election-namespace") == ["ops"]


def test_leader_election_disabled_drops_the_role_and_passes_no_leader_election(
    tools: Tools,
) -> None:
    """Without a Lease two pods would reconcile at once: one replica, Recreate, no PDB."""
    docs = tools.helm_template(
        "--namespace", "ops", "--set", "leaderElection.enabled=false", "--set", "replicaCount=1"
    )
    assert not [d for d in docs if d["kind"] in {"Role", "RoleBinding", "PodDisruptionBudget"}]
    assert election_args(docs) == ["--no-leader-election"]
    deploy = one(docs, "Deployment")
    assert deploy["spec"]["replicas"] == 1
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}


def test_alertmanager_url_is_passed_only_when_set(tools: Tools) -> None:
    assert flag(tools.helm_template(), "alertmanager-url") == []
    docs = tools.helm_template("--set", "alerts.alertmanagerUrl=http://alertmanager.mon:9093")
    assert flag(docs, "alertmanager-url") == ["http://alertmanager.mon:9093"]


def test_kustomize_base_is_highly_available_like_the_chart(tools: Tools) -> None:
    """The release `modeldeploy` names its objects as the base does (modeldeploy-operator), so
    the two compare field by field."""
    base = tools.kustomize()
    chart = tools.helm_template("--namespace", "modeldeploy-system", release="modeldeploy")
    base_deploy, chart_deploy = one(base, "Deployment"), one(chart, "Deployment")
    for field in ("replicas", "strategy", "selector"):
        assert base_deploy["spec"][field] == chart_deploy["spec"][field], field
    assert (
        base_deploy["spec"]["template"]["spec"]["affinity"]
        == (chart_deploy["spec"]["template"]["spec"]["affinity"])
    )
    assert container(base)["readinessProbe"] == container(chart)["readinessProbe"]
    assert container(base)["livenessProbe"] == container(chart)["livenessProbe"]
    assert downward_env(base) == DOWNWARD_ENV
    # The base leaves the Lease's namespace to POD_NAMESPACE, so an overlay's namespace carries
    # over; the chart knows its namespace and says it.
    assert election_args(base) == [
        a for a in election_args(chart) if not a.startswith("--leader-election-namespace=")
    ]
    assert flag(base, "registry-webhook-name") == ["modeldeploy-operator"]
    assert one(base, "PodDisruptionBudget")["spec"] == one(chart, "PodDisruptionBudget")["spec"]
    base_role, chart_role = one(base, "Role"), one(chart, "Role")
    assert base_role["metadata"]["namespace"] == "modeldeploy-system"
    assert base_role["metadata"]["name"] == chart_role["metadata"]["name"]
    assert canonical_rules(base_role["rules"]) == canonical_rules(chart_role["rules"]), (
        "charts/modeldeploy/templates/_rbac.tpl and manifests/base/leader-election-role.yaml differ"
    )
    assert base_role["rules"] == lease_rules("modeldeploy-operator")
    base_binding, chart_binding = one(base, "RoleBinding"), one(chart, "RoleBinding")
    assert base_binding["roleRef"] == chart_binding["roleRef"]
    assert base_binding["subjects"] == chart_binding["subjects"]
