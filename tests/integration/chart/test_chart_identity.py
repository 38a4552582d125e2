"""The operator run with nothing but what the chart gives it, namespace-scoped: the chart's
arguments and environment, and a kubeconfig holding only the chart's ServiceAccount token (a
TokenRequest after applying the chart's rendered RBAC). The chart's RBAC is enough for a whole
rollout, and nothing the operator asks for is refused: it found kopf listing every namespace,
refused by design in this mode and retried for ~55 s before the first reconcile
(controller/handlers.py scan_needless). tests/images runs the same with the operator image."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import requests

from tests.conftest import Cluster, wait_for
from tests.integration.chart.conftest import Tools, chart_identity
from tests.integration.operator.conftest import (  # noqa: F401  (fixtures)
    Kube,
    Registry,
    crd,
    kube,
    registry,
)


def test_operator_with_only_the_charts_token_rolls_out_and_is_refused_nothing(
    tools: Tools,
    cluster: Cluster,
    namespace: str,
    crd: None,  # noqa: F811
    registry: Registry,  # noqa: F811
    kube: Kube,  # noqa: F811
    mlflow_uri: str,
    tmp_path: Path,
) -> None:
    with chart_identity(tools, cluster, namespace, mlflow_uri, tmp_path) as chart:
        env = {**os.environ, **chart.env, "KUBECONFIG": str(chart.kubeconfig)}
        log_path = tmp_path / "operator.log"
        modeldeploy = str(Path(sys.executable).parent / "modeldeploy")
        with log_path.open("wb") as out:
            proc = subprocess.Popen(
                [modeldeploy, "operator", *chart.args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:

            def ready() -> bool:
                assert proc.poll() is None, log_path.read_text()
                try:
                    url = f"http://127.0.0.1:{chart.ports['--webhook-port']}/readyz"
                    return requests.get(url, timeout=1).ok
                except requests.RequestException:
                    return False

            wait_for(ready, 60, "operator /readyz with the chart's token")
            model = registry.new_model()
            registry.set_alias(model, "champion", "1")
            kube.create_md(
                namespace,
                "m",
                {"model": {"name": model, "alias": "champion"}, "registry": {"pollInterval": "1h"}},
            )
            try:
                status = kube.wait_phase(namespace, "m", "Healthy", serving="1", timeout=90)
            except AssertionError as exc:
                log = log_path.read_text()
                raise AssertionError(f"{exc}\n--- operator log ---\n{log}") from None
            assert status["modelUri"] == f"models:/{model}/1"
            assert kube.deployment(namespace, "m").spec.replicas == 1
            log = log_path.read_text()
            refused = [
                line
                for line in log.splitlines()
                if "Forbidden" in line or "Not enough permissions" in line
            ]
            assert refused == [], "\n".join(refused)
            assert proc.poll() is None, log
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
