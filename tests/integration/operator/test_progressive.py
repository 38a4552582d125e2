"""Progressive delivery (issue 12) against the real API server, MLflow, Prometheus and its
Pushgateway, with the operator run as users run it (a subprocess).

No serving pod runs anywhere: kwok marks pods ready, so Deployments become available by
themselves, and the serving traffic the analysis judges is pushed to the stack's Pushgateway
(`Traffic`) with the namespace/modeldeployment/model_version labels a ServiceMonitor gives a
serving pod's series; Prometheus scrapes it with honor_labels, so the operator's queries find
them exactly where they would find a real canary's.

Transient states (a step's Scaling, Promoting, a blue-green switch, a route's weights between two
steps) are recorded from watches (`Timeline`), not polled: a state that lasts one reconcile is
then seen as surely as one that lasts a minute.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import stack as devstack
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from modeldeploy import names
from tests.conftest import REPO, Cluster
from tests.integration.operator.conftest import (
    GROUP,
    PLURAL,
    VERSION,
    Kube,
    Operator,
    Registry,
    delete_registry_webhooks,
    free_port,
    wait_for,
)

log = logging.getLogger(__name__)

MIN_REQUESTS = 5  # spec.strategy.analysis.minRequests of every test here
OK_PER_PUSH = 20  # 200s a healthy version answers between two pushes (one a second)
TRACK, VERSION_LABEL = names.LABEL_TRACK, names.LABEL_MODEL_VERSION
GATEWAY_API_VERSION = "v1.4.1"
ROUTE_GROUP, ROUTE_VERSION, ROUTES = "gateway.networking.k8s.io", "v1", "httproutes"


# --- the operator, from this checkout -------------------------------------------------------


def worktree_env() -> dict[str, str]:
    """PYTHONPATH with this checkout's operator package first. The console script the harness
    starts belongs to the shared virtualenv, whose editable install points at another checkout;
    PYTHONPATH entries come before site-packages (and its .pth paths) on sys.path, so the
    subprocess imports the code under test."""
    paths = [str(REPO / "operator"), *filter(None, os.environ.get("PYTHONPATH", "").split(":"))]
    return {"PYTHONPATH": ":".join(dict.fromkeys(paths))}


@pytest.fixture(scope="module")
def worktree_code() -> dict[str, str]:
    env = worktree_env()
    out = subprocess.run(
        [sys.executable, "-c", "import modeldeploy; print(modeldeploy.__file__)"],
        env=dict(os.environ, **env),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == str(REPO / "operator" / "modeldeploy" / "__init__.py"), out
    return env


@pytest.fixture
def operator(
    start_operator: Callable[..., Operator],
    prometheus_url: str,
    worktree_code: dict[str, str],
    registry: Registry,
    namespace: str,
) -> Iterator[Callable[..., Operator]]:
    """start_operator with this checkout's code, the stack's Prometheus (or `prometheus`) and a
    registry webhook of the test's own. The shared MLflow may be used by other test sessions at
    the same time: under the default webhook name, the last operator started anywhere would get
    every alias move, and this test's would wait for its next registry poll instead."""
    hook_name = f"pd-{namespace}"  # MLflow: under 63 characters
    started: list[Operator] = []

    def start(ns: str, prometheus: str | None = None, **kwargs: Any) -> Operator:
        env = {
            **worktree_code,
            "MODELDEPLOY_PROMETHEUS_URL": prometheus or prometheus_url,
            **kwargs.pop("extra_env", {}),
        }
        args = ["--registry-webhook-name", hook_name, *kwargs.pop("extra_args", [])]
        op = start_operator(ns, extra_env=env, extra_args=args, **kwargs)
        started.append(op)
        return op

    yield start
    for op in started:
        op.stop()
    delete_registry_webhooks(registry.uri, {hook_name})


# --- serving traffic, as the serving pods' /metrics would count it ---------------------------


