"""The chart renders, refuses bad values, and grants the same least-privilege RBAC as the
kustomize base. Real helm and kubectl (kustomize); no cluster needed."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.chart.conftest import CHART, Tools, canonical_rules, one

CLUSTER_SCOPED = ("customresourcedefinitions", "namespaces")


def base_rules(tools: Tools) -> list[dict[str, Any]]:
    """The ClusterRole rules of manifests/base, as kustomize renders them."""
    return one(tools.kustomize(), "ClusterRole")["rules"]


def test_helm_lint_passes_with_default_and_namespace_scoped_values(tools: Tools) -> None:
    tools.run([tools.helm, "lint", "--strict", CHART])
    tools.run([tools.helm, "lint", "--strict", CHART, "--set", "watchNamespaces={team-a,team-b}"])


def test_default_values_render_a_cluster_wide_operator_under_restricted_pod_security(
    tools: Tools,
) -> None:
    docs = tools.helm_template("--namespace", "ops")
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Service",
            "Deployment",
            "PodDisruptionBudget",
        ]
    )
    deploy = one(docs, "Deployment")
    assert deploy["spec"]["replicas"] == 2
    pod = deploy["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert not any(a.startswith("--namespace") for a in container["args"])
    assert "--metrics-port=9100" in container["args"]
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "500m", "memory": "512Mi"},
    }
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "modeldeploy"
    assert labels["app.kubernetes.io/component"] == "operator"
    assert labels["app.kubernetes.io/instance"] == "md"
    assert labels["app.kubernetes.io/version"] == "0.1.0"
    binding = one(docs, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": one(docs, "ServiceAccount")["metadata"]["name"],
            "namespace": "ops",
        }
    ]


def test_watch_namespaces_render_a_role_per_namespace_and_only_crd_read_cluster_wide(
    tools: Tools,
) -> None:
    docs = tools.helm_template("--namespace", "ops", "--set", "watchNamespaces={team-a,team-b}")
    cluster_wide = canonical_rules(base_rules(tools))
    for ns in ("team-a", "team-b"):
        role = one(docs, "Role", ns)
        binding = one(docs, "RoleBinding", ns)
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
        assert binding["subjects"][0]["namespace"] == "ops"
        assert canonical_rules(role["rules"]) == [
            r for r in cluster_wide if not set(r[1]) & set(CLUSTER_SCOPED)
        ]
    assert one(docs, "ClusterRole")["rules"] == [
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    args = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if a.startswith("--namespace")] == [
        "--namespace=team-a",
        "--namespace=team-b",
    ]


def test_crds_install_false_leaves_the_crd_out(tools: Tools) -> None:
    with_crd = tools.helm_template("--include-crds")
    without = tools.helm_template("--include-crds", "--set", "crds.install=false")
    assert one(with_crd, "CustomResourceDefinition")["metadata"]["name"] == (
        "modeldeployments.modeldeploy.io"
    )
    assert not [d for d in without if d["kind"] == "CustomResourceDefinition"]


def test_the_operators_service_monitor_keeps_the_modeldeployment_namespace_label(
    tools: Tools,
) -> None:
    """The operator's series carry the ModelDeployment's `namespace`; without honorLabels the
    Prometheus Operator renames it exported_namespace and the dashboards' filter misses it."""
    docs = tools.helm_template("--set", "serviceMonitor.enabled=true")
    (endpoint,) = one(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["honorLabels"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "replicaCount=-1"], "at '/replicaCount': minimum: got -1, want 0"),
        (
            ["--set", "leaderElection.enabled=false"],
            "at '/replicaCount': maximum: got 2, want 1",
        ),
        (
            ["--set", "leaderElection.enabled=false", "--set", "replicaCount=3"],
            "at '/replicaCount': maximum: got 3, want 1",
        ),
        (["--set", "leaderElection.leaseDuration=15"], "at '/leaderElection/leaseDuration'"),
        (["--set", "leaderElection.retryPeriod=0s"], "at '/leaderElection/retryPeriod'"),
        (["--set-string", "leaderElection.enabled=yes"], "at '/leaderElection/enabled'"),
        (["--set", "leaderElection.lease=x"], "additional properties 'lease' not allowed"),
        (
            ["--set", "podDisruptionBudget.minAvailable=2"],
            "additional properties 'minAvailable' not allowed",
        ),
        (["--set", "alerts.alertmanagerUrl=am:9093"], "at '/alerts/alertmanagerUrl'"),
        (["--set-string", "replicaCount=one"], "at '/replicaCount': got string, want integer"),
        (["--set", "pollInterval=soon"], "at '/pollInterval'"),
        (["--set", "image.pullPolicy=Sometimes"], "at '/image/pullPolicy'"),
        (["--set", "watchNamespaces={Team_A}"], "at '/watchNamespaces/0'"),
        (["--set", "mlflow.trackingUri=ftp://mlflow"], "at '/mlflow/trackingUri'"),
        (["--set", "ports.metrics=80"], "at '/ports/metrics'"),
        (["--set", "resources=big"], "at '/resources': got string, want object"),
        (["--set", "replicas=1"], "additional properties 'replicas' not allowed"),
    ],
)
def test_schema_refuses_bad_values_naming_the_value(
    tools: Tools, args: list[str], message: str
) -> None:
    proc = tools.run([tools.helm, "template", "md", CHART, *args], check=False)
    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert message in proc.stderr, proc.stderr


