"""dev/podrunner.py on the real stack: kwok pods become real `modeldeploy serve` processes that
answer predictions, Prometheus scrapes them with the labels the Prometheus Operator and our
ServiceMonitor would give, PrometheusRules become loaded rule files, and nothing outlives it.

The Deployment, Service, ServiceMonitor and PrometheusRule are the operator's own renderings
(modeldeploy.render.objects), created by the test itself: the operator does not run here."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import podrunner
import pytest
import requests
import stack as devstack
from kubernetes import client

from modeldeploy.api.spec import parse_spec
from modeldeploy.render import objects as render
from modeldeploy.render.objects import RenderContext
from tests.conftest import DEFAULT_EXPERIMENT, Cluster, TestStack, unavailable, wait_for
from tests.integration.stack.sockets import listeners, with_descendants

MON = ("monitoring.coreos.com", "v1")
ROWS = {"dataframe_split": {"columns": ["x"], "data": [[0.0], [3.0]]}}


@pytest.fixture(scope="module")
def monitoring_crds(cluster: Cluster) -> None:
    try:
        devstack.install_monitoring_crds(cluster.kubectl)
    except (subprocess.CalledProcessError, OSError, KeyError, ValueError) as exc:
        detail = getattr(exc, "stderr", "") or ""
        unavailable(f"could not install the Prometheus Operator CRDs: {exc}\n{detail}")


@pytest.fixture(scope="module")
def model(mlflow_uri: str) -> tuple[str, str]:
    """A tiny registered classifier: x < 1.5 → 0, else 1. Returns (name, run id)."""
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    mlflow.set_tracking_uri(mlflow_uri)
    name = f"podrunner-{uuid.uuid4().hex[:6]}"
    x = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
    clf = LogisticRegression(C=100.0).fit(x, np.array([0, 0, 1, 1]))
    with mlflow.start_run(experiment_id=DEFAULT_EXPERIMENT) as run:
        mlflow.sklearn.log_model(
            clf,
            name="model",
            signature=infer_signature(x, clf.predict(x)),
            registered_model_name=name,
        )
    MlflowClient(mlflow_uri).get_model_version(name, "1")
    return name, run.info.run_id


def rendered(namespace: str, md: str, model: tuple[str, str], mlflow_uri: str) -> list[Any]:
    spec = parse_spec({"model": {"name": model[0], "version": "1"}, "serving": {"replicas": 2}})
    ctx = RenderContext(
        name=md,
        namespace=namespace,
        uid=str(uuid.uuid4()),
        spec=spec,
        version="1",
        model_uri=f"models:/{model[0]}/1",
        run_id=model[1],
        image="example.invalid/modeldeploy-serving:test",  # kwok runs nothing
        tracking_uri=mlflow_uri,
        serving_env=(("MODELDEPLOY_TRUST_MODEL_CODE", "registry"),),  # as the operator sets
    )
    objs = [
        render.build_deployment(ctx),
        render.build_service(ctx),
        render.build_service_monitor(ctx),
        render.build_prometheus_rule(ctx),
    ]
    for obj in objs:
        # No ModelDeployment exists: an owner reference to it would get them garbage-collected.
        obj["metadata"].pop("ownerReferences", None)
    return objs


def prom(prometheus_url: str, path: str, **params: str) -> Any:
    r = requests.get(f"{prometheus_url}/api/v1/{path}", params=params, timeout=5)
    r.raise_for_status()
    return r.json()["data"]


@pytest.fixture
def runner(stack: TestStack, cluster: Cluster, namespace: str) -> Iterator[podrunner.LocalPods]:
    pods = podrunner.LocalPods(namespace, stack=stack.stack, kubeconfig=cluster.kubeconfig)
    yield pods
    pods.close()


def test_pods_become_scraped_serving_processes_and_go_away(
    cluster: Cluster,
    namespace: str,
    mlflow_uri: str,
    prometheus_url: str,
    stack: TestStack,
    monitoring_crds: None,
    model: tuple[str, str],
    runner: podrunner.LocalPods,
) -> None:
    md = "scorer"
    deployment, service, monitor, rule = rendered(namespace, md, model, mlflow_uri)
    api = cluster.api_client()
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    core.create_namespaced_service(namespace, service)
    custom.create_namespaced_custom_object(*MON, namespace, "servicemonitors", monitor)
    custom.create_namespaced_custom_object(*MON, namespace, "prometheusrules", rule)
    runner.start()
    t0 = time.monotonic()
    apps.create_namespaced_deployment(namespace, deployment)

    # Two pods, two real processes serving version 1.
    eps = runner.wait_for_version(md, "1", timeout=45, replicas=2)
    print(f"deployment created → 2 healthy processes: {time.monotonic() - t0:.1f}s")
    print(f"pod seen Running → /health: {runner.startup_seconds()}")
    pod_names = {p.metadata.name for p in core.list_namespaced_pod(namespace).items}
    assert {e.pod for e in eps} == pod_names and len(eps) == 2
    # Like the rest of the stack, the serving processes are not reachable from the network.
    served = listeners(
        with_descendants(p.popen.pid for p in runner.processes() if p.popen is not None)
    )
    assert {sock.port for sock in served} >= {int(e.url.rsplit(":", 1)[1]) for e in eps}
    assert all(sock.loopback for sock in served), [str(sock) for sock in served]
    for ep in eps:
        assert (ep.namespace, ep.modeldeployment, ep.version) == (namespace, md, "1")
        for _ in range(3):
            r = requests.post(f"{ep.url}/invocations", json=ROWS, timeout=10)
            assert r.status_code == 200, r.text
            assert r.json()["predictions"] == [0, 1]
        version = requests.get(f"{ep.url}/version", timeout=5).json()
        assert (version["model_name"], version["model_version"]) == (model[0], "1")

    # Prometheus scrapes both with the labels the rollback logic matches on.
    query = f'prediction_requests_total{{namespace="{namespace}", modeldeployment="{md}"}}'

    def scraped() -> list[dict[str, str]] | None:
        res = prom(prometheus_url, "query", query=query)["result"]
        ok = [s for s in res if float(s["value"][1]) >= 3]
        return [s["metric"] for s in ok] if len(ok) == 2 else None

    series = wait_for(scraped, 20, f"two scraped series of {query}")
    assert {s["pod"] for s in series} == pod_names
    for s in series:
        assert s["model_version"] == "1" and s["model_name"] == model[0]
        assert (s["job"], s["service"], s["container"], s["endpoint"]) == (md, md, "model", "http")

    # The PrometheusRule is loaded.
    group = f"modeldeploy.{namespace}.{md}"

    def rule_loaded() -> list[str] | None:
        groups = prom(prometheus_url, "rules")["groups"]
        found = [g for g in groups if g["name"] == group]
        return [r["name"] for r in found[0]["rules"]] if found else None

    alerts = wait_for(rule_loaded, 15, f"rule group {group} in Prometheus")
    # Prometheus names a rule by its alert or, for a recording rule, by the series it records.
    rules = rule["spec"]["groups"][0]["rules"]
    assert set(alerts) == {r.get("alert") or r["record"] for r in rules}

    # Scaling to 0 stops the processes and removes their targets.
    popens = [p.popen for p in runner.processes(md)]
    assert all(p is not None for p in popens)
    apps.patch_namespaced_deployment_scale(md, namespace, {"spec": {"replicas": 0}})
    runner.wait(lambda: not runner.processes(md), 20, "no processes after scaling to 0")
    targets = stack.stack.root / "prometheus" / "targets"
    assert not list(targets.glob(f"podrunner-{namespace}-*.json"))

    def exited() -> bool:
        return all(p is not None and p.poll() is not None for p in popens)

    wait_for(exited, 20, "serving processes exited")

    def targets_gone() -> bool:
        active = prom(prometheus_url, "targets", state="active")["activeTargets"]
        return not [t for t in active if t["labels"].get("namespace") == namespace]

    wait_for(targets_gone, 15, "Prometheus dropped the targets")

    # close() leaves no process, target or rule file behind.
    apps.patch_namespaced_deployment_scale(md, namespace, {"spec": {"replicas": 1}})
    last = runner.wait_for_version(md, "1", timeout=45)
    popen = runner.processes(md)[0].popen
    assert popen is not None and last
    runner.close()
    assert popen.poll() is not None, "close() must stop the processes it started"
    assert not runner.processes()
    assert not list(targets.glob(f"podrunner-{namespace}-*.json"))
    rules = stack.stack.root / "prometheus" / "rules"
    assert not list(rules.glob(f"podrunner-{namespace}-*.yml"))
    assert not (stack.stack.root / "podrunner" / namespace).exists() or not any(
        (stack.stack.root / "podrunner" / namespace).iterdir()
    )