class Traffic:
    """Counters of prediction_requests_total per version and code for one ModelDeployment,
    grown every second and pushed (PUT: the whole group) to the Pushgateway, so increase() over
    any window of a running step sees the traffic of that window."""

    JOB = "modeldeploy-progressive-test"

    def __init__(self, pushgateway_url: str, namespace: str, name: str) -> None:
        self.group = (
            f"{pushgateway_url}/metrics/job/{self.JOB}/namespace/{namespace}/modeldeployment/{name}"
        )
        self._rates: dict[str, tuple[int, int]] = {}
        self._counts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"traffic-{name}", daemon=True)
        self._thread.start()

    def serve(self, version: str, ok: int = OK_PER_PUSH, errors: int = 0) -> None:
        """From now on `version` answers `ok` 200s and `errors` 500s a second."""
        with self._lock:
            self._rates[version] = (ok, errors)

    def _exposition(self) -> str:
        lines = [f"# TYPE {names.PREDICTION_REQUESTS} counter"]
        for (version, code), count in sorted(self._counts.items()):
            labels = f'{names.PROM_MODEL_VERSION}="{version}",{names.LABEL_CODE}="{code}"'
            lines.append(f"{names.PREDICTION_REQUESTS}{{{labels}}} {count}")
        return "\n".join(lines) + "\n"

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                for version, (ok, errors) in self._rates.items():
                    for code, n in (("200", ok), ("500", errors)):
                        key = (version, code)
                        self._counts[key] = self._counts.get(key, 0) + n
                body = self._exposition()
            if not self._counts:
                continue
            try:
                requests.put(self.group, data=body, timeout=5).raise_for_status()
            except requests.RequestException as exc:  # the next push carries the counts
                log.warning("push to %s failed: %s", self.group, exc)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        requests.delete(self.group, timeout=5)


@pytest.fixture
def traffic(pushgateway_url: str, namespace: str) -> Iterator[Callable[[str], Traffic]]:
    made: list[Traffic] = []

    def make(name: str) -> Traffic:
        t = Traffic(pushgateway_url, namespace, name)
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()


# --- watching what the operator does -------------------------------------------------------


def _get(obj: Any, *path: str) -> Any:
    """A field of a dict (custom objects) or a client model (built-in kinds), by the camelCase
    path for dicts and the snake_case one for models."""
    for key in path:
        if obj is None:
            return None
        obj = obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)
    return obj


class Timeline:
    """Every distinct value `project` takes on one object, in order, from a watch; None once
    the object is absent."""

    def __init__(
        self, list_fn: Callable[..., Any], name: str, project: Callable[[Any], Any]
    ) -> None:
        self.values: list[Any] = []
        self._list = functools.partial(list_fn, field_selector=f"metadata.name={name}")
        self._project = project
        self._stop = threading.Event()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"timeline-{name}", daemon=True)
        self._thread.start()
        assert self._started.wait(30), f"the watch of {name} did not start"

    def _record(self, obj: Any) -> None:
        value = None if obj is None else self._project(obj)
        if not self.values or self.values[-1] != value:
            self.values.append(value)

    def _run(self) -> None:
        rv: str | None = None
        while not self._stop.is_set():
            try:
                if rv is None:
                    listed = self._list()
                    items = _get(listed, "items") or []
                    self._record(items[0] if items else None)
                    meta = _get(listed, "metadata")
                    rv = _get(meta, "resourceVersion") or _get(meta, "resource_version")
                    self._started.set()
                w = watch.Watch()
                for ev in w.stream(self._list, resource_version=rv, timeout_seconds=5):
                    if ev["type"] == "ERROR":
                        rv = None
                        break
                    obj = ev["object"]
                    meta = _get(obj, "metadata")
                    rv = _get(meta, "resourceVersion") or _get(meta, "resource_version") or rv
                    self._record(None if ev["type"] == "DELETED" else obj)
                    if self._stop.is_set():
                        w.stop()
            except ApiException as exc:
                if exc.status != 410:
                    log.warning("watch failed: %s", exc)
                    time.sleep(0.5)
                rv = None
            except Exception as exc:  # a dropped connection: resume from rv
                log.warning("watch interrupted: %s", exc)
                time.sleep(0.2)

    def close(self) -> list[Any]:
        self._stop.set()
        self._thread.join(15)
        return list(self.values)


@pytest.fixture
def timelines() -> Iterator[list[Timeline]]:
    made: list[Timeline] = []
    yield made
    for t in made:
        t.close()


def in_order(seen: Sequence[Any], expected: Sequence[Any]) -> bool:
    """`expected` is a subsequence of `seen`."""
    it = iter(seen)
    return all(any(v == e for v in it) for e in expected)


