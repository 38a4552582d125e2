"""A real run on the local stack, then every panel of every shipped dashboard queried against
the real Prometheus: no query error and no empty result.

The run: a classifier trained by examples/train.py (its etl and training stages push to the
Pushgateway) and a regressor, each served by two pods of a ModelDeployment; predictions with
feedback labels to both pods (different amounts, different accuracy), a drifted batch, a pipeline
stage that fails and a retraining trigger, and a bad version rolled back by its alert. The
operator's own /metrics is scraped too, as a ServiceMonitor would in a cluster.

Along the way, the recorded accuracy of the classifier's two pods is checked against the
accuracy over all labelled requests: equal up to `increase()`'s extrapolation on a live
Prometheus (tests/unit/operator/test_quality_rules.py proves exact equality with promtool).
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
import requests
from mlflow.models import infer_signature
from podrunner import Endpoint, LocalPods
from prometheus_client import delete_from_gateway
from sklearn.datasets import load_diabetes, load_wine
from sklearn.linear_model import Ridge

from modeldeploy import names
from modeldeploy.serving.feedback import class_key, classification_stats
from modeldeploy.tracking import log_drift_baseline, pipeline_stage, record_retraining_trigger
from tests.conftest import REPO, TestStack, wait_for
from tests.e2e.conftest import Traffic, add_flaky_version
from tests.integration.operator.conftest import Kube, Registry

DASHBOARDS = sorted((REPO / "charts" / "modeldeploy" / "dashboards").glob("*.json"))
ALERTS = {"errorRate": 0.2, "for": "4s", "window": "20s", "qualityWindow": "10m", "minRows": 20}
INTERVALS = {"$__rate_interval": "30s", "$__interval": "10s", "$__range": "10m"}


def md_spec(model: str) -> dict[str, Any]:
    return {
        "model": {"name": model, "alias": "champion"},
        "serving": {"replicas": 2},
        "monitoring": {"serviceMonitor": {"interval": "2s"}, "alerts": ALERTS},
    }


def train_classifier(registry: Registry, pushgateway: str) -> tuple[str, Any, Any]:
    """examples/train.py as a data scientist runs it: a wine classifier, version 1."""
    model = f"wine-{os.urandom(3).hex()}"
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "train.py"), "--model", model],
        env=dict(os.environ, MLFLOW_TRACKING_URI=registry.uri, PUSHGATEWAY_URL=pushgateway),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    wine = load_wine(as_frame=True)
    return model, wine.data, wine.target


def train_regressor(registry: Registry) -> tuple[str, Any, Any]:
    model = f"diabetes-{os.urandom(3).hex()}"
    D, t = load_diabetes(return_X_y=True, as_frame=True)
    reg = Ridge().fit(D, t)
    mlflow.set_tracking_uri(registry.uri)
    with mlflow.start_run(experiment_id="0"):
        info = mlflow.sklearn.log_model(
            reg, name="model", signature=infer_signature(D, reg.predict(D)),
            registered_model_name=model,
        )  # fmt: skip
        log_drift_baseline(D, model_id=info.model_id, target=t)
    return model, D, t


def predict(ep: Endpoint, rows: Any) -> tuple[str, list[Any]]:
    r = requests.post(
        f"{ep.url}/invocations", json={"dataframe_split": rows.to_dict(orient="split")}, timeout=10
    )
    assert r.status_code == 200, r.text
    return r.headers["X-Request-ID"], r.json()["predictions"]


def feedback(ep: Endpoint, rid: str, labels: list[Any]) -> None:
    r = requests.post(f"{ep.url}/feedback", json={"request_id": rid, "labels": labels}, timeout=10)
    assert r.status_code == 200, r.text


def query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    body = requests.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=10).json()
    assert body["status"] == "success", (promql, body)
    return list(body["data"]["result"])


def scraped(prometheus: str, ns: str, md: str, pods: int) -> bool:
    """Every pod of `md` scraped at least once: its counters start from a zero sample."""
    sel = f'namespace="{ns}", modeldeployment="{md}"'
    return len(query(prometheus, f"{names.FEEDBACK_ROWS}{{{sel}}}")) == pods


@pytest.fixture
def operator_scraped(monitoring: TestStack, start_operator: Any, namespace: str) -> Iterator[Any]:
    op = start_operator(namespace)
    monitoring.stack.set_alert_webhook(f"http://127.0.0.1:{op.webhook_port}/alerts/alertmanager")
    target = f"operator-{namespace}"
    monitoring.stack.add_scrape_target(target, f"127.0.0.1:{op.metrics_port}")
    yield op
    monitoring.stack.remove_scrape_target(target)


def test_after_a_real_run_every_dashboard_panel_has_data(
    kube: Kube,
    registry: Registry,
    namespace: str,
    operator_scraped: Any,
    prometheus_url: str,
    pushgateway_url: str,
) -> None:
    cls_model, X, y = train_classifier(registry, pushgateway_url)
    reg_model, D, t = train_regressor(registry)
    try:
        run(kube, registry, namespace, prometheus_url, pushgateway_url, (cls_model, X, y),
            (reg_model, D, t))  # fmt: skip
    finally:
        for stage in ("etl", "training", "validation"):
            grouping = {names.PIPELINE_LABEL_PIPELINE: cls_model, names.PIPELINE_LABEL_STAGE: stage}
            delete_from_gateway(pushgateway_url, names.PIPELINE_JOB, grouping_key=grouping)


def run(
    kube: Kube,
    registry: Registry,
    ns: str,
    prometheus: str,
    pushgateway: str,
    classifier: tuple[str, Any, Any],
    regressor: tuple[str, Any, Any],
) -> None:
    cls_model, X, y = classifier
    reg_model, D, t = regressor
    # The pipeline: a stage that fails after its checks, and a retraining trigger.
    with pytest.raises(RuntimeError), pipeline_stage(
        "validation", pipeline=cls_model, gateway=pushgateway, strict=True
    ) as stage:  # fmt: skip
        stage.rows_in(len(X))
        stage.check("holdout_accuracy_above_0.8", passed=False, value=0.61)
        raise RuntimeError("holdout accuracy below 0.8")
    record_retraining_trigger(cls_model, "input_drift", gateway=pushgateway, strict=True)

    for model in (cls_model, reg_model):
        registry.set_alias(model, "champion", "1")
    kube.create_md(ns, "m", md_spec(cls_model))
    kube.create_md(ns, "r", md_spec(reg_model))
    for md in ("m", "r"):
        kube.wait_phase(ns, md, "Healthy", serving="1", timeout=90)

    with LocalPods(ns) as pods:
        for md in ("m", "r"):
            pods.wait_for_version(md, "1", timeout=120)
            wait_for(lambda md=md: len(pods.endpoints(md)) == 2, timeout=60, what=f"{md}: 2 pods")
            wait_for(lambda md=md: scraped(prometheus, ns, md, 2), timeout=60,
                     what=f"{md}: both pods scraped")  # fmt: skip
        scraped_since = time.monotonic()  # the pods' first samples are older than this
        pairs = label_classifier_traffic(pods.endpoints("m"), X, y)
        label_regressor_traffic(pods.endpoints("r"), D, t)
        drifted = X.sample(60, random_state=5)
        drifted["alcohol"] = drifted["alcohol"] + 5.0
        for first in range(0, 60, 20):
            predict(pods.endpoints("m")[0], drifted.iloc[first : first + 20])

        check_recorded_accuracy(prometheus, ns, pairs, scraped_since)

        # A bad version, rolled back by its alert while wine rows keep coming.
        bad = add_flaky_version(registry, cls_model)
        body = json.dumps({"dataframe_split": X.head(2).to_dict(orient="split")}).encode()
        with Traffic(pods, "m", good=body):
            registry.set_alias(cls_model, "champion", bad)
            kube.wait_phase(ns, "m", "RolledBack", serving="1", timeout=150)
            pods.wait_for_version("m", "1", timeout=90)
            time.sleep(6)  # version 1 answers again: a few scrapes of it

        empty = empty_panels(prometheus, {
            "namespace": ns, "modeldeployment": "m|r", "model": f"{cls_model}|{reg_model}",
            "version": ".*", "pipeline": cls_model, "stage": ".*",
        })  # fmt: skip
    assert not empty, "panels with no data after the run:\n" + "\n".join(empty)


def label_classifier_traffic(eps: list[Endpoint], X: Any, y: Any) -> dict[str, list[Any]]:
    """Pod 0: 30 rows, labels mostly true; pod 1: 90 rows, most labels wrong."""
    rng = random.Random(3)
    pairs: dict[str, list[Any]] = {}
    for ep, rows, wrong in ((eps[0], 30, 0.0), (eps[1], 90, 0.6)):
        seen = pairs.setdefault(ep.pod, [])
        for i in rng.sample(range(len(X)), rows):
            rid, (pred,) = predict(ep, X.iloc[[i]])
            truth = int(y.iloc[i])
            label = (truth + 1) % 3 if rng.random() < wrong else truth
            feedback(ep, rid, [label])
            seen.append((class_key(label), class_key(pred)))
    return pairs


def label_regressor_traffic(eps: list[Endpoint], D: Any, t: Any) -> None:
    for ep, rows in ((eps[0], 15), (eps[1], 25)):
        rid, _ = predict(ep, D.head(rows))
        feedback(ep, rid, [float(v) for v in t.head(rows)])


def check_recorded_accuracy(
    prometheus: str, ns: str, pairs: dict[str, list[Any]], scraped_since: float
) -> None:
    everything = [p for seen in pairs.values() for p in seen]
    direct = classification_stats(everything)
    per_pod = [classification_stats(seen) for seen in pairs.values()]
    assert direct is not None and all(per_pod)
    mean_of_pods = sum(s.accuracy for s in per_pod if s) / len(per_pod)
    sel = f'namespace="{ns}", modeldeployment="m", model_version="1"'

    def recorded() -> float | None:
        rows = query(prometheus, f"{names.REC_FEEDBACK_ROWS}{{{sel}}}")
        acc = query(prometheus, f"{names.REC_ACCURACY}{{{sel}}}")
        # All labels in (the counters are flat now), so increase() covers every row.
        if rows and acc and float(rows[0]["value"][1]) >= len(everything) * 0.97:
            return float(acc[0]["value"][1])
        return None

    # increase() extrapolates each pod's counters (first sample 0, taken before any request) to
    # the evaluation time, at most one scrape interval (2 s) past their last sample: a factor of
    # 1 + 2 s / (time scraped) per pod. Pods weighted by up to that much more move the pooled
    # accuracy by at most that share of the pods' spread around it.
    time.sleep(max(0.0, scraped_since + 60 - time.monotonic()))
    value = wait_for(recorded, timeout=60, what="recorded accuracy of both pods")
    spread = max(abs(s.accuracy - direct.accuracy) for s in per_pod if s)
    tolerance = 2 * 2.0 / (time.monotonic() - scraped_since) * spread
    print(f"\nrecorded accuracy {value:.4f}, direct {direct.accuracy:.4f}, "
          f"mean of pods {mean_of_pods:.4f}, tolerance {tolerance:.4f}")  # fmt: skip
    assert abs(value - direct.accuracy) <= tolerance
    assert abs(mean_of_pods - direct.accuracy) > 3 * tolerance  # the test tells the two apart


def empty_panels(prometheus: str, variables: dict[str, str]) -> list[str]:
    """Every target of every panel, variables filled, as a range query over the last 10 min."""
    empty = []
    end = time.time()
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for name, value in INTERVALS.items():
                    expr = expr.replace(name, value)
                expr = re.sub(r"\$(\w+)", lambda m: variables.get(m.group(1), ".*"), expr)
                body = requests.get(
                    f"{prometheus}/api/v1/query_range",
                    params={"query": expr, "start": end - 600, "end": end, "step": "5s"},
                    timeout=20,
                ).json()
                where = f"{Path(path).stem} / {panel['title']} / {target['refId']}"
                assert body["status"] == "success", (where, expr, body.get("error"))
                if not body["data"]["result"]:
                    empty.append(f"{where}: {expr}")
    return empty
