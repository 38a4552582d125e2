"""The images, built with podman the way `make images` builds them, and run the way the operator
and the chart run them: as uid 65532, root filesystem read-only, a tmpfs at /tmp, every
capability dropped, and on the host's network listening on 127.0.0.1 only.

- The serving image serves a real MLflow sklearn model from a read-only mount: predictions and
  /metrics answer, and the image holds neither kopf nor kubernetes.
- The operator image runs with the chart's arguments and environment and only the chart's
  ServiceAccount token (chart-rendered RBAC, a TokenRequest token in a kubeconfig that holds
  nothing else) against the shared API server, and reconciles a ModelDeployment whose model is in
  the shared MLflow: the chart's RBAC is enough and the image starts."""

from __future__ import annotations

from pathlib import Path

import container_images
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from stack import free_port

from modeldeploy import names
from tests.conftest import Cluster, wait_for
from tests.images.conftest import Containers
from tests.integration.chart.conftest import Tools, chart_identity
from tests.integration.operator.conftest import Kube, Registry

pytestmark = pytest.mark.images

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
# How the operator's Deployment and the chart run the containers (securityContext and the /tmp
# emptyDir), in podman's words; --network host with every server bound to 127.0.0.1.
RESTRICTED = (
    "--user", "65532:65532",
    "--read-only",
    "--tmpfs", "/tmp:rw,size=64m,mode=1777",
    "--cap-drop", "ALL",
    "--security-opt", "no-new-privileges",
    "--network", "host",
)  # fmt: skip


def wait_http(containers: Containers, name: str, url: str, timeout: float = 120) -> None:
    """Until `url` answers 200; fails with the container's log if the container stops."""

    def up() -> bool:
        if not containers.running(name):
            raise AssertionError(f"container {name} stopped:\n{containers.logs(name)}")
        try:
            return requests.get(url, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(up, timeout, f"{url} answering 200", interval=0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- {name} log ---\n{containers.logs(name)}") from None


def samples(text: str, metric: str) -> list[tuple[dict[str, str], float]]:
    return [
        (s.labels, s.value)
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == metric
    ]


def test_serving_image_serves_a_read_only_model_as_non_root(
    images: dict[str, container_images.Built], containers: Containers, tmp_path: Path
) -> None:
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True, as_frame=True)
    X.columns = FEATURES
    clf = LogisticRegression(max_iter=500).fit(X, y)
    model_dir = tmp_path / "model"
    mlflow.sklearn.save_model(clf, str(model_dir), signature=infer_signature(X, clf.predict(X)))
    for path in [model_dir, *model_dir.rglob("*")]:  # readable by uid 65532, writable by none
        path.chmod(0o555 if path.is_dir() else 0o444)

    port = free_port()
    name = containers.run(
        images["serving"].tag,
        "--model-uri", "/model",
        "--model-name", "iris",
        "--model-version", "1",
        "--host", "127.0.0.1",
        "--port", str(port),
        options=(*RESTRICTED, "--volume", f"{model_dir}:/model:ro"),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_http(containers, name, f"{url}/health")

    rows = X.iloc[[0, 60, 120]]
    answer = requests.post(
        f"{url}/invocations",
        json={"dataframe_split": rows.to_dict(orient="split", index=False)},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == clf.predict(rows).tolist() == [0, 1, 2]
    bad = requests.post(f"{url}/invocations", json={"dataframe_split": {"x": 1}}, timeout=30)
    assert bad.status_code == 400, bad.text

    metrics = requests.get(f"{url}/metrics", timeout=10).text
    codes = {s[0]["code"]: s[1] for s in samples(metrics, names.PREDICTION_REQUESTS) if s[1]}
    assert codes == {"200": 1.0, "400": 1.0}
    classes = {s[0]["class"]: s[1] for s in samples(metrics, names.PREDICTION_CLASS)}
    assert classes == {"0": 1.0, "1": 1.0, "2": 1.0}
    assert {s[0]["model_name"] for s in samples(metrics, names.PREDICTION_REQUESTS)} == {"iris"}

    # Who it runs as, what it may write, and what it does not ship.
    assert containers.exec(name, "id", "-u").stdout.strip() == "65532"
    write = containers.exec(name, "python3", "-c", "open('/opt/venv/x', 'w')")
    assert write.returncode != 0 and "Read-only file system" in write.stderr, write.stderr
    assert containers.exec(name, "python3", "-c", "open('/tmp/x', 'w')").returncode == 0
    for module in ("kopf", "kubernetes"):
        found = containers.exec(name, "python3", "-c", f"import {module}")
        assert f"No module named '{module}'" in found.stderr, (module, found.stderr)
    assert containers.running(name), containers.logs(name)


def test_operator_image_reconciles_with_only_the_charts_service_account(
    images: dict[str, container_images.Built],
    containers: Containers,
    tools: Tools,
    cluster: Cluster,
    namespace: str,
    crd: None,
    registry: Registry,
    kube: Kube,
    mlflow_uri: str,
    tmp_path: Path,
) -> None:
    with chart_identity(tools, cluster, namespace, mlflow_uri, tmp_path) as chart:
        env = {**chart.env, "KUBECONFIG": "/etc/modeldeploy/kubeconfig"}
        name = containers.run(
            images["operator"].tag,
            *chart.args,
            options=(
                *RESTRICTED,
                "--volume", f"{chart.kubeconfig}:/etc/modeldeploy/kubeconfig:ro",
                *[f"--env={k}={v}" for k, v in env.items()],
            ),
        )  # fmt: skip
        wait_http(containers, name, f"http://127.0.0.1:{chart.ports['--health-port']}/healthz")
        # Ready: it read the Lease (the chart's leader-election Role) and leads.
        wait_http(containers, name, f"http://127.0.0.1:{chart.ports['--webhook-port']}/readyz")

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
            raise AssertionError(f"{exc}\n--- operator log ---\n{containers.logs(name)}") from None
        assert status["observedGeneration"] == 1
        assert status["modelUri"] == f"models:/{model}/1"
        served = kube.deployment(namespace, "m")
        image = next(a.split("=", 1)[1] for a in chart.args if a.startswith("--serving-image="))
        assert served.spec.template.spec.containers[0].image == image
        lease = tools.run(
            [*cluster.kubectl, "-n", namespace, "get", "lease", chart.lease,
             "-o", "jsonpath={.spec.holderIdentity}"]
        ).stdout  # fmt: skip
        assert lease == env["POD_NAME"]
        # The token is the operator's only identity, and nothing it did was refused (kopf's
        # listing of all namespaces included: namespace-scoped, it does not try).
        log = containers.logs(name, tail=None)
        refused = [
            line
            for line in log.splitlines()
            if "Forbidden" in line or "Not enough permissions" in line
        ]
        assert refused == [], "\n".join(refused)
        assert containers.running(name), log
