"""The operator SIGKILLed in the middle of its work, and a ModelDeployment deleted meanwhile.

One operator runs four ModelDeployments in one namespace, each held in the phase under test:
Resolving (its registry credentials Secret does not exist yet), Progressing and RollingBack
(their Deployments paused, so the rollout the operator started cannot finish), and Healthy (to
be deleted while the operator is down). One SIGKILL hits all of them; while the operator is
down the holds are released and the fourth is deleted; a new operator process (the way a pod
is restarted) must finish each piece of work exactly once, and clean up after none.

The active replica of two killed mid-rollout is the same question under leader election:
the standby must finish the rollout the dead leader started, once.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import stack as devstack
from kubernetes import client

from modeldeploy import names
from modeldeploy.api import reasons as r
from modeldeploy.governance import records
from tests.conftest import Cluster
from tests.integration.faults.conftest import MONITORING, Story, exists, reconcile_errors
from tests.integration.operator.conftest import Kube, Registry, wait_for
from tests.integration.operator.test_alert_intake import notification, post
from tests.integration.operator.test_high_availability import (
    Replicas,
    follow_alias,
    reconciled,
    wait_leading,
)

pytestmark = pytest.mark.faults
ALERT = "ModelHighErrorRate"


def follow(kube: Kube, namespace: str, name: str, model: str, **spec: Any) -> Story:
    """A ModelDeployment following @champion; moves reach it through the registry webhook."""
    body = {"model": {"name": model, "alias": "champion"}, "registry": {"pollInterval": "1h"}}
    for key, value in spec.items():
        body[key] = {**body.get(key, {}), **value}
    kube.create_md(namespace, name, body)
    return Story(kube, namespace, name)


def wait_status(story: Story, what: str, check: Any, timeout: float = 60) -> dict[str, Any]:
    def ok() -> dict[str, Any] | None:
        st = story.status()
        return st if check(st) else None

    return wait_for(ok, timeout, f"{story.name}: {what}")


def rolling_out(story: Story, version: str) -> None:
    """Waits for the operator to have started rolling `version` out: phase Progressing for it
    (pausing the Deployment alone makes a Progressing of the old version, briefly) and its
    template applied."""
    wait_status(
        story,
        f"Progressing to {version}",
        lambda st: (
            st.get("phase") == r.PROGRESSING
            and st.get("resolvedVersion") == version
            and story.template_version() == version
        ),
    )


def audits(registry: Registry, model: str, version: str) -> list[str]:
    """The operator's audit entries on a model version, by action."""
    tags = registry.client.get_model_version(model, version).tags
    return [a.action for a in records.audit_records(tags)]


def children(kube: Kube, namespace: str, name: str) -> dict[str, bool]:
    custom = kube.custom
    return {
        "Deployment": kube.deployment(namespace, name) is not None,
        "Service": exists(lambda: kube.core.read_namespaced_service(name, namespace)),
        "ServiceMonitor": exists(
            lambda: custom.get_namespaced_custom_object(
                *MONITORING, namespace, "servicemonitors", name
            )
        ),
        "PrometheusRule": exists(
            lambda: custom.get_namespaced_custom_object(
                *MONITORING, namespace, "prometheusrules", name
            )
        ),
    }


