"""The chart's NetworkPolicy (off by default): who may reach the operator's metrics and webhook
ports. Rendered with real helm, then installed on the real API server, which accepts it; its
podSelector picks exactly the operator pods the chart's Deployment created, and its ports are
the ports those pods expose. The local cluster has no CNI, so nothing enforces it here
(docs/security.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cluster, wait_for
from tests.integration.chart.conftest import BASE, CHART, Tools, one
from tests.integration.chart.test_install import (  # noqa: F401  (release: a fixture)
    helm_install,
    kubectl_json,
    release,
    restrict,
)

pytestmark = pytest.mark.attacks
ON = ["--set", "networkPolicy.enabled=true"]


def rules_by_port(policy: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    """Each port the policy opens, with the peers allowed to it."""
    out: dict[int, list[dict[str, Any]]] = {}
    for rule in policy["spec"]["ingress"]:
        assert rule.get("from"), f"a rule without peers admits everyone: {rule}"
        for port in rule["ports"]:
            out.setdefault(int(port["port"]), []).extend(rule["from"])
    return out


def container_ports(deploy: dict[str, Any]) -> dict[str, int]:
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    return {p["name"]: int(p["containerPort"]) for p in container["ports"]}


def test_no_network_policy_by_default(tools: Tools) -> None:
    assert not [d for d in tools.helm_template() if d["kind"] == "NetworkPolicy"]


@pytest.mark.parametrize(
    "args", [[], ["--set", "ports.metrics=9200", "--set", "ports.webhooks=8443"]]
)
def test_policy_selects_the_operator_pods_and_opens_only_their_metrics_and_webhook_ports(
    tools: Tools, args: list[str]
) -> None:
    docs = tools.helm_template("--namespace", "ops", *ON, *args)
    policy, deploy = one(docs, "NetworkPolicy"), one(docs, "Deployment")
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector == deploy["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deploy["spec"]["template"]["metadata"]["labels"].items()
    assert policy["metadata"]["namespace"] == deploy["metadata"]["namespace"] == "ops"
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    ports, opened = container_ports(deploy), rules_by_port(policy)
    assert set(opened) == {ports["metrics"], ports["webhooks"]}  # not the health port
    assert opened[ports["metrics"]] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    webhook_peers = opened[ports["webhooks"]]
    # A standby forwards deliveries to the leader: the operator's own pods, then the senders.
    assert webhook_peers[0] == {"podSelector": {"matchLabels": selector}}
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mlflow"}}} in (
        webhook_peers
    )


def test_an_empty_peer_list_closes_the_port_instead_of_opening_it_to_all(tools: Tools) -> None:
    """Kubernetes reads a rule with no `from` as "from anywhere": an empty list must drop the
    rule, not render it bare."""
    docs = tools.helm_template(*ON, "--set", "networkPolicy.metrics.from=null")
    opened = rules_by_port(one(docs, "NetworkPolicy"))
    assert 9100 not in opened and set(opened) == {8081}


def test_peers_are_checked_by_the_schema(tools: Tools) -> None:
    proc = tools.run(
        [tools.helm, "template", "md", CHART, *ON,
         "--set", "networkPolicy.metrics.from[0].namespace=monitoring"],
        check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "/networkPolicy/metrics/from/0" in proc.stderr, proc.stderr


def test_the_api_server_accepts_the_policy_and_it_selects_exactly_the_chart_pods(
    tools: Tools,
    cluster: Cluster,
    namespace: str,
    release: str,  # noqa: F811  (the fixture imported above)
) -> None:
    restrict(tools, cluster, namespace)
    helm_install(tools, cluster, release, namespace, *ON)
    name = f"{release}-modeldeploy-operator"
    policy = kubectl_json(tools, cluster, "-n", namespace, "get", "networkpolicy", name)
    deploy = kubectl_json(tools, cluster, "-n", namespace, "get", "deployment", name)
    rendered = one(
        tools.helm_template("--namespace", namespace, *ON, release=release), "NetworkPolicy"
    )
    assert policy["spec"] == rendered["spec"]  # accepted as rendered: no field dropped
    # A decoy that shares all but the instance label: another release's operator.
    selector = policy["spec"]["podSelector"]["matchLabels"]
    decoy_labels = {**selector, "app.kubernetes.io/instance": "another-release"}
    tools.run(
        [*cluster.kubectl, "-n", namespace, "apply", "-f", "-"],
        stdin=_decoy_pod(decoy_labels),
    )

    def operator_pods() -> list[dict[str, Any]]:
        pods = kubectl_json(tools, cluster, "-n", namespace, "get", "pods")["items"]
        return [p for p in pods if p["metadata"]["name"].startswith(f"{name}-")]

    wait_for(lambda: len(operator_pods()) == 2, 60, "the Deployment's two pods")
    label_selector = ",".join(f"{k}={v}" for k, v in selector.items())
    chosen = kubectl_json(tools, cluster, "-n", namespace, "get", "pods", "-l", label_selector)
    assert sorted(p["metadata"]["name"] for p in chosen["items"]) == sorted(
        p["metadata"]["name"] for p in operator_pods()
    )
    ports = container_ports(deploy)
    for pod in chosen["items"]:
        (container,) = pod["spec"]["containers"]
        exposed = {int(p["containerPort"]) for p in container["ports"]}
        assert set(rules_by_port(policy)) <= exposed
        assert set(rules_by_port(policy)) == {ports["metrics"], ports["webhooks"]}


def test_the_kustomize_component_is_the_charts_policy(tools: Tools, tmp_path: Path) -> None:
    """manifests/components/network-policy, in an overlay of manifests/base, is what the chart
    renders for the same release (modeldeploy, in modeldeploy-system), and fits the base's
    Deployment as the chart's fits the chart's."""
    component = CHART.parent.parent / "manifests" / "components" / "network-policy"
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{os.path.relpath(BASE, tmp_path)}]\n"
        f"components: [{os.path.relpath(component, tmp_path)}]\n"
    )
    docs = tools.kustomize(tmp_path)
    ours, deploy = one(docs, "NetworkPolicy"), one(docs, "Deployment")
    chart = one(
        tools.helm_template("--namespace", "modeldeploy-system", *ON, release="modeldeploy"),
        "NetworkPolicy",
    )
    assert ours["spec"] == chart["spec"], "the component and templates/networkpolicy.yaml differ"
    assert ours["metadata"]["name"] == chart["metadata"]["name"]
    assert ours["metadata"]["namespace"] == deploy["metadata"]["namespace"]
    selector = ours["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= deploy["spec"]["template"]["metadata"]["labels"].items()
    assert set(rules_by_port(ours)) == {
        container_ports(deploy)["metrics"],
        container_ports(deploy)["webhooks"],
    }


def _decoy_pod(labels: dict[str, str]) -> str:
    import json

    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "decoy", "labels": labels},
            "spec": {
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 65532,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": "c",
                        "image": "example.invalid/decoy:1",
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ],
            },
        }
    )