def canary_states(values: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    for c in values:
        state = (c["version"], c["step"], c["state"]) if c else None
        if not out or out[-1] != state:
            out.append(state)
    return out


# --- helpers ----------------------------------------------------------------------------------


def canary_spec(
    model: str,
    steps: Sequence[tuple[int, str]] = ((10, "10s"), (50, "10s")),
    replicas: int = 2,
    route: str | None = None,
) -> dict[str, Any]:
    canary: dict[str, Any] = {"steps": [{"weight": w, "duration": d} for w, d in steps]}
    if route:
        canary["trafficRouting"] = {"httpRoute": {"name": route}}
    return {
        "model": {"name": model, "alias": "champion"},
        "serving": {"replicas": replicas},
        "strategy": {
            "type": "Canary",
            "canary": canary,
            "analysis": {"interval": "2s", "minRequests": MIN_REQUESTS},
        },
    }


def canary(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    return kube.status(namespace, name).get("canary") or {}


def wait_canary(
    kube: Kube,
    namespace: str,
    name: str,
    check: Callable[[dict[str, Any]], bool],
    what: str,
    timeout: float = 60,
) -> dict[str, Any]:
    def seen() -> dict[str, Any] | None:
        c = canary(kube, namespace, name)
        return c if c and check(c) else None

    return wait_for(seen, timeout, f"{namespace}/{name} status.canary {what}")


def template_version(dep: Any) -> str:
    return str(dep.spec.template.metadata.labels[VERSION_LABEL])


def env_of(dep: Any) -> dict[str, str]:
    return {e.name: e.value for e in dep.spec.template.spec.containers[0].env}


def service(kube: Kube, namespace: str, name: str) -> Any:
    try:
        return kube.core.read_namespaced_service(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def history(st: dict[str, Any]) -> list[tuple[str, str]]:
    return [(h["version"], h["outcome"]) for h in st.get("history", [])]


def md_list(kube: Kube, namespace: str) -> Callable[..., Any]:
    return functools.partial(
        kube.custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL
    )


def watch_canary(kube: Kube, namespace: str, name: str, timelines: list[Timeline]) -> Timeline:
    t = Timeline(md_list(kube, namespace), name, lambda md: (md.get("status") or {}).get("canary"))
    timelines.append(t)
    return t


def field_owners(obj: Any, *path: str) -> set[str]:
    """Managers whose managedFields entry holds the field at `path` (f:spec, f:replicas ...)."""
    owners = set()
    for entry in obj.metadata.managed_fields or ():
        fields = entry.fields_v1 or {}
        for key in path:
            fields = fields.get(key) if isinstance(fields, dict) else None
        if fields is not None:
            owners.add(entry.manager)
    return owners


def metric_value(text: str, sample: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def printed_row(cluster: Cluster, namespace: str, name: str) -> tuple[list[str], list[str]]:
    lines = subprocess.run(
        [*cluster.kubectl, "get", "md", name, "-n", namespace],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return lines[0].split(), lines[1].split()


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# --- 1. autoscaling ---------------------------------------------------------------------------


def test_autoscaling_renders_hpa_whose_replicas_the_operator_leaves_alone(
    kube: Kube, registry: Registry, operator: Callable[..., Operator], namespace: str
) -> None:
    """The cluster's own HPA controller (kube-controller-manager) sets the replicas: without a
    metrics server it cannot compute a recommendation, but it still raises a Deployment below
    minReplicas to it (at its first sync, ~15 s after the HPA appears), which is what takes the
    Deployment here from the API server's default of 1 to 2; the rollout counts as complete only
    then. The scale to 4 is made by the test through the scale subresource, as the HPA would
    make it (no metrics server here to make the HPA want 4): it survives reconciles and a new
    version's rollout, because under server-side apply the operator never owns spec.replicas."""
    hpa_api = client.AutoscalingV2Api(kube.cluster.api_client())
    model = registry.new_model(versions=2)
    registry.set_alias(model, "champion", "1")
    operator(namespace)
    kube.create_md(
        namespace,
        "auto",
        {
            "model": {"name": model, "alias": "champion"},
            # Ignored while autoscaling is on; the spec's again once it is off.
            "serving": {"replicas": 3, "autoscaling": {"minReplicas": 2, "maxReplicas": 5}},
        },
    )

    hpa = wait_for(
        lambda: _or_none(
            lambda: hpa_api.read_namespaced_horizontal_pod_autoscaler("auto", namespace)
        ),
        30,
        "HorizontalPodAutoscaler auto",
    )
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (2, 5)
    ref = hpa.spec.scale_target_ref
    assert (ref.api_version, ref.kind, ref.name) == ("apps/v1", "Deployment", "auto")
    assert hpa.metadata.owner_references[0].kind == "ModelDeployment"

    st = kube.wait_phase(namespace, "auto", "Healthy", serving="1", timeout=90)
    dep = kube.deployment(namespace, "auto")
    assert dep.spec.replicas == 2 and dep.status.available_replicas == 2
    assert names.FIELD_MANAGER not in field_owners(dep, "f:spec", "f:replicas")
    # The HPA controller's own Event says it set them (its writes through the scale
    # subresource leave no managedFields entry on the Deployment).
    rescaled = kube.events(namespace, "SuccessfulRescale")
    assert any(
        "New size: 2" in e.message and "below Spec.MinReplicas" in e.message for e in rescaled
    ), [e.message for e in rescaled]
    assert history(st) == [("1", "Succeeded")]

    # The autoscaler's move, made here through the same scale subresource it uses.
    kube.apps.patch_namespaced_deployment_scale(
        "auto", namespace, {"spec": {"replicas": 4}}, field_manager="hpa-stand-in"
    )
    # A nudge that makes the operator apply the Deployment again: a new version.
    registry.set_alias(model, "champion", "2")
    kube.wait_phase(namespace, "auto", "Healthy", serving="2", timeout=60)
    dep = kube.deployment(namespace, "auto")
    assert template_version(dep) == "2"
    assert dep.spec.replicas == 4 and dep.status.available_replicas == 4
    assert names.FIELD_MANAGER not in field_owners(dep, "f:spec", "f:replicas")

    # Autoscaling off: the HPA goes and spec.serving.replicas counts again.
    kube.custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "auto", {"spec": {"serving": {"autoscaling": None}}}
    )
    wait_for(
        lambda: _gone(lambda: hpa_api.read_namespaced_horizontal_pod_autoscaler("auto", namespace)),
        30,
        "HorizontalPodAutoscaler deleted",
    )
    wait_for(
        lambda: (
            (kube.deployment(namespace, "auto").status.available_replicas or 0) == 3
            and kube.deployment(namespace, "auto").spec.replicas == 3
        ),
        60,
        "3 replicas, as spec.serving.replicas says",
    )
    dep = kube.deployment(namespace, "auto")
    assert names.FIELD_MANAGER in field_owners(dep, "f:spec", "f:replicas")
    assert "modeldeploy.io/autoscaled" not in (dep.metadata.annotations or {})
    kube.wait_phase(namespace, "auto", "Healthy", serving="2")
    time.sleep(3)  # no HPA left to move them back
    assert kube.deployment(namespace, "auto").spec.replicas == 3


def _or_none(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _gone(read: Callable[[], Any]) -> bool:
    return _or_none(read) is None


# --- 2. a canary without a route, no traffic --------------------------------------------------


def test_canary_starts_beside_stable_and_holds_without_traffic(
    kube: Kube,
    registry: Registry,
    operator: Callable[..., Operator],
    namespace: str,
    cluster: Cluster,
) -> None:
    model = registry.new_model(versions=2)
    registry.set_alias(model, "champion", "1")
    operator(namespace)
    kube.create_md(namespace, "fraud", canary_spec(model))
    kube.wait_phase(namespace, "fraud", "Healthy", serving="1")
    assert "canary" not in kube.status(namespace, "fraud")
    assert kube.deployment(namespace, "fraud-canary") is None

    registry.set_alias(model, "champion", "2")
    wait_for(
        lambda: (
            (d := kube.deployment(namespace, "fraud-canary")) is not None
            and (d.status.available_replicas or 0) == 1
        ),
        60,
        "canary Deployment available",
    )
    can = kube.deployment(namespace, "fraud-canary")
    assert can.spec.replicas == 1  # max(1, round(2 * 10 / 90))
    assert template_version(can) == "2" and env_of(can)["MODEL_VERSION"] == "2"
    assert can.spec.template.metadata.labels[TRACK] == "canary"
    assert can.spec.selector.match_labels[TRACK] == "canary"
    assert can.metadata.owner_references[0].kind == "ModelDeployment"
    stable = kube.deployment(namespace, "fraud")
    assert template_version(stable) == "1" and stable.spec.replicas == 2
    assert stable.spec.template.metadata.labels[TRACK] == "stable"
    # Without a route the Service spreads over both tracks: traffic follows the pod share.
    assert TRACK not in kube.core.read_namespaced_service("fraud", namespace).spec.selector
    assert service(kube, namespace, "fraud-canary") is None

    c = wait_canary(kube, namespace, "fraud", lambda c: c["state"] != "Scaling", "analysing")
    assert (c["version"], c["strategy"], c["step"], c["steps"], c["weight"]) == (
        "2",
        "Canary",
        0,
        2,
        10,
    )
    assert c["effectiveWeight"] == 33  # 1 canary pod ready beside 2 stable ones
    st = kube.status(namespace, "fraud")
    assert st["phase"] == "Progressing" and st["servingVersion"] == "1"

    # No series for this namespace at all: too few requests, never a pass.
    c = wait_canary(
        kube, namespace, "fraud", lambda c: c["state"] == "Holding", "holding", timeout=40
    )
    assert c["step"] == 0 and c["weight"] == 10
    record = next(a for a in c["analysis"] if a["step"] == 0)
    assert record["verdict"] == "Inconclusive"
    assert (
        ts(kube.status(namespace, "fraud")["canary"]["lastAnalysisAt"]) - ts(c["stepStartedAt"])
        >= 10
    )
    cond = kube.condition(namespace, "fraud", "Analysis")
    assert (cond["status"], cond["reason"]) == ("False", "AnalysisInconclusive")
    assert "0 canary requests" in cond["message"] and f"{MIN_REQUESTS} needed" in cond["message"]
    holding = kube.events(namespace, "CanaryHolding")
    assert len(holding) == 1 and holding[0].type == "Warning"

    header, row = printed_row(cluster, namespace, "fraud")
    assert header == [
        "NAME", "MODEL", "SELECTOR", "SERVING", "PHASE", "CANARY", "STEP", "WEIGHT", "READY",
        "AGE",
    ]  # fmt: skip
    assert row[:10] == [
        "fraud", model, "@champion", "1", "Progressing", "2", "1/2", "holding", "33", "False",
    ]  # fmt: skip

    time.sleep(4)  # two more analyses: still held at the first step, nothing promoted
    c = canary(kube, namespace, "fraud")
    assert (c["step"], c["state"]) == (0, "Holding")
    assert template_version(kube.deployment(namespace, "fraud")) == "1"
    assert len(kube.events(namespace, "CanaryHolding")) == 1
    assert kube.events(namespace, "CanaryStarted") and not kube.events(namespace, "CanaryPromoting")


# --- 3. analysis passes, then fails, on real series -------------------------------------------


def test_canary_promotes_on_passing_analysis_and_rolls_back_on_failing_one(
    kube: Kube,
    registry: Registry,
    operator: Callable[..., Operator],
    namespace: str,
    traffic: Callable[[str], Traffic],
    timelines: list[Timeline],
) -> None:
    model = registry.new_model(versions=3)
    registry.set_alias(model, "champion", "1")
    served = traffic("fraud")
    served.serve("1")
    op = operator(namespace)
    kube.create_md(namespace, "fraud", canary_spec(model))
    kube.wait_phase(namespace, "fraud", "Healthy", serving="1")

    served.serve("2")  # healthy: plenty of 200s, no 500s
    states = watch_canary(kube, namespace, "fraud", timelines)
    registry.set_alias(model, "champion", "2")
    st = kube.wait_phase(namespace, "fraud", "Healthy", serving="2", timeout=90)

    seen = states.close()
    assert in_order(
        canary_states(seen),
        [
            ("2", 0, "Scaling"),
            ("2", 0, "Analysing"),
            ("2", 1, "Scaling"),
            ("2", 1, "Analysing"),
            ("2", 1, "Promoting"),
            None,
        ],
    ), canary_states(seen)
    promoting = next(c for c in seen if c and c["state"] == "Promoting")
    passed = {a["step"]: a for a in promoting["analysis"]}
    assert [passed[s]["verdict"] for s in (0, 1)] == ["Passed", "Passed"]
    assert all(passed[s]["canaryRequests"] >= MIN_REQUESTS for s in (0, 1))
    assert all(passed[s]["canaryErrorRate"] == 0 for s in (0, 1))
    assert history(st) == [("1", "Succeeded"), ("2", "Succeeded")]
    assert "canary" not in st
    assert template_version(kube.deployment(namespace, "fraud")) == "2"
    wait_for(lambda: kube.deployment(namespace, "fraud-canary") is None, 30, "canary deleted")
    assert len(kube.events(namespace, "CanaryStarted")) == 1
    steps = [e.message for e in kube.events(namespace, "CanaryStep")]
    assert any("step 1/2 (10%) passed" in m for m in steps), steps
    assert len(kube.events(namespace, "CanaryPromoting")) == 1

    # Version 3 answers half its requests with 500s: the first judged window fails it.
    served.serve("3", ok=10, errors=10)
    registry.set_alias(model, "champion", "3")
    st = kube.wait_phase(namespace, "fraud", "RolledBack", serving="2", timeout=60)
    assert st["rejectedVersions"] == ["3"]
    assert "canary" not in st
    rolled = kube.condition(namespace, "fraud", "RolledBack")
    assert (rolled["status"], rolled["reason"]) == ("True", names.CANARY_ANALYSIS)
    assert "error rate" in rolled["message"] and "version 3" in rolled["message"]
    assert history(st)[:3] == [("1", "Succeeded"), ("2", "Succeeded"), ("3", "RolledBack")]
    assert history(st)[3][0] == "2"
    wait_for(lambda: kube.deployment(namespace, "fraud-canary") is None, 30, "canary deleted")
    assert template_version(kube.deployment(namespace, "fraud")) == "2"
    assert kube.events(namespace, "RolledBack")
    rollbacks = metric_value(
        op.metrics(),
        names.OP_ROLLBACKS,
        namespace=namespace,
        name="fraud",
        alert=names.CANARY_ANALYSIS,
    )
    assert rollbacks == 1
    tags = registry.client.get_model_version(model, "3").tags
    assert names.CANARY_ANALYSIS in tags.get(names.TAG_REJECTED, "")


# --- 4. the alias moves mid-canary -------------------------------------------------------------


def test_alias_move_mid_canary_restarts_canary_on_new_version(
    kube: Kube, registry: Registry, operator: Callable[..., Operator], namespace: str
) -> None:
    model = registry.new_model(versions=3)
    registry.set_alias(model, "champion", "1")
    operator(namespace)
    kube.create_md(namespace, "fraud", canary_spec(model))
    kube.wait_phase(namespace, "fraud", "Healthy", serving="1")
    registry.set_alias(model, "champion", "2")
    first = wait_canary(
        kube, namespace, "fraud", lambda c: c["version"] == "2" and c["state"] != "Scaling", "v2"
    )
    assert first["step"] == 0
    uid = kube.deployment(namespace, "fraud-canary").metadata.uid

    moved = math.floor(time.time())  # status times are whole seconds
    registry.set_alias(model, "champion", "3")
    c = wait_canary(
        kube, namespace, "fraud", lambda c: c["version"] == "3" and c["state"] != "Scaling", "v3"
    )
    assert c["step"] == 0 and c["weight"] == 10
    assert ts(c["startedAt"]) >= moved and ts(c["stepStartedAt"]) >= moved
    can = kube.deployment(namespace, "fraud-canary")
    assert template_version(can) == "3" and env_of(can)["MODEL_VERSION"] == "3"
    assert can.metadata.uid == uid  # the same Deployment, rolled to the new version
    assert template_version(kube.deployment(namespace, "fraud")) == "1"
    st = kube.status(namespace, "fraud")
    assert history(st) == [("1", "Succeeded"), ("2", "Superseded"), ("3", "Progressing")]
    assert st["phase"] == "Progressing" and st["servingVersion"] == "1"
    started = [e.message for e in kube.events(namespace, "CanaryStarted")]
    assert len(started) == 2 and any("replacing the canary of version 2" in m for m in started)


# --- 5. an operator restart mid-canary --------------------------------------------------------


def test_operator_restart_mid_canary_resumes_at_the_same_step(
    kube: Kube,
    registry: Registry,
    operator: Callable[..., Operator],
    namespace: str,
    traffic: Callable[[str], Traffic],
) -> None:
    model = registry.new_model(versions=2)
    registry.set_alias(model, "champion", "1")
    served = traffic("fraud")
    served.serve("1")
    served.serve("2")
    op = operator(namespace)
    # The second step is long enough for a restart to happen inside it.
    kube.create_md(namespace, "fraud", canary_spec(model, steps=((10, "10s"), (50, "30s"))))
    kube.wait_phase(namespace, "fraud", "Healthy", serving="1")
    registry.set_alias(model, "champion", "2")
    before = wait_canary(
        kube,
        namespace,
        "fraud",
        lambda c: c["step"] == 1 and c["state"] == "Analysing" and bool(c.get("lastAnalysisAt")),
        "at step 2, analysed once",
        timeout=60,
    )
    uid = kube.deployment(namespace, "fraud-canary").metadata.uid

    op.stop()
    stopped = time.time()
    before = canary(kube, namespace, "fraud")
    assert before["step"] == 1
    operator(namespace)

    after = wait_canary(
        kube,
        namespace,
        "fraud",
        lambda c: ts(c.get("lastAnalysisAt") or "1970-01-01T00:00:00Z") > stopped,
        "analysed by the new operator",
        timeout=30,
    )
    assert after["step"] == 1 and after["state"] in ("Analysing", "Promoting")
    assert after["stepStartedAt"] == before["stepStartedAt"]
    assert after["startedAt"] == before["startedAt"]
    assert kube.deployment(namespace, "fraud-canary").metadata.uid == uid
    assert len(kube.events(namespace, "CanaryStarted")) == 1

    st = kube.wait_phase(namespace, "fraud", "Healthy", serving="2", timeout=60)
    assert history(st) == [("1", "Succeeded"), ("2", "Succeeded")]
    wait_for(lambda: kube.deployment(namespace, "fraud-canary") is None, 30, "canary deleted")
    assert len(kube.events(namespace, "CanaryPromoting")) == 1


# --- 6. Prometheus unreachable ------------------------------------------------------------------


def test_unreachable_prometheus_holds_the_step(
    kube: Kube, registry: Registry, operator: Callable[..., Operator], namespace: str
) -> None:
    port = free_port()  # nothing listens there
    model = registry.new_model(versions=2)
    registry.set_alias(model, "champion", "1")
    operator(namespace, prometheus=f"http://127.0.0.1:{port}")
    kube.create_md(namespace, "fraud", canary_spec(model))
    kube.wait_phase(namespace, "fraud", "Healthy", serving="1")
    registry.set_alias(model, "champion", "2")

    c = wait_canary(kube, namespace, "fraud", lambda c: c["state"] == "Holding", "holding")
    assert (c["version"], c["step"]) == ("2", 0)
    assert c["analysis"][-1]["verdict"] == "Unavailable"
    cond = kube.condition(namespace, "fraud", "Analysis")
    assert (cond["status"], cond["reason"]) == ("False", "AnalysisUnavailable")
    assert f"Prometheus at 127.0.0.1:{port}" in cond["message"]
    holding = wait_for(lambda: kube.events(namespace, "CanaryHolding"), 10, "CanaryHolding Event")
    assert holding[0].type == "Warning"

    time.sleep(12)  # past the step's duration: held, not advanced, not rolled back
    c = canary(kube, namespace, "fraud")
    assert (c["version"], c["step"], c["state"]) == ("2", 0, "Holding")
    st = kube.status(namespace, "fraud")
    assert st["phase"] == "Progressing" and not st.get("rejectedVersions")
    assert not kube.condition(namespace, "fraud", "RolledBack")
    assert not kube.events(namespace, "RolledBack")
    assert template_version(kube.deployment(namespace, "fraud-canary")) == "2"
    assert template_version(kube.deployment(namespace, "fraud")) == "1"
    assert len(kube.events(namespace, "CanaryHolding")) == 1


# --- 7. exact weights on an HTTPRoute ---------------------------------------------------------


def gateway_crd_file() -> Path:
    """The HTTPRoute CRD of the Gateway API's published Go module (as dev/stack.py fetches the
    Prometheus Operator's). dev/stack.py's install_gateway_crds is used instead once it exists."""
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"sigs.k8s.io/gateway-api@{GATEWAY_API_VERSION}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tempfile.gettempdir(),
    )
    root = Path(json.loads(out.stdout)["Dir"]) / "config" / "crd" / "standard"
    return root / "gateway.networking.k8s.io_httproutes.yaml"


@pytest.fixture(scope="session")
def gateway_crds(cluster: Cluster) -> None:
    install = getattr(devstack, "install_gateway_crds", None)
    if install is not None:
        install(cluster.kubectl)
    else:
        devstack.apply_crds(
            cluster.kubectl, [gateway_crd_file()], ["httproutes.gateway.networking.k8s.io"]
        )


def route_weights(route: dict[str, Any]) -> tuple[int, ...]:
    refs = route["spec"]["rules"][0]["backendRefs"]
    return tuple(int(ref.get("weight", 1)) for ref in refs)


def test_http_route_gets_exact_weights_for_each_step(
    kube: Kube,
    registry: Registry,
    operator: Callable[..., Operator],
    namespace: str,
    traffic: Callable[[str], Traffic],
    timelines: list[Timeline],
    gateway_crds: None,
) -> None:
    model = registry.new_model(versions=2)
    registry.set_alias(model, "champion", "1")
    kube.custom.create_namespaced_custom_object(
        ROUTE_GROUP,
        ROUTE_VERSION,
        namespace,
        ROUTES,
        {
            "apiVersion": f"{ROUTE_GROUP}/{ROUTE_VERSION}",
            "kind": "HTTPRoute",
            "metadata": {"name": "fraud-route"},
            "spec": {
                "rules": [
                    {
                        "backendRefs": [
                            {"name": "fraud", "port": 8080, "weight": 100},
                            {"name": "fraud-canary", "port": 8080, "weight": 0},
                        ]
                    }
                ]
            },
        },
    )
    served = traffic("fraud")
    served.serve("1")
    operator(namespace)
    # 4 stable pods: the canary has 1 pod at 10 % and 2 at 50 %, so the second step scales it.
    kube.create_md(namespace, "fraud", canary_spec(model, replicas=4, route="fraud-route"))
    kube.wait_phase(namespace, "fraud", "Healthy", serving="1")
    assert kube.core.read_namespaced_service("fraud", namespace).spec.selector[TRACK] == "stable"
    routes = functools.partial(
        kube.custom.list_namespaced_custom_object, ROUTE_GROUP, ROUTE_VERSION, namespace, ROUTES
    )
    weights = Timeline(routes, "fraud-route", route_weights)
    timelines.append(weights)
    assert weights.values == [(100, 0)]

    registry.set_alias(model, "champion", "2")
    c = wait_canary(
        kube, namespace, "fraud", lambda c: c["state"] == "Holding", "holding without traffic"
    )
    route = kube.custom.get_namespaced_custom_object(
        ROUTE_GROUP, ROUTE_VERSION, namespace, ROUTES, "fraud-route"
    )
    assert route_weights(route) == (90, 10)
    assert c["effectiveWeight"] == 10 and c["weight"] == 10 and c["step"] == 0
    assert kube.deployment(namespace, "fraud-canary").spec.replicas == 1  # ceil(4 * 10 / 100)
    assert kube.core.read_namespaced_service("fraud", namespace).spec.selector[TRACK] == "stable"
    canary_svc = kube.core.read_namespaced_service("fraud-canary", namespace)
    assert canary_svc.spec.selector[TRACK] == "canary"
    assert canary_svc.metadata.owner_references[0].kind == "ModelDeployment"
    # The user's route keeps what the operator does not own.
    assert [r["name"] for r in route["spec"]["rules"][0]["backendRefs"]] == [
        "fraud",
        "fraud-canary",
    ]

    served.serve("2")
    kube.wait_phase(namespace, "fraud", "Healthy", serving="2", timeout=90)
    wait_for(lambda: service(kube, namespace, "fraud-canary") is None, 30, "canary Service deleted")
    wait_for(lambda: weights.values[-1] == (100, 0), 30, "weights back to 100/0")
    assert weights.close() == [(100, 0), (90, 10), (50, 50), (100, 0)]
    assert kube.core.read_namespaced_service("fraud", namespace).spec.selector[TRACK] == "stable"
    assert kube.deployment(namespace, "fraud-canary") is None


# --- 8. blue-green ----------------------------------------------------------------------------


def test_blue_green_switches_service_after_preview_passes(
    kube: Kube,
    registry: Registry,
    operator: Callable[..., Operator],
    namespace: str,
    traffic: Callable[[str], Traffic],
    timelines: list[Timeline],
) -> None:
    model = registry.new_model(versions=2)
    registry.set_alias(model, "champion", "1")
    served = traffic("fraud")
    served.serve("1")
    operator(namespace)
    kube.create_md(
        namespace,
        "fraud",
        {
            "model": {"name": model, "alias": "champion"},
            "serving": {"replicas": 2},
            "strategy": {
                "type": "BlueGreen",
                "blueGreen": {"duration": "10s"},
                "analysis": {"interval": "2s", "minRequests": MIN_REQUESTS},
            },
        },
    )
    kube.wait_phase(namespace, "fraud", "Healthy", serving="1")
    services = functools.partial(kube.core.list_namespaced_service, namespace)
    active = Timeline(services, "fraud", lambda s: s.spec.selector.get(TRACK))
    timelines.append(active)
    assert active.values == ["stable"]

    registry.set_alias(model, "champion", "2")
    c = wait_canary(kube, namespace, "fraud", lambda c: c["state"] == "Analysing", "analysing")
    assert (c["version"], c["strategy"], c["step"], c["steps"]) == ("2", "BlueGreen", 0, 1)
    preview = kube.deployment(namespace, "fraud-preview")
    assert preview.spec.replicas == 2 and template_version(preview) == "2"
    assert (preview.status.available_replicas or 0) == 2
    assert preview.spec.template.metadata.labels[TRACK] == "canary"
    preview_svc = kube.core.read_namespaced_service("fraud-preview", namespace)
    assert preview_svc.spec.selector[TRACK] == "canary"
    assert kube.core.read_namespaced_service("fraud", namespace).spec.selector[TRACK] == "stable"
    assert template_version(kube.deployment(namespace, "fraud")) == "1"
    assert kube.deployment(namespace, "fraud-canary") is None

    served.serve("2")
    st = kube.wait_phase(namespace, "fraud", "Healthy", serving="2", timeout=60)
    wait_for(lambda: active.values[-1] == "stable" and len(active.values) > 1, 30, "back to stable")
    assert active.close() == ["stable", "canary", "stable"]
    assert history(st) == [("1", "Succeeded"), ("2", "Succeeded")]
    assert template_version(kube.deployment(namespace, "fraud")) == "2"
    wait_for(
        lambda: (
            kube.deployment(namespace, "fraud-preview") is None
            and service(kube, namespace, "fraud-preview") is None
        ),
        30,
        "preview Deployment and Service deleted",
    )
    assert len(kube.events(namespace, "CanaryPromoting")) == 1
