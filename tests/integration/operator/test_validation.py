"""A bad ModelDeployment is refused by the API server itself, with a message naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from modeldeploy.api.spec import parse_spec
from tests.conftest import REPO
from tests.integration.operator.conftest import GROUP, PLURAL, VERSION, Kube

GOOD: dict[str, Any] = {"model": {"name": "fraud", "alias": "champion"}}

CASES: list[tuple[str, dict[str, Any], str, str]] = [
    # (id, spec, field named in the message, words of the message)
    (
        "two-selectors",
        {"model": {"name": "m", "alias": "a", "version": "2"}},
        "spec.model",
        "at most one",
    ),
    (
        "three-selectors",
        {"model": {"name": "m", "alias": "a", "version": "2", "stage": "Staging"}},
        "spec.model",
        "at most one",
    ),
    ("missing-model", {"serving": {"replicas": 1}}, "spec.model", "Required"),
    ("missing-name", {"model": {"alias": "champion"}}, "spec.model.name", "Required"),
    (
        "version-zero",
        {"model": {"name": "m", "version": "0"}},
        "spec.model.version",
        "should match",
    ),
    (
        "version-not-number",
        {"model": {"name": "m", "version": "latest"}},
        "spec.model.version",
        "should match",
    ),
    (
        "unknown-stage",
        {"model": {"name": "m", "stage": "Prod"}},
        "spec.model.stage",
        "Unsupported value",
    ),
    (
        "alias-with-space",
        {"model": {"name": "m", "alias": "my champion"}},
        "spec.model.alias",
        "should match",
    ),
    ("alias-reserved", {"model": {"name": "m", "alias": "v3"}}, "spec.model.alias", "reserve"),
    ("alias-latest", {"model": {"name": "m", "alias": "latest"}}, "spec.model.alias", "reserve"),
    (
        "negative-replicas",
        {**GOOD, "serving": {"replicas": -1}},
        "spec.serving.replicas",
        "greater than or equal to 0",
    ),
    (
        "privileged-port",
        {**GOOD, "serving": {"port": 80}},
        "spec.serving.port",
        "greater than or equal to 1024",
    ),
    (
        "port-too-high",
        {**GOOD, "serving": {"port": 70000}},
        "spec.serving.port",
        "less than or equal to 65535",
    ),
    (
        "ftp-tracking-uri",
        {**GOOD, "registry": {"trackingUri": "ftp://mlflow:21"}},
        "spec.registry.trackingUri",
        "http://, https:// or databricks",
    ),
    (
        "poll-not-duration",
        {**GOOD, "registry": {"pollInterval": "soon"}},
        "spec.registry.pollInterval",
        "should match",
    ),
    (
        "poll-too-short",
        {**GOOD, "registry": {"pollInterval": "1s"}},
        "spec.registry.pollInterval",
        "between 5s and 24h",
    ),
    (
        "error-rate-above-one",
        {**GOOD, "monitoring": {"alerts": {"errorRate": 1.5}}},
        "spec.monitoring.alerts.errorRate",
        "less than or equal to 1",
    ),
    (
        "reserved-env",
        {**GOOD, "serving": {"env": [{"name": "MODEL_URI", "value": "x"}]}},
        "spec.serving.env",
        "must not set MODEL_URI",
    ),
    (
        "bad-memory-quantity",
        {**GOOD, "serving": {"resources": {"limits": {"memory": "lots"}}}},
        "spec.serving.resources.limits.memory",
        "should match",
    ),
    (
        "bad-secret-name",
        {**GOOD, "registry": {"credentialsSecret": "My_Secret"}},
        "spec.registry.credentialsSecret",
        "should match",
    ),
    (
        "replicas-wrong-type",
        {**GOOD, "serving": {"replicas": "two"}},
        "spec.serving.replicas",
        "must be of type integer",
    ),
]


@pytest.mark.parametrize(
    ("spec", "field", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_invalid_modeldeployment_refused_naming_field(
    kube: Kube, crd: None, namespace: str, spec: dict[str, Any], field: str, words: str
) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": "bad"},
        "spec": spec,
    }
    with pytest.raises(ApiException) as refused:
        kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    assert refused.value.status == 422
    message = json.loads(refused.value.body)["message"]
    assert field in message, message
    assert words in message, message


def test_bad_name_refused_and_good_manifest_accepted(kube: Kube, crd: None, namespace: str) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": "9-lives"},
        "spec": GOOD,
    }
    with pytest.raises(ApiException) as refused:
        kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    assert "metadata.name must be a DNS-1035 label" in json.loads(refused.value.body)["message"]

    body["metadata"]["name"] = "ok"
    created = kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    # Defaults are applied by the API server, so every reader sees the same effective spec.
    assert created["spec"]["serving"]["replicas"] == 1
    assert (
        "pollInterval" not in created["spec"]["registry"]
    )  # the operator's --poll-interval applies
    assert created["spec"]["rollback"]["onAlerts"] == ["ModelHighErrorRate", "ModelHighLatency"]


EXAMPLES = sorted(
    [*(REPO / "manifests" / "examples").glob("*.yaml"), *(REPO / "examples").glob("*.yaml")]
)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_modeldeployment_is_accepted_by_the_api_server_and_the_operator(
    kube: Kube, crd: None, namespace: str, path: Path
) -> None:
    """The documented examples stay true: the API server admits each ModelDeployment in them
    and the operator parses its spec with no error."""
    mds = [
        d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "ModelDeployment"
    ]
    assert mds, f"{path.name} holds no ModelDeployment"
    for md in mds:
        created = kube.create_md(namespace, md["metadata"]["name"], md["spec"])
        parse_spec(created["spec"])  # the defaulted spec the operator will read
