"""What the operator does when a real part goes away or appears: the registry stops (serving goes
on, a condition says so, it recovers), and the Prometheus Operator's CRDs come and go."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import requests
import stack as devstack
from kubernetes.client.exceptions import ApiException

from tests.conftest import Cluster
from tests.integration.operator.conftest import Kube, Registry, free_port, wait_for


class PrivateMlflow:
    """An MLflow server of the test's own (sqlite in tmp), so it can be stopped and started on the
    same port without disturbing the shared one."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        (self.root / "artifacts").mkdir(parents=True, exist_ok=True)
        log = (self.root / "mlflow.log").open("ab")
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "mlflow"),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--backend-store-uri",
                f"sqlite:///{self.root / 'mlflow.db'}",
                "--artifacts-destination",
                str(self.root / "artifacts"),
                "--workers",
                "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true"),
        )

        def up() -> bool:
            try:
                return requests.get(f"{self.uri}/health", timeout=1).ok
            except requests.RequestException:
                return False

        wait_for(up, 120, "private MLflow /health")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)


def test_registry_outage_keeps_serving_reports_condition_and_recovers(
    kube: Kube, start_operator, namespace: str, tmp_path: Path
) -> None:
    mlflow = PrivateMlflow(tmp_path / "mlflow")
    mlflow.start()
    try:
        reg = Registry(mlflow.uri)
        model = reg.new_model(versions=1)
        reg.set_alias(model, "champion", "1")
        start_operator(namespace, webhook=False)
        kube.create_md(
            namespace,
            "m",
            {
                "model": {"name": model, "alias": "champion"},
                "registry": {"trackingUri": mlflow.uri, "pollInterval": "5s"},
            },
        )
        kube.wait_phase(namespace, "m", "Healthy", serving="1")
        before = kube.deployment(namespace, "m")

        mlflow.stop()

        def unreachable() -> dict | None:
            c = kube.condition(namespace, "m", "RegistryReachable")
            return c if c.get("status") == "False" else None

        cond = wait_for(unreachable, 60, "RegistryReachable=False")
        assert cond["reason"] == "RegistryUnreachable"
        assert cond["message"]  # says what failed
        st = kube.status(namespace, "m")
        assert st["phase"] == "Healthy" and st["servingVersion"] == "1"
        assert next(c for c in st["conditions"] if c["type"] == "Ready")["status"] == "True"
        after = kube.deployment(namespace, "m")
        assert after.metadata.generation == before.metadata.generation  # untouched
        assert after.status.available_replicas == 1
        assert kube.events(namespace, "RegistryUnreachable")

        mlflow.start()

        def reachable() -> bool:
            return kube.condition(namespace, "m", "RegistryReachable").get("status") == "True"

        wait_for(reachable, 90, "RegistryReachable=True after the registry is back")
        reg.set_alias(model, "champion", reg.add_version(model))
        kube.wait_phase(namespace, "m", "Healthy", serving="2", timeout=60)
    finally:
        mlflow.stop()


def _kubectl(cluster: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cluster.kubectl, *args], capture_output=True, text=True, check=check)


def test_monitoring_objects_skipped_without_crds_and_applied_once_they_exist(
    kube: Kube, registry: Registry, start_operator, namespace: str, cluster: Cluster
) -> None:
    crds = [
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
    ]
    _kubectl(cluster, "delete", "--ignore-not-found", "--wait=true", *crds)
    model = registry.new_model()
    start_operator(namespace)
    kube.create_md(namespace, "mon", {"model": {"name": model, "version": "1"}})
    st = kube.wait_phase(namespace, "mon", "Healthy", serving="1")
    cond = next(c for c in st["conditions"] if c["type"] == "MonitoringReady")
    assert (cond["status"], cond["reason"]) == ("False", "MonitoringCRDsMissing")
    assert "ServiceMonitor and PrometheusRule skipped" in cond["message"]

    # The Prometheus Operator's own CRDs, from its published Go module at the pinned version.
    devstack.install_monitoring_crds(cluster.kubectl)

    def applied() -> bool:
        return kube.condition(namespace, "mon", "MonitoringReady").get("status") == "True"

    wait_for(applied, 60, "MonitoringReady=True after the CRDs appear")
    group, version = "monitoring.coreos.com", "v1"
    sm = kube.custom.get_namespaced_custom_object(
        group, version, namespace, "servicemonitors", "mon"
    )
    rule = kube.custom.get_namespaced_custom_object(
        group, version, namespace, "prometheusrules", "mon"
    )
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    assert sm["metadata"]["ownerReferences"][0]["name"] == "mon"
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert alerts == {"ModelHighErrorRate", "ModelHighLatency", "ModelInputDrift"}
    records = {r["record"] for g in rule["spec"]["groups"] for r in g["rules"] if "record" in r}
    assert {"modeldeploy:feedback_accuracy", "modeldeploy:feature_drift_psi"} <= records

    # Turning alerts off removes the PrometheusRule (and only it).
    kube.custom.patch_namespaced_custom_object(
        "modeldeploy.io",
        "v1alpha1",
        namespace,
        "modeldeployments",
        "mon",
        {"spec": {"monitoring": {"alerts": {"enabled": False}}}},
    )

    def rule_gone() -> bool:
        try:
            kube.custom.get_namespaced_custom_object(
                group, version, namespace, "prometheusrules", "mon"
            )
            return False
        except ApiException as exc:
            return exc.status == 404

    wait_for(rule_gone, 30, "PrometheusRule pruned")
    assert kube.custom.get_namespaced_custom_object(
        group, version, namespace, "servicemonitors", "mon"
    )