def test_cluster_role_rules_are_identical_in_chart_and_kustomize_base(tools: Tools) -> None:
    chart = one(tools.helm_template(), "ClusterRole")["rules"]
    base = base_rules(tools)
    assert canonical_rules(chart) == canonical_rules(base), (
        "charts/modeldeploy/templates/_rbac.tpl and manifests/base/clusterrole.yaml differ"
    )


DELETABLE = [
    (["monitoring.coreos.com"], ["servicemonitors", "prometheusrules"]),
    (["apps"], ["deployments"]),
    ([""], ["services"]),
    (["autoscaling"], ["horizontalpodautoscalers"]),
]


@pytest.mark.parametrize("source", ["chart", "kustomize"])
def test_cluster_role_is_least_privilege(tools: Tools, source: str) -> None:
    docs = tools.helm_template() if source == "chart" else tools.kustomize()
    rules = one(docs, "ClusterRole")["rules"]
    for rule in rules:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule.get(field, []), f"wildcard {field} in {rule}"
        assert "nonResourceURLs" not in rule
        if "delete" in rule["verbs"]:
            # The only deletions: children a spec no longer wants (a monitoring object turned
            # off, a finished canary's Deployment and Service, an autoscaler turned off); they
            # are otherwise removed by garbage collection through their ownerReferences.
            assert (rule["apiGroups"], rule["resources"]) in DELETABLE, rule
        assert not set(rule["verbs"]) & {
            "deletecollection",
            "escalate",
            "bind",
            "impersonate",
        }, rule
        if "secrets" in rule["resources"]:
            assert rule["verbs"] == ["get"], f"secrets may only be read one by one: {rule}"
    granted = {
        (group, resource, verb)
        for r in rules
        for group in r["apiGroups"]
        for resource in r["resources"]
        for verb in r["verbs"]
    }
    assert ("", "secrets", "list") not in granted
    assert ("", "secrets", "watch") not in granted
    assert not any(
        res
        in {"roles", "clusterroles", "rolebindings", "clusterrolebindings", "pods/exec", "nodes"}
        for _, res, _ in granted
    )
    writable = {(g, res) for g, res, v in granted if v in {"create", "patch", "update"}}
    assert writable == {
        ("modeldeploy.io", "modeldeployments/status"),
        ("apps", "deployments"),
        ("", "services"),
        ("", "events"),
        ("events.k8s.io", "events"),
        ("monitoring.coreos.com", "servicemonitors"),
        ("monitoring.coreos.com", "prometheusrules"),
        ("autoscaling", "horizontalpodautoscalers"),
        # Only the weights of a route a canary names (a JSON patch guarded by test ops).
        ("gateway.networking.k8s.io", "httproutes"),
    }
    route_verbs = {v for g, res, v in granted if res == "httproutes"}
    assert route_verbs == {"get", "patch"}, route_verbs  # never create, delete or watch routes