def test_operator_killed_in_each_phase_finishes_each_once_and_leaves_nothing_of_a_deleted_one(
    kube: Kube, registry: Registry, start_operator: Any, namespace: str, cluster: Cluster
) -> None:
    devstack.install_monitoring_crds(cluster.kubectl)
    op = start_operator(namespace)
    ns = namespace

    # Resolving: the credentials Secret it names does not exist (yet).
    res_model = registry.new_model(versions=1)
    registry.set_alias(res_model, "champion", "1")
    res = follow(kube, ns, "res", res_model, registry={"credentialsSecret": "res-registry"})
    # Progressing: v1 serves; v2's rollout held by a paused Deployment.
    prog_model = registry.new_model(versions=2)
    registry.set_alias(prog_model, "champion", "1")
    prog = follow(kube, ns, "prog", prog_model)
    # RollingBack: v2 serves after v1; the alert's rollback held the same way.
    back_model = registry.new_model(versions=2)
    registry.set_alias(back_model, "champion", "1")
    back = follow(kube, ns, "back", back_model, rollback={"onAlerts": [ALERT]})
    # Healthy, with every child; deleted while the operator is down.
    gone_model = registry.new_model(versions=1)
    kube.create_md(ns, "gone", {"model": {"name": gone_model, "version": "1"}})
    gone = Story(kube, ns, "gone")

    wait_status(res, "Resolving", lambda st: st.get("phase") == r.RESOLVING)
    kube.wait_phase(ns, "prog", r.HEALTHY, serving="1")
    kube.wait_phase(ns, "back", r.HEALTHY, serving="1")
    registry.set_alias(back_model, "champion", "2")
    kube.wait_phase(ns, "back", r.HEALTHY, serving="2")
    wait_for(lambda: all(children(kube, ns, "gone").values()), 60, "gone: every child")
    kube.wait_phase(ns, "gone", r.HEALTHY, serving="1")

    prog.pause()
    registry.set_alias(prog_model, "champion", "2")
    rolling_out(prog, "2")
    back.pause()
    assert post(op, notification(ns, "back", "2", alert=ALERT)).json() == {"woken": 1}
    wait_status(back, "RollingBack", lambda st: st.get("phase") == r.ROLLING_BACK)
    assert (prog.template_version(), back.template_version()) == ("2", "1")

    op.kill()
    # While it is down: the Secret appears, the rollouts go on, "gone" is deleted.
    kube.core.create_namespaced_secret(
        ns, client.V1Secret(metadata=client.V1ObjectMeta(name="res-registry"), string_data={})
    )
    prog.pause(False)
    back.pause(False)
    kube.custom.delete_namespaced_custom_object(
        "modeldeploy.io", "v1alpha1", ns, "modeldeployments", "gone"
    )
    wait_for(
        lambda: not any(children(kube, ns, "gone").values()),
        60,
        "gone: children garbage-collected through their owner references",
    )
    gone_events = len(gone.events())

    t0 = time.monotonic()
    op2 = start_operator(ns)
    converged: dict[str, float] = {}

    def settled() -> bool:
        for story, phase, version in (
            (res, r.HEALTHY, "1"),
            (prog, r.HEALTHY, "2"),
            (back, r.ROLLED_BACK, "1"),
        ):
            done = story.status().get("phase") == phase and story.serves(version)
            if done and story.name not in converged:
                converged[story.name] = time.monotonic() - t0
        return len(converged) == 3

    wait_for(settled, 90, "every ModelDeployment finished by the new operator")
    print(f"FAULT-TIMING operator-sigkill seconds-after-restart={converged}")
    for name in ("res", "prog", "back"):
        reconciled(kube, ns, name)  # anything a reconcile would repeat has been done by now

    assert res.history() == [("1", r.OUTCOME_SUCCEEDED)]
    assert res.started("1") == 1
    # Progressing and Healthy are announced by RolloutStarted and RolloutSucceeded.
    assert res.messages(r.EV_PHASE_CHANGED) == ["phase - → Resolving"]
    assert len(res.messages(r.EV_ROLLOUT_SUCCEEDED)) == 1

    assert prog.history() == [("1", r.OUTCOME_SUCCEEDED), ("2", r.OUTCOME_SUCCEEDED)]
    assert (prog.started("1"), prog.started("2")) == (1, 1)
    assert prog.messages(r.EV_ROLLOUT_SUCCEEDED) == ["version 1 is serving", "version 2 is serving"]

    st = back.status()
    assert back.history() == [
        ("1", r.OUTCOME_SUCCEEDED),
        ("2", r.OUTCOME_ROLLED_BACK),
        ("1", r.OUTCOME_SUCCEEDED),
    ]
    assert st["rejectedVersions"] == ["2"]
    assert len(back.messages(r.EV_ROLLED_BACK)) == 1
    assert "from version 2 to 1" in back.messages(r.EV_ROLLED_BACK)[0]
    tags = registry.client.get_model_version(back_model, "2").tags
    assert tags[names.TAG_REJECTED].startswith(f"{ns}/back: {ALERT} at ")
    assert audits(registry, back_model, "2") == [records.ACTION_DEPLOY, records.ACTION_ROLLBACK]

    # Nothing of "gone" is left, and the new operator neither errs over it nor reports it.
    assert not any(children(kube, ns, "gone").values())
    assert len(gone.events()) == gone_events
    metrics = op2.metrics()
    assert 'name="gone"' not in metrics
    assert reconcile_errors(metrics) == 0, op2.log()
    assert "Traceback" not in op2.log()


def test_active_replica_killed_mid_rollout_the_standby_finishes_it_once(
    kube: Kube, registry: Registry, replicas: Replicas, namespace: str
) -> None:
    """tests/integration/operator/test_high_availability.py kills the leader before an alias
    move; here it dies with the rollout under way (held by a paused Deployment)."""
    model = registry.new_model(versions=2)
    registry.set_alias(model, "champion", "1")
    follow_alias(kube, namespace, model)
    kube.wait_phase(namespace, "m", r.HEALTHY, serving="1")
    story = Story(kube, namespace, "m")
    story.pause()
    registry.set_alias(model, "champion", "2")
    rolling_out(story, "2")
    assert story.template_version() == "2"

    replicas.a.kill()
    t0 = time.monotonic()
    story.pause(False)
    assert wait_leading(replicas.b) == replicas.b_id
    wait_for(lambda: story.serves("2"), 60, "version 2 serving")
    kube.wait_phase(namespace, "m", r.HEALTHY, serving="2")
    print(f"FAULT-TIMING leader-sigkill-mid-rollout seconds={time.monotonic() - t0:.1f}")
    reconciled(kube, namespace, "m")

    assert story.history() == [("1", r.OUTCOME_SUCCEEDED), ("2", r.OUTCOME_SUCCEEDED)]
    assert (story.started("1"), story.started("2")) == (1, 1)
    succeeded = [e for e in story.events() if e.reason == r.EV_ROLLOUT_SUCCEEDED]
    assert [e.message for e in succeeded] == ["version 1 is serving", "version 2 is serving"]
    # A started v2's rollout; B, which took over, is the one that saw it finish.
    assert succeeded[-1].reporting_instance == replicas.b_id
    started = [e for e in story.events() if e.reason == r.EV_ROLLOUT_STARTED]
    assert {e.reporting_instance for e in started} == {replicas.a_id}
    assert reconcile_errors(replicas.b.metrics()) == 0
