"""Parts of the stack killed under a running operator: the API server (20 s and 75 s, mid-rollout),
MLflow (a minute), Alertmanager and Prometheus (while an alert should roll a version back).

Everything killed here belongs to the suite's private stack (conftest.py `private`, `outage`).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import pytest
import requests
import stack as devstack

from modeldeploy.api import reasons as r
from tests.integration.faults.conftest import Private, Story, outage
from tests.integration.operator.conftest import Kube, wait_for
from tests.integration.operator.test_high_availability import reconciled

pytestmark = pytest.mark.faults
ALERT = "ModelHighErrorRate"
PARTS = ("cluster", "mlflow", "alertmanager", "prometheus")


def follow(kube: Kube, namespace: str, name: str, model: str, poll: str = "1h") -> Story:
    kube.create_md(
        namespace,
        name,
        {"model": {"name": model, "alias": "champion"}, "registry": {"pollInterval": poll}},
    )
    return Story(kube, namespace, name)


def healthy_on_v2(p: Private, namespace: str, name: str) -> tuple[str, Story]:
    """v1 rolled out, then v2: v2 serves with a healthy version to go back to."""
    model = p.registry.new_model(versions=2)
    p.registry.set_alias(model, "champion", "1")
    story = follow(p.kube, namespace, name, model)
    p.kube.wait_phase(namespace, name, r.HEALTHY, serving="1", timeout=90)
    p.registry.set_alias(model, "champion", "2")
    p.kube.wait_phase(namespace, name, r.HEALTHY, serving="2", timeout=60)
    return model, story


def test_api_server_killed_mid_rollout_20s_then_75s_rollouts_finish_once(private: Private) -> None:
    """Two outages in a row on the same ModelDeployments (one setup): 20 s while v1 → v2 rolls
    out, then 75 s while v2 → v3 does. In a 75 s outage the scheduler and controller-manager
    lose their leases and exit too; the supervisor brings them back with the API server."""
    p = private
    ns = p.namespace()
    op = p.operator([ns])
    try:
        # "mid": caught by the kill in the middle of its rollout; "moved": its alias moves while
        # the API server is down (the registry webhook arrives then).
        models = {name: p.registry.new_model(versions=3) for name in ("mid", "moved")}
        stories = {}
        for name, model in models.items():
            p.registry.set_alias(model, "champion", "1")
            stories[name] = follow(p.kube, ns, name, model)
        for name in models:
            p.kube.wait_phase(ns, name, r.HEALTHY, serving="1", timeout=90)
        mid = stories["mid"]
        for seconds, version in ((20, "2"), (75, "3")):
            # The rollout is held (paused Deployment) so that the kill lands in it, and let go
            # as soon as the API server is back.
            mid.pause()
            p.registry.set_alias(models["mid"], "champion", version)
            wait_for(
                lambda v=version: (
                    mid.status().get("phase") == r.PROGRESSING
                    and mid.status().get("resolvedVersion") == v
                    and mid.template_version() == v
                ),
                30,
                f"mid: rolling out version {version}",
            )
            with outage(p.stack, "cluster", seconds) as times:
                p.registry.set_alias(models["moved"], "champion", version)
            mid.pause(False)
            converged = {}
            for name, story in stories.items():
                wait_for(lambda s=story, v=version: s.serves(v), 120, f"{name}: v{version} serving")
                p.kube.wait_phase(ns, name, r.HEALTHY, serving=version, timeout=60)
                converged[name] = round(time.monotonic() - times["back"], 1)
            print(
                f"FAULT-TIMING api-server-{seconds}s seconds-after-ready={converged} "
                f"(API server ready {times['back'] - times['restarted']:.1f} s after its restart)"
            )
            assert op.proc is not None and op.proc.poll() is None, "the operator exited"
        versions = ("1", "2", "3")
        for name, story in stories.items():
            reconciled(p.kube, ns, name)
            assert story.history() == [(v, r.OUTCOME_SUCCEEDED) for v in versions], name
            assert [story.started(v) for v in versions] == [1, 1, 1], name
            assert story.messages(r.EV_ROLLOUT_SUCCEEDED) == [
                f"version {v} is serving" for v in versions
            ]
    finally:
        op.stop()


def test_mlflow_down_a_minute_serving_goes_on_and_everything_resumes(private: Private) -> None:
    p = private
    ns = p.namespace()
    op = p.operator([ns])
    try:
        model, other = p.registry.new_model(versions=2), p.registry.new_model(versions=1)
        p.registry.set_alias(model, "champion", "1")
        p.registry.set_alias(other, "champion", "1")
        serving = follow(p.kube, ns, "serving", model, poll="5s")
        p.kube.wait_phase(ns, "serving", r.HEALTHY, serving="1", timeout=90)
        generation = p.kube.deployment(ns, "serving").metadata.generation

        with outage(p.stack, "mlflow", 60) as times:
            # Created while the registry is down (a model no cached answer knows): it waits in
            # Resolving. (Asking about a model another ModelDeployment follows would be answered
            # from the shared cache, within its poll interval, and roll out.)
            late = follow(p.kube, ns, "late", other, poll="5s")

            def reported() -> bool:
                cond = p.kube.condition(ns, "serving", r.REGISTRY_REACHABLE)
                return cond.get("status") == "False" and late.status().get("phase") == r.RESOLVING

            wait_for(reported, 45, "RegistryReachable=False, and the new one Resolving")
            st = serving.status()
            assert (st["phase"], st["servingVersion"]) == (r.HEALTHY, "1")
            assert p.kube.deployment(ns, "serving").metadata.generation == generation

        wait_for(
            lambda: p.kube.condition(ns, "serving", r.REGISTRY_REACHABLE).get("status") == "True",
            60,
            "RegistryReachable=True",
        )
        reachable = time.monotonic() - times["back"]
        p.kube.wait_phase(ns, "late", r.HEALTHY, serving="1", timeout=60)
        resolved = time.monotonic() - times["back"]
        # The registry webhook the operator subscribed survived the restart (MLflow's database).
        p.registry.set_alias(model, "champion", "2")
        p.kube.wait_phase(ns, "serving", r.HEALTHY, serving="2", timeout=60)
        print(
            f"FAULT-TIMING mlflow-60s reachable={reachable:.1f} late-healthy={resolved:.1f} "
            f"(seconds after MLflow answered again; it took "
            f"{times['back'] - times['restarted']:.1f} s to start)"
        )
        reconciled(p.kube, ns, "serving")
        assert serving.history() == [("1", r.OUTCOME_SUCCEEDED), ("2", r.OUTCOME_SUCCEEDED)]
        assert serving.reasons()[r.EV_REGISTRY_UNREACHABLE] == 1
        assert serving.reasons()[r.EV_REGISTRY_RECOVERED] == 1
        assert late.history()[0] == ("1", r.OUTCOME_SUCCEEDED)
        assert late.started("1") == 1
    finally:
        op.stop()


def firing_rule(namespace: str, name: str, version: str) -> list[dict[str, Any]]:
    """An alert as the operator's PrometheusRule raises it for `version`, always firing: what
    the serving pods' error rate would do, without running pods."""
    labels = {
        "namespace": namespace,
        "modeldeployment": name,
        "model_version": version,
        "severity": "critical",
        "modeldeploy_io_managed": "true",
    }
    return [
        {
            "name": f"fault-{namespace}",
            "rules": [{"alert": ALERT, "expr": "vector(1)", "for": "0s", "labels": labels}],
        }
    ]


def prometheus_firing(url: str, namespace: str) -> bool:
    try:
        alerts = requests.get(f"{url}/api/v1/alerts", timeout=2).json()["data"]["alerts"]
    except (requests.RequestException, ValueError, KeyError):
        return False
    return any(a["labels"].get("namespace") == namespace and a["state"] == "firing" for a in alerts)


def assert_rolled_back_once(p: Private, story: Story, model: str) -> None:
    reconciled(p.kube, story.namespace, story.name)
    assert story.history() == [
        ("1", r.OUTCOME_SUCCEEDED),
        ("2", r.OUTCOME_ROLLED_BACK),
        ("1", r.OUTCOME_SUCCEEDED),
    ]
    assert story.status()["rejectedVersions"] == ["2"]
    assert len(story.messages(r.EV_ROLLED_BACK)) == 1
    tags = p.registry.client.get_model_version(model, "2").tags
    assert tags["modeldeploy.io/rejected"].startswith(f"{story.namespace}/{story.name}: {ALERT}")


def test_alertmanager_then_prometheus_down_when_the_alert_fires_roll_back_once_back(
    private: Private,
) -> None:
    p, s = private, private.stack
    ns_am, ns_prom = p.namespace(), p.namespace()
    op = p.operator([ns_am, ns_prom])
    try:
        am_model, am = healthy_on_v2(p, ns_am, "m")
        prom_model, prom = healthy_on_v2(p, ns_prom, "m")

        # Alertmanager down: Prometheus fires, nothing can deliver it.
        with outage(s, "alertmanager", 0) as am_times:
            s.write_rules(f"fault-{ns_am}", firing_rule(ns_am, "m", "2"))
            wait_for(lambda: prometheus_firing(p.url("prometheus"), ns_am), 30, "alert firing")
            time.sleep(5)  # Prometheus' resend interval: a delivery would have happened
            assert am.status()["phase"] == r.HEALTHY and am.template_version() == "2"
        p.kube.wait_phase(ns_am, "m", r.ROLLED_BACK, serving="1", timeout=60)
        am_seconds = time.monotonic() - am_times["back"]
        wait_for(lambda: am.serves("1"), 30, "version 1 serving")

        # Prometheus down: nothing evaluates the rule until it is back.
        with outage(s, "prometheus", 0) as prom_times:
            devstack.write_yaml(
                s.root / "prometheus" / "rules" / f"fault-{ns_prom}.yml",
                {"groups": firing_rule(ns_prom, "m", "2")},
            )
            time.sleep(5)
            assert prom.status()["phase"] == r.HEALTHY and prom.template_version() == "2"
        p.kube.wait_phase(ns_prom, "m", r.ROLLED_BACK, serving="1", timeout=60)
        prom_seconds = time.monotonic() - prom_times["back"]
        print(
            f"FAULT-TIMING alertmanager-down rolled-back={am_seconds:.1f} "
            f"prometheus-down rolled-back={prom_seconds:.1f} (seconds after it answered again)"
        )
        # Both alerts keep firing (and are re-sent): still one rollback each.
        time.sleep(6)
        assert_rolled_back_once(p, am, am_model)
        assert_rolled_back_once(p, prom, prom_model)
    finally:
        op.stop()
        for ns in (ns_am, ns_prom):
            with contextlib.suppress(OSError, RuntimeError):
                s.remove_rules(f"fault-{ns}")
